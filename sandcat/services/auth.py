"""Passwords (argon2id, off the event loop, bounded) and JWTs bound to the user id."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from sandcat.config import AuthConfig, ServerConfig
from sandcat.errors import BadRequest, UnAuthorized
from sandcat.metrics import COUNTS

ACCESS = "access"
REFRESH = "refresh"


class PasswordService:
    """Hashes and verifies with argon2id in worker threads, at most N at once."""

    def __init__(self, config: AuthConfig) -> None:
        self._hasher = PasswordHasher(
            time_cost=config.argon2_time_cost,
            memory_cost=config.argon2_memory_cost,
            parallelism=config.argon2_parallelism,
        )
        self._slots = asyncio.Semaphore(max(1, config.argon2_max_concurrency))
        self._dummy: str | None = None

    async def _slot(self) -> None:
        """Take an argon2 slot, counting the wait (``sandcat_argon2_queue_wait_seconds``)."""
        started = time.perf_counter()
        await self._slots.acquire()
        COUNTS.argon2_wait.observe(time.perf_counter() - started)

    async def hash(self, password: str) -> str:
        await self._slot()
        try:
            return await asyncio.to_thread(self._hasher.hash, password)
        finally:
            self._slots.release()

    async def verify(self, password_hash: str, password: str) -> bool:
        await self._slot()
        try:
            try:
                return await asyncio.to_thread(self._hasher.verify, password_hash, password)
            except (VerificationError, InvalidHashError):
                return False
        finally:
            self._slots.release()

    async def burn(self, password: str) -> None:
        """Spend one verification's time, so an unknown account answers like a wrong password."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_hex(16))
        await self.verify(self._dummy, password)

    @staticmethod
    def salt_of(password_hash: str) -> str:
        """The salt segment of a PHC string (kept in ``users.salt`` like the original)."""
        parts = password_hash.split("$")
        return parts[-2] if len(parts) >= 2 else ""


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: str
    typ: str
    exp: int
    generation: int
    #: The device (refresh-token family) the token belongs to; "" for a token issued
    #: before devices were recorded.
    device_id: str = ""
    #: The token's ``jti``.
    token_id: str = ""


class TokenService:
    """HS256 JWTs with ``sub`` = user id, integer ``exp``/``iat``, ``typ``, ``gen`` (the
    user's token generation at issue: a token below the user's current one is revoked) and
    ``did`` (the device, ``sandcat.services.devices``).

    The web client decodes the payload with *standard* base64, so a ``jti`` is varied until
    the base64url payload segment contains neither ``-`` nor ``_``.
    """

    def __init__(self, config: ServerConfig, secret: str) -> None:
        self._secret = secret
        self._ttl = {ACCESS: config.access_ttl_seconds, REFRESH: config.refresh_ttl_seconds}

    def issue(self, user_id: str, typ: str, generation: int, device_id: str = "") -> str:
        return self.issue_with_id(user_id, typ, generation, device_id)[0]

    def issue_with_id(
        self, user_id: str, typ: str, generation: int, device_id: str = "", token_id: str = ""
    ) -> tuple[str, str]:
        """A token and its ``jti`` (``token_id`` when given: the same token with a fresh
        expiry); ``did`` is left out when ``device_id`` is empty."""
        iat = int(time.time())
        exp = iat + self._ttl[typ]
        for _ in range(64):
            jti = token_id or secrets.token_hex(6)
            claims: dict[str, object] = {
                "sub": user_id,
                "exp": exp,
                "iat": iat,
                "gen": generation,
                "typ": typ,
                "jti": jti,
            }
            if device_id:
                claims["did"] = device_id
            token = jwt.encode(claims, self._secret, algorithm="HS256")
            payload = token.split(".")[1]
            if "-" not in payload and "_" not in payload:
                return token, jti
        raise RuntimeError("could not find a client-safe token payload")  # pragma: no cover

    def verify(self, token: str, typ: str) -> Claims:
        try:
            data = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                options={"require": ["sub", "exp", "iat"]},
                leeway=60,
            )
        except jwt.PyJWTError as exc:
            raise UnAuthorized("invalid or expired token") from exc
        sub, token_typ = data.get("sub"), data.get("typ", ACCESS)
        exp, iat = data.get("exp"), data.get("iat")
        if (
            not isinstance(sub, str)
            or not sub
            or not isinstance(exp, int)
            or not isinstance(iat, int)
        ):
            raise UnAuthorized("invalid token claims")
        if token_typ != typ:
            raise UnAuthorized(f"a {typ} token is required")
        generation, device_id, jti = data.get("gen", 0), data.get("did", ""), data.get("jti", "")
        if (
            not isinstance(generation, int)
            or not isinstance(device_id, str)
            or not isinstance(jti, str)
        ):
            raise UnAuthorized("invalid token claims")
        return Claims(sub, token_typ, exp, generation, device_id, jti)


def resolve_secret(configured: str, data_dir: Path) -> str:
    """The configured secret, else one generated once and kept (mode 0600) in ``data_dir``."""
    if configured:
        return configured
    path = data_dir / "jwt_secret"
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    secret = secrets.token_urlsafe(48)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(secret)
    return secret


def decode_b64_password(value: str) -> str:
    """The client sends passwords as standard base64 without padding."""
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        return raw.decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("password must be base64 (standard alphabet)") from exc
