"""SIGHUP: apply what can change in a running process (the log level, the limits).

Limits are read by the services from the one ``LimitsConfig`` object of the running config,
so they are updated in place. A limit that sized something already built (a rate window,
a listener's body size) applies after a restart; so does every other key. Each is named in
the log line, so the operator knows what took effect.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from sandcat.config import Config

#: Limits read when they are used (per connection, frame or request), so a reload applies.
LIVE_LIMITS = frozenset(
    {
        "text_bytes",
        "ws_message_bytes",
        "send_queue_frames",
        "send_queue_bytes",
        "connections_per_ip",
        "code_attempts",
        "messages_per_second",
        "messages_burst",
        "bad_frames_before_close",
        "group_members",
        "name_chars",
        "profile_field_chars",
        "remark_chars",
        "search_pattern_chars",
    }
)


@dataclass(slots=True)
class Reloaded:
    #: The running config from now on (the same limits object, updated).
    config: Config
    #: ``key: old -> new`` for each key applied now.
    applied: list[str]
    #: Keys whose new value takes a restart.
    restart_needed: list[str]
    #: The new log level to set (after the reload's own line is written), if it changed.
    log_level: str | None = None


def _leaves(value: object, prefix: str = "") -> dict[str, object]:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return {prefix.rstrip("."): value}
    found: dict[str, object] = {}
    for item in dataclasses.fields(value):
        found.update(_leaves(getattr(value, item.name), f"{prefix}{item.name}."))
    return found


def apply_reload(current: Config, fresh: Config) -> Reloaded:
    """Apply ``fresh``'s live limits to the running process (``current``); the caller sets
    ``log_level`` once it has logged the result."""
    old, new = _leaves(current), _leaves(fresh)
    applied: list[str] = []
    restart: list[str] = []
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        section, _, name = key.partition(".")
        if section == "limits" and name in LIVE_LIMITS:
            setattr(current.limits, name, value)
        elif key != "log.level":
            restart.append(key)
            continue
        applied.append(f"{key}: {before} -> {value}")
    running = dataclasses.replace(
        current, log=dataclasses.replace(current.log, level=fresh.log.level)
    )
    level = fresh.log.level if fresh.log.level != current.log.level else None
    return Reloaded(running, applied, restart, level)
