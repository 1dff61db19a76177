"""The record a message travels in between the accepting process and the msg-server.

JSON (orjson) with the ``Msg`` in its serde form, the receivers with their allocated seqs
and the storage flags. Seqs are allocated before the record is produced, so a msg-server
only stores and routes: replaying a record is idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sandcat.errors import DecodeError
from sandcat.protocol.msg import Msg


@dataclass(slots=True)
class MessageRecord:
    msg: Msg  # carries the sender's send_seq (0 when it has none)
    receivers: list[tuple[str, int]]
    store: bool
    outbox: bool
    history: bool
    push_self: bool

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "msg": self.msg.to_json(),
                "receivers": self.receivers,
                "store": self.store,
                "outbox": self.outbox,
                "history": self.history,
                "push_self": self.push_self,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> MessageRecord:
        try:
            raw: Any = orjson.loads(data)
            receivers = [(str(uid), int(seq)) for uid, seq in raw["receivers"]]
            return cls(
                msg=Msg.from_json(raw["msg"]),
                receivers=receivers,
                store=bool(raw["store"]),
                outbox=bool(raw["outbox"]),
                history=bool(raw["history"]),
                push_self=bool(raw["push_self"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"undecodable message record: {exc}") from exc
