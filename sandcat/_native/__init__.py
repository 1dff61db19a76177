"""Hot-path selectors: compiled twins when available, pure-Python references otherwise.

The one place that picks an implementation for each hot path; every name exported here has
a caller in the server (``tests/native/test_selector.py`` fails otherwise):

- framing (``sandcat._native._framing``, Cython, built by ``setup.py``; else the reference
  codec ``sandcat.protocol.bincode`` / ``payloads`` with ``sandcat._native.framing``):
  ``encode_msg``/``decode_msg`` (gateway frames, pushes), ``encode_fanout`` (group copies),
  ``encode_strings`` (group notices 3 and 5), ``decode_read`` (Read, type 23);
- shard hashing (``sandcat_native``, Rust, built by maturin from ``native/rust``; else
  ``sandcat._native.shard``): ``partition_of`` (Kafka producer), ``month_of``, ``shard_of``,
  ``collection_name`` and ``inbox_collection_batch`` (the sharded MongoDB inbox).

``SANDCAT_NO_EXTENSIONS=1`` forces the pure-Python twins; an ``ImportError`` falls back with
one warning line. ``implementations()`` says which one each hot path uses.
"""

from __future__ import annotations

import os

from sandcat._native.framing import decode_read, encode_fanout
from sandcat._native.shard import (
    collection_name,
    inbox_collection_batch,
    month_of,
    partition_of,
    shard_of,
)
from sandcat.log import get_logger
from sandcat.protocol.bincode import decode_msg, encode_msg
from sandcat.protocol.payloads import encode_strings

__all__ = [
    "DISTRIBUTED_ONLY",
    "NO_EXTENSIONS",
    "collection_name",
    "decode_msg",
    "decode_read",
    "encode_fanout",
    "encode_msg",
    "encode_strings",
    "implementations",
    "inbox_collection_batch",
    "month_of",
    "partition_of",
    "shard_of",
]

#: Hot paths only the distributed adapters call (the Kafka producer, the sharded inbox).
DISTRIBUTED_ONLY = frozenset({"shard hashing"})
NO_EXTENSIONS = os.environ.get("SANDCAT_NO_EXTENSIONS", "") not in {"", "0", "false"}
FRAMING = "python"
SHARD_HASHING = "python"
_missing: list[str] = []

if not NO_EXTENSIONS:
    try:
        from sandcat._native._framing import (
            decode_msg,
            decode_read,
            encode_fanout,
            encode_msg,
            encode_strings,
        )

        FRAMING = "cython"
    except ImportError as exc:
        _missing.append(f"framing ({exc})")
    try:
        from sandcat_native import (
            collection_name,
            inbox_collection_batch,
            month_of,
            partition_of,
            shard_of,
        )

        SHARD_HASHING = "rust"
    except ImportError as exc:
        _missing.append(f"shard hashing ({exc})")
    if _missing:
        get_logger("sandcat.native").warning(
            "native_extension_unavailable_using_pure_python", missing="; ".join(_missing)
        )


def implementations() -> dict[str, str]:
    """Which implementation each hot path uses: ``cython``/``rust`` or ``python``."""
    return {"framing": FRAMING, "shard hashing": SHARD_HASHING}
