"""Structured logs: an event name plus key-value fields, rendered as text or JSON.

Usage: ``log = get_logger(__name__)`` then ``log.info("user_registered", user_id=uid)``.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _render_value(value: Any) -> str:
    text = str(value)
    if not text or any(ch in text for ch in ' ="\n'):
        return orjson.dumps(text).decode()
    return text


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        fields: dict[str, Any] = getattr(record, "fields", {})
        parts = [
            f"{stamp}.{int(record.msecs):03d}Z",
            record.levelname.lower(),
            record.name,
            record.getMessage(),
        ]
        parts.extend(f"{key}={_render_value(value)}" for key, value in fields.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        body: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **{
                key: value if isinstance(value, int | float | bool) else str(value)
                for key, value in fields.items()
            },
        }
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body).decode()


class StructLogger:
    """A thin wrapper that passes key-value fields to the formatter."""

    __slots__ = ("_bound", "_logger")

    def __init__(self, logger: logging.Logger, bound: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._bound = bound or {}

    def bind(self, **fields: Any) -> StructLogger:
        return StructLogger(self._logger, {**self._bound, **fields})

    def _log(self, level: int, event: str, fields: dict[str, Any], exc: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(
                level,
                event,
                extra={"fields": {**self._bound, **fields}},
                exc_info=exc,
                stacklevel=3,
            )

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc=True)


def get_logger(name: str) -> StructLogger:
    return StructLogger(logging.getLogger(name))


def set_level(level: str) -> None:
    """Set the ``sandcat`` loggers' level by its config name (a reload does)."""
    logging.getLogger("sandcat").setLevel(_LEVELS.get(level.lower(), logging.INFO))


def setup_logging(
    level: str = "info", fmt: str = "text", prefix: str = "", output: str = "console"
) -> None:
    """Configure the root ``sandcat`` logger once for a process: to stderr (``console``,
    ``stderr``), stdout, or appended to the file ``output`` names."""
    handler: logging.Handler
    if output in {"console", "stderr"}:
        handler = logging.StreamHandler(sys.stderr)
    elif output == "stdout":
        handler = logging.StreamHandler(sys.stdout)
    else:
        handler = logging.FileHandler(output, mode="a", encoding="utf-8")
    formatter: logging.Formatter = JsonFormatter() if fmt == "json" else TextFormatter()
    if prefix:
        inner = formatter

        class _Prefixed(logging.Formatter):
            def format(self, record: logging.LogRecord) -> str:
                return f"[{prefix}] {inner.format(record)}"

        formatter = _Prefixed()
    handler.setFormatter(formatter)
    root = logging.getLogger("sandcat")
    root.handlers[:] = [handler]
    set_level(level)
    root.propagate = False
    access = logging.getLogger("aiohttp.access")
    access.setLevel(logging.WARNING)
