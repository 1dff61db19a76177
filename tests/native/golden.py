"""Golden vectors in ``native/testdata/``, shared by pytest and ``cargo test``.

``python -m tests.native.golden`` rewrites them from the pure-Python twins (the
specification); a change to a committed vector is a change of the wire or storage format.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xxhash import xxh3_64_intdigest

from sandcat._native import shard
from sandcat.protocol import bincode
from sandcat.protocol.msg import Msg

TESTDATA = Path(__file__).resolve().parents[2] / "native" / "testdata"
SHARD_FILE = TESTDATA / "shard.tsv"
MSG_FILE = TESTDATA / "msg.json"
SHARD_COLUMNS = (
    "user_id_hex",
    "xxh3_64",
    "user_shards",
    "shard",
    "send_time_ms",
    "month",
    "collection",
    "partitions",
    "partition",
)


@dataclass(frozen=True, slots=True)
class ShardVector:
    user_id: str
    xxh3_64: int
    user_shards: int
    shard: int
    send_time_ms: int
    month: int
    collection: str
    partitions: int
    partition: int


def read_shard_vectors() -> list[ShardVector]:
    lines = SHARD_FILE.read_text().splitlines()
    assert tuple(lines[0].split("\t")) == SHARD_COLUMNS
    out = []
    for line in lines[1:]:
        cells = line.split("\t")
        out.append(
            ShardVector(
                user_id=bytes.fromhex(cells[0]).decode(),
                xxh3_64=int(cells[1]),
                user_shards=int(cells[2]),
                shard=int(cells[3]),
                send_time_ms=int(cells[4]),
                month=int(cells[5]),
                collection=cells[6],
                partitions=int(cells[7]),
                partition=int(cells[8]),
            )
        )
    return out


def read_msg_vectors() -> tuple[list[tuple[Msg, bytes]], list[tuple[bytes, str]]]:
    """``(valid (Msg, frame) pairs, malformed (frame, DecodeError message) pairs)``."""
    data: dict[str, Any] = json.loads(MSG_FILE.read_text())
    valid = [(Msg.from_json(v["msg"]), bytes.fromhex(v["bincode"])) for v in data["valid"]]
    bad = [(bytes.fromhex(v["bincode"]), v["error"]) for v in data["malformed"]]
    return valid, bad


_IDS = [
    "",
    "a",
    "alice",
    "bob",
    "01J0000000000000000000000",
    "7f3c1e2a-9b44-4d5e-8a1f-0c2b3d4e5f60",
    "ünïcødé",
    "用户",
    "🐈‍⬛sandcat",
    "x" * 17,
    "y" * 64,
    "z" * 129,
    "w" * 240,
    "v" * 1025,
]
_TIMES = [0, 1_716_000_000_000, 951_868_799_999, 951_868_800_000, shard.MAX_SEND_TIME_MS]


def _write_shard() -> None:
    rng = random.Random(5)
    lines = ["\t".join(SHARD_COLUMNS)]
    ids = _IDS + [f"user-{rng.randrange(10**12)}" for _ in range(40)]
    for i, user_id in enumerate(ids):
        shards = (10, 1, 7, 16, 100, 65_536)[i % 6]
        send_time = _TIMES[i % len(_TIMES)]
        partitions = (12, 1, 3, 2**31 - 1)[i % 4]
        month = shard.month_of(send_time)
        cells = [
            user_id.encode().hex(),
            xxh3_64_intdigest(user_id.encode()),
            shards,
            shard.shard_of(user_id, shards),
            send_time,
            month,
            shard.collection_name(month, shard.shard_of(user_id, shards)),
            partitions,
            shard.partition_of(user_id, partitions),
        ]
        lines.append("\t".join(str(cell) for cell in cells))
    SHARD_FILE.write_text("\n".join(lines) + "\n")


def _write_msg() -> None:
    full = Msg(
        "alice", "bob", "l-1", "s-1", 1, 2, 3, 1, 1, b"hi", True, "g", 1, "a.png", "Al", "r", 9
    )
    msgs = [
        Msg(),
        full,
        full.copy(related_msg_id=None, content=bytes(range(256)), is_read=False),
        full.copy(send_id="用户", nickname="🐈", create_time=-(2**63), send_seq=2**63 - 1),
        full.copy(msg_type=-(2**31), content_type=2**31 - 1, platform=-1, seq=-1),
    ]
    frame = bincode.encode_msg(full)
    empty = bincode.encode_msg(Msg())
    malformed = [
        (b"", "truncated bincode input"),
        (frame[:-1], "truncated bincode input"),
        (frame[:7], "truncated bincode input"),
        (frame + b"\x00", "trailing bytes after bincode value"),
        (b"\xff" * 8 + frame[8:], "bincode length prefix exceeds the input"),
        ((2**26 + 1).to_bytes(8, "little") + b"a" * 64, "bincode length prefix exceeds the input"),
        (b"\x02\0\0\0\0\0\0\0\xc3\x28" + empty[8:], "invalid UTF-8 in bincode string"),
        (b"\x03\0\0\0\0\0\0\0\xed\xa0\x80" + empty[8:], "invalid UTF-8 in bincode string"),
        (empty[:72] + b"\x02" + empty[73:], "invalid bincode bool"),
        (empty[:-9] + b"\x02" + empty[-8:], "invalid bincode Option tag"),
    ]
    data = {
        "valid": [{"msg": m.to_json(), "bincode": bincode.encode_msg(m).hex()} for m in msgs],
        "malformed": [{"bincode": raw.hex(), "error": error} for raw, error in malformed],
    }
    MSG_FILE.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    _write_shard()
    _write_msg()
