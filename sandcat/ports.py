"""Ports: what services need from the outside world (``typing.Protocol``).

Adapters in ``sandcat/adapters/*`` implement them; services never import a driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from sandcat.domain import Stored, Submission, UserChanges, UserRecord
from sandcat.protocol.msg import Msg


class UserStore(Protocol):
    async def insert_user(self, user: UserRecord) -> None:
        """Insert a user with zeroed sequences; raises ``BadRequest`` on a taken e-mail."""

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def find_login(self, login: str) -> UserRecord | None:
        """The user whose account, e-mail or phone equals ``login``."""

    async def email_taken(self, email: str) -> bool: ...

    async def update_user(
        self, user_id: str, changes: UserChanges, now_ms: int
    ) -> UserRecord | None: ...

    async def set_password(
        self, user_id: str, password_hash: str, salt: str, now_ms: int
    ) -> None: ...

    async def search_user(self, pattern: str, exclude_id: str) -> tuple[UserRecord, str] | None:
        """Exact match on e-mail, phone or account; returns the user and the matched field."""

    async def revoke_tokens(self, user_id: str, before: int) -> None:
        """Refuse every token of ``user_id`` issued before ``before`` (milliseconds)."""

    async def tokens_valid_after(self, user_id: str) -> int: ...


class CodeStore(Protocol):
    """Registration / password-change codes: one per e-mail, its own TTL, single use."""

    async def put_code(self, email: str, code: str, ttl_seconds: int) -> None: ...

    async def get_code(self, email: str) -> str | None: ...

    async def delete_code(self, email: str) -> None: ...


class MessageLog(Protocol):
    """Makes accepted messages durable, assigning seqs, and hands them to delivery."""

    async def submit(self, submission: Submission) -> Stored: ...


class InboxStore(Protocol):
    async def pull(
        self, user_id: str, start: int, end: int, send_start: int, send_end: int, limit: int
    ) -> list[Msg]:
        """Receive copies with ``start < seq <= end`` and sent copies with
        ``send_start < send_seq <= send_end`` (their ``seq`` zeroed), oldest first."""

    async def delete_received(self, user_id: str, seqs: Sequence[int]) -> int: ...

    async def mark_read(self, user_id: str, seqs: Sequence[int]) -> int: ...

    async def current_seqs(self, user_id: str) -> tuple[int, int]:
        """The exposed (receive seq, send seq) of a user; (0, 0) when unknown."""


class Delivery(Protocol):
    """Best-effort push of durable messages to connected users (sync is the source of truth)."""

    def deliver(
        self,
        user_id: str,
        msg: Msg,
        *,
        exclude_platform: int | None = None,
        only_platform: int | None = None,
    ) -> None: ...


class FileStore(Protocol):
    async def put_object(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...

    async def get_object(self, bucket: str, key: str) -> bytes | None: ...

    async def has_object(self, bucket: str, key: str) -> bool: ...


class Mailer(Protocol):
    async def send_code(self, email: str, code: str) -> None: ...


#: Something to run at shutdown.
Closer = Callable[[], Awaitable[None]]
