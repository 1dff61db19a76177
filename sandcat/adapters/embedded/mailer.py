"""The development mailer: with no SMTP server configured, codes go to the server log."""

from __future__ import annotations

from sandcat.log import get_logger

log = get_logger("sandcat.mailer")


class LogMailer:
    async def send_code(self, email: str, code: str) -> None:
        # One line with the address and the code: operators and the load generator read it.
        log.warning("register_code", email=email, code=code, note="no SMTP server configured")
