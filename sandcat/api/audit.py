"""Audit lines: one ``sandcat.audit`` log line per security-relevant action, written at the
HTTP edge where the client address is known (``docs/operations.md`` lists them)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandcat.api.common import client_ip
from sandcat.log import get_logger

_log = get_logger("sandcat.audit")
#: User ids named in one line at most (a group invite may list thousands).
MAX_IDS = 20


def audit(
    request: web.Request,
    trust_forwarded: bool,
    event: str,
    *,
    actor: str,
    target: str,
    **fields: Any,
) -> None:
    """``event actor=... target=... ip=...`` and ``fields`` (never a password or token)."""
    _log.info(event, actor=actor, target=target, ip=client_ip(request, trust_forwarded), **fields)


def id_list(ids: list[str]) -> str:
    """``a,b,c``, or the first ``MAX_IDS`` and ``+N`` for the rest."""
    shown = ",".join(ids[:MAX_IDS])
    return shown if len(ids) <= MAX_IDS else f"{shown},+{len(ids) - MAX_IDS}"
