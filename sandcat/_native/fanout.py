"""Fan-out batching: the pure-Python reference of the Rust twin (``sandcat_native``).

From one message's recipients, each ``(recipient_id, seq)`` with its gateway from presence
(``None`` or absent when offline), to one push batch per gateway and one inbox write batch
per shard collection (``shard.collection_name``). Batches appear in order of their first
recipient and keep the recipients' order; the entries are the input pairs themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xxhash import xxh3_64_intdigest

from sandcat._native.shard import DEFAULT_USER_SHARDS, check_month, check_shards

Recipient = tuple[str, int]
Batches = dict[str, list[Recipient]]

BAD_RECIPIENT = "a recipient is a (str, int) pair"
BAD_GATEWAY = "a gateway id is a str or None"


def plan_fanout(
    recipients: Iterable[Recipient],
    gateways: Mapping[str, str | None],
    month: int,
    user_shards: int = DEFAULT_USER_SHARDS,
) -> tuple[Batches, Batches]:
    """``({gateway_id: [(recipient_id, seq), ...]}, {collection: [(recipient_id, seq), ...]})``."""
    check_month(month)
    shards = check_shards(user_shards)
    pushes: Batches = {}
    inbox: Batches = {}
    by_shard: dict[int, list[Recipient]] = {}
    presence = gateways.get
    digest = xxh3_64_intdigest
    for item in recipients:
        if not isinstance(item, tuple) or len(item) != 2:
            raise TypeError(BAD_RECIPIENT)
        recipient, seq = item
        if not isinstance(recipient, str) or not isinstance(seq, int):
            raise TypeError(BAD_RECIPIENT)
        gateway = presence(recipient)
        if gateway is not None:
            if not isinstance(gateway, str):
                raise TypeError(BAD_GATEWAY)
            batch = pushes.get(gateway)
            if batch is None:
                batch = pushes[gateway] = []
            batch.append(item)
        shard = digest(recipient.encode()) % shards
        batch = by_shard.get(shard)
        if batch is None:
            batch = by_shard[shard] = inbox[f"msg_box_{month}_{shard:02d}"] = []
        batch.append(item)
    return pushes, inbox
