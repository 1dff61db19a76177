"""Sends verification codes by e-mail through an SMTP server; never logs the code."""

from __future__ import annotations

from email.message import EmailMessage

import aiosmtplib

from sandcat.config import MailConfig
from sandcat.errors import InternalServer
from sandcat.log import get_logger

log = get_logger("sandcat.mailer")

_HTML = """<html><body><p>Your Sandcat verification code:</p>
<p style="font-size:24px;letter-spacing:6px"><b>{code}</b></p>
<p>It expires in 5 minutes. If you did not ask for it, ignore this mail.</p></body></html>"""


class SmtpMailer:
    def __init__(self, config: MailConfig) -> None:
        self._config = config

    async def send_code(self, email: str, code: str) -> None:
        message = EmailMessage()
        message["From"] = self._config.account
        message["To"] = email
        message["Subject"] = "Verify Login Code"
        message.set_content(f"Your Sandcat verification code: {code}")
        message.add_alternative(_HTML.format(code=code), subtype="html")
        try:
            await aiosmtplib.send(
                message,
                hostname=self._config.server,
                port=self._config.port,
                use_tls=self._config.use_tls,
                # Log in only when a password is configured (a local relay needs none).
                username=self._config.account if self._config.password else None,
                password=self._config.password or None,
                timeout=10,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.error("mail_send_failed", email=email, error=type(exc).__name__, reason=str(exc))
            raise InternalServer("the verification mail could not be sent") from exc
        log.info("mail_sent", email=email)
