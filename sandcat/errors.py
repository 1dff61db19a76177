"""One error hierarchy, translated once at each edge.

Every error carries the client-facing ``kind`` (the original's names), the HTTP status
and, where it applies, the WebSocket close code. Internal detail goes to logs only.
"""

from __future__ import annotations

from typing import ClassVar


class SandcatError(Exception):
    """Base class: ``kind`` and ``status`` are what the client sees."""

    kind: ClassVar[str] = "InternalServer"
    status: ClassVar[int] = 500

    def __init__(self, details: str | None = None) -> None:
        super().__init__(details or self.kind)
        self.details = details

    def body(self) -> dict[str, str | None]:
        return {"kind": self.kind, "details": self.details}


class BodyParsing(SandcatError):
    kind = "BodyParsing"
    status = 400


class PathParsing(SandcatError):
    kind = "PathParsing"
    status = 400


class BadRequest(SandcatError):
    kind = "BadRequest"
    status = 400


class PayloadTooLarge(SandcatError):
    """413; the body keeps the client-understood kind ``BadRequest``."""

    kind = "BadRequest"
    status = 413


class TooManyRequests(SandcatError):
    """429 with ``Retry-After``; the body keeps the kind ``BadRequest``."""

    kind = "BadRequest"
    status = 429

    def __init__(self, details: str, retry_after: int) -> None:
        super().__init__(details)
        self.retry_after = max(1, retry_after)


class RequestTimeout(SandcatError):
    """408: the request body stopped arriving; the body keeps the kind ``BadRequest``."""

    kind = "BadRequest"
    status = 408


class CodeIsExpired(SandcatError):
    kind = "CodeIsExpired"
    status = 400


class CodeIsInvalid(SandcatError):
    kind = "CodeIsInvalid"
    status = 400


class UnAuthorized(SandcatError):
    kind = "UnAuthorized"
    status = 401


class AccountOrPassword(SandcatError):
    kind = "AccountOrPassword"
    status = 401


class Forbidden(SandcatError):
    """A refused action of an authenticated user (e.g. a group permission).

    The client only knows the original's kinds, so the body says ``BadRequest``.
    """

    kind = "BadRequest"
    status = 403


class NotFound(SandcatError):
    kind = "NotFound"
    status = 404


class DbError(SandcatError):
    kind = "DbError"
    status = 500


class InternalServer(SandcatError):
    kind = "InternalServer"
    status = 500


class DecodeError(SandcatError):
    """A wire payload (bincode or JSON ``Msg``) could not be decoded."""

    kind = "BinCode"
    status = 400


class OAuthState(SandcatError):
    """GitHub login: the callback's ``state`` is unknown, expired or already used."""

    kind = "OAuthState"
    status = 400


class OAuthRefused(SandcatError):
    """GitHub login: the provider refused the code (or the token it gave)."""

    kind = "OAuthRefused"
    status = 401


class OAuthProviderError(SandcatError):
    """GitHub login: the provider could not be reached or answered what it should not."""

    kind = "OAuthProvider"
    status = 502


class ConfigError(Exception):
    """A bad or unknown configuration key; the message is one line naming it."""
