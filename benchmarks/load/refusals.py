"""Refusals and errors on the console as they happen: the cause, and the config key to change.

A load run against a server with its default limits is refused by design (the friend
policy, the per-connection message rate, the login rate): each scenario step hands its
error samples and counts here, and the first time a cause shows up it is printed with
what to change on the server; later steps print one short line with the new count.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

SERVER_CONFIG_HINT = (
    "`sandcat-bench --server-config bench.yml` writes a server config with every limit a "
    "load run needs; start the server with `sandcat serve -c bench.yml`"
)


@dataclass(frozen=True, slots=True)
class Cause:
    """Why the server refused: a short name, the config key(s) to change, and how."""

    name: str
    key: str
    fix: str


#: (pattern of an error ack text or an HTTP error, cause), first match wins.
RULES: tuple[tuple[re.Pattern[str], Cause], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cause)
    for pattern, cause in (
        (
            r"not your friend",
            Cause(
                "policy",
                "server.allow_stranger_messages",
                "set it to true (chat between users who are not friends), or make the "
                "users friends first",
            ),
        ),
        (
            r"rate limited",
            Cause(
                "rate limit",
                "limits.messages_per_second, limits.messages_burst",
                "raise them above the per-connection rate the run offers",
            ),
        ),
        (
            r"HTTP 429.*(/user/login|login)|/user/login.*HTTP 429",
            Cause(
                "rate limit",
                "limits.login_per_minute_per_account, limits.login_per_minute_per_ip",
                "raise them above the logins the run makes per minute",
            ),
        ),
        (
            r"/user/mail/send.*HTTP 429",
            Cause(
                "rate limit",
                "limits.code_sends_per_minute_per_ip, limits.code_sends_per_5_minutes_per_email",
                "raise them above the registrations the run makes",
            ),
        ),
        (
            r"HTTP 429",
            Cause("rate limit", "limits.*", "raise the limit the details name"),
        ),
        (
            r"HTTP 401|UnAuthorized|AccountOrPassword|\b4002\b",
            Cause(
                "auth",
                "server.access_ttl_seconds (or --password)",
                "the token expired or was revoked, or the password is wrong: check "
                "--password and the users file, and log in again",
            ),
        ),
        (
            r"HTTP 413|larger than \d+ bytes|too large",
            Cause(
                "size limit",
                "limits.http_body_bytes, limits.text_bytes",
                "raise the limit the details name",
            ),
        ),
        (
            r"too many connections|\b1008\b",
            Cause(
                "connection limit",
                "limits.connections_per_ip",
                "raise it above the connections the run opens from one address",
            ),
        ),
        (
            r"\bslow\b|\b4008\b",
            Cause(
                "slow reader",
                "limits.send_queue_frames, limits.send_queue_bytes",
                "raise them, or add --workers so the generator reads faster",
            ),
        ),
        (
            r"\b4001\b|knock off",
            Cause(
                "knock-off",
                "--users, --workers",
                "one user may hold one connection per platform: a second one closes the first",
            ),
        ),
        (
            r"\b1001\b|shutting down",
            Cause("server stopped", "--api", "the server is shutting down or restarting"),
        ),
        (
            r"at most \d+ members|group_members",
            Cause("size limit", "limits.group_members", "raise it above the largest group"),
        ),
        (
            r"Cannot connect|Connection refused|ConnectionRefused|ClientConnectorError",
            Cause(
                "unreachable",
                "--api",
                "no server answers at that address: start it, or fix --api",
            ),
        ),
    )
)


def explain(text: str) -> Cause | None:
    """The cause of one error text (an error ack's reason, an HTTP error), if known."""
    for pattern, cause in RULES:
        if pattern.search(text):
            return cause
    return None


@dataclass(slots=True)
class Refusals:
    """The console lines for each step's errors: a new cause at once with its fix, then
    running counts."""

    counts: dict[str, int] = field(default_factory=dict)

    def lines(self, where: str, count: int, samples: Iterable[str]) -> list[str]:
        """``count`` errors in step ``where``; ``samples`` are some of their texts."""
        texts = [s for s in samples if s]
        if count <= 0 and not texts:
            return []
        count = max(count, len(texts))
        sample = texts[0] if texts else "(no error text)"
        cause = explain(sample)
        label = cause.name if cause else "error"
        key = f"{label}: {cause.key if cause else sample[:80]}"
        seen = key in self.counts
        self.counts[key] = self.counts.get(key, 0) + count
        head = "REFUSED" if cause and cause.name != "unreachable" else "ERROR"
        if seen:
            return [f"{head} {where}: {count} more ({label}; {self.counts[key]} so far)"]
        out = [f'{head} {where}: {count} x "{sample[:200]}"']
        if cause is None:
            return [*out, "  cause unknown: see the server log"]
        out.append(f"  cause: {cause.name}; change {cause.key}: {cause.fix}")
        if cause.key.startswith(("limits.", "server.")):
            out.append(f"  or: {SERVER_CONFIG_HINT}")
        return out
