"""Hot-path selectors: compiled twins when available, pure-Python references otherwise.

The one place that picks an implementation for each hot path:

- framing: ``sandcat._native._framing`` (Cython, built by ``setup.py``) or the reference
  codec ``sandcat.protocol.bincode`` / ``payloads`` with ``sandcat._native.framing``;
- shard hashing and fan-out batching: ``sandcat_native`` (Rust, built by maturin from
  ``native/rust``) or ``sandcat._native.shard`` / ``sandcat._native.fanout``.

``SANDCAT_NO_EXTENSIONS=1`` forces the pure-Python twins; an ``ImportError`` falls back with
one warning line. ``implementations()`` says which one each hot path uses.
"""

from __future__ import annotations

import os

from sandcat._native.fanout import plan_fanout
from sandcat._native.framing import decode_read, encode_fanout, encode_read
from sandcat._native.shard import (
    collection_name,
    inbox_collection,
    inbox_collection_batch,
    month_of,
    partition_batch,
    partition_of,
    shard_batch,
    shard_of,
    xxh3_64,
)
from sandcat.log import get_logger
from sandcat.protocol.bincode import decode_msg, encode_msg
from sandcat.protocol.payloads import decode_strings, encode_strings

__all__ = [
    "NO_EXTENSIONS",
    "collection_name",
    "decode_msg",
    "decode_read",
    "decode_strings",
    "encode_fanout",
    "encode_msg",
    "encode_read",
    "encode_strings",
    "implementations",
    "inbox_collection",
    "inbox_collection_batch",
    "month_of",
    "partition_batch",
    "partition_of",
    "plan_fanout",
    "shard_batch",
    "shard_of",
    "xxh3_64",
]

NO_EXTENSIONS = os.environ.get("SANDCAT_NO_EXTENSIONS", "") not in {"", "0", "false"}
FRAMING = "python"
SHARD_HASHING = "python"
FANOUT_BATCHING = "python"
_missing: list[str] = []

if not NO_EXTENSIONS:
    try:
        from sandcat._native._framing import (
            decode_msg,
            decode_read,
            decode_strings,
            encode_fanout,
            encode_msg,
            encode_read,
            encode_strings,
        )

        FRAMING = "cython"
    except ImportError as exc:
        _missing.append(f"framing ({exc})")
    try:
        from sandcat_native import (
            collection_name,
            inbox_collection,
            inbox_collection_batch,
            month_of,
            partition_batch,
            partition_of,
            plan_fanout,
            shard_batch,
            shard_of,
            xxh3_64,
        )

        SHARD_HASHING = FANOUT_BATCHING = "rust"
    except ImportError as exc:
        _missing.append(f"shard hashing and fan-out batching ({exc})")
    if _missing:
        get_logger("sandcat.native").warning(
            "native_extension_unavailable_using_pure_python", missing="; ".join(_missing)
        )


def implementations() -> dict[str, str]:
    """Which implementation each hot path uses: ``cython``/``rust`` or ``python``."""
    return {
        "framing": FRAMING,
        "shard hashing": SHARD_HASHING,
        "fan-out batching": FANOUT_BATCHING,
    }
