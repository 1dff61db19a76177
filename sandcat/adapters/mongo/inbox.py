"""The inbox in MongoDB (or FerretDB): one copy per owner, optionally hybrid-sharded.

Each stored copy is the original's document (``sandcat-protocol.md`` §4.2) plus ``owner_id``,
``box`` (0 received, 1 sent) and ``box_seq`` (the owner's ``seq`` in box 0, ``send_seq`` in
box 1); ``(owner_id, box, box_seq)`` is unique, so re-inserting a copy is a no-op.

- ``use_sharding: false``: every copy lives in ``single_msg_box``, as in the original.
- ``use_sharding: true`` (decisions §3): a copy lives in the collection of the UTC month of
  its ``send_time`` and the owner's shard (``sandcat._native.inbox_collection``). The
  ``seq_months`` collection keeps, per owner, the lowest and highest seq of each box in each
  month (one document per owner, ``_id`` = owner id, raised with ``$min``/``$max`` before the
  copies are written), so a pull, a delete or a read-mark reads one document by ``_id`` and
  then queries only the month collections whose seq ranges meet the request.

Only plain ``find``/``insert``/``update``/``delete`` commands and indexes are used: FerretDB
v1 has no transactions and a partial aggregation pipeline.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pymongo import ASCENDING, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from sandcat._native import collection_name, month_of, shard_of
from sandcat.adapters.mongo.errors import mongo_errors
from sandcat.config import MongoConfig
from sandcat.log import get_logger
from sandcat.protocol.msg import Msg

log = get_logger(__name__)

SINGLE_COLLECTION = "single_msg_box"
SEQ_INDEX_COLLECTION = "seq_months"
RECEIVED, SENT = 0, 1
DAY_MS = 86_400_000
_DUPLICATE_KEY = 11000
#: Upserts per ``update`` command: FerretDB v1.24 (SQLite) hangs on one command with about a
#: hundred upserts of existing documents, so the index updates go in small commands.
_UPSERTS_PER_COMMAND = 16
_SHARDED_NAME = re.compile(r"^msg_box_(\d{6})_(\d+)$")
#: Bounds of each box's seqs in one month, as stored under ``seq_months.m.<YYYYMM>``.
_LOW, _HIGH = ("rlo", "slo"), ("rhi", "shi")
_ORDER = [("send_time", ASCENDING), ("box_seq", ASCENDING), ("box", ASCENDING)]

Document = dict[str, Any]


def mongo_url(config: MongoConfig) -> str:
    """A ``mongodb://`` URL for the ``db.mongodb`` section."""
    auth = ""
    if config.user:
        auth = quote(config.user, safe="") + ":" + quote(config.password, safe="") + "@"
    return f"mongodb://{auth}{config.host}:{config.port}/"


@dataclass(slots=True)
class CleanReport:
    """What one run of the cleaner removed."""

    deleted: int = 0
    dropped: list[str] = field(default_factory=list)


def _document(owner: str, box: int, msg: Msg) -> Document:
    return {
        "owner_id": owner,
        "box": box,
        "box_seq": msg.send_seq if box else msg.seq,
        "local_id": msg.local_id,
        "server_id": msg.server_id,
        "create_time": msg.create_time,
        "send_time": msg.send_time,
        "content_type": msg.content_type,
        "content": msg.content,
        "send_id": msg.send_id,
        "receiver_id": msg.receiver_id,
        "seq": msg.seq,
        "send_seq": msg.send_seq,
        "msg_type": msg.msg_type,
        "is_read": False,
        "group_id": msg.group_id,
        "related_msg_id": msg.related_msg_id,
    }


def _message(doc: Document) -> Msg:
    return Msg(
        send_id=doc["send_id"],
        receiver_id=doc["receiver_id"],
        local_id=doc["local_id"],
        server_id=doc["server_id"],
        create_time=doc["create_time"],
        send_time=doc["send_time"],
        seq=0 if doc["box"] else doc["seq"],
        msg_type=doc["msg_type"],
        content_type=doc["content_type"],
        content=bytes(doc["content"]),
        is_read=doc["is_read"],
        group_id=doc["group_id"],
        related_msg_id=doc["related_msg_id"],
        send_seq=doc["send_seq"],
    )


def _sort_key(doc: Document) -> tuple[int, int, int]:
    return doc["send_time"], doc["box_seq"], doc["box"]


def _month_start_ms(month: int) -> int:
    start = dt.datetime(month // 100, month % 100, 1, tzinfo=dt.UTC)
    return int(start.timestamp()) * 1000


def _next_month(month: int) -> int:
    return month + 1 if month % 100 < 12 else (month // 100 + 1) * 100 + 1


def _overlaps(bounds: Document, box: int, low: int, high: int) -> bool:
    """Whether the month's seqs of ``box`` can meet the range ``(low, high]``."""
    lowest, highest = bounds.get(_LOW[box]), bounds.get(_HIGH[box])
    return lowest is not None and highest is not None and highest > low and lowest <= high


class MongoInbox:
    """Implements ``InboxWriter`` and the read side of ``InboxStore`` (``pull``,
    ``delete_received``, ``mark_read``); the exposed seqs come from the seq allocator."""

    def __init__(
        self, *, db: AsyncDatabase[Document], use_sharding: bool = False, user_shards: int = 10
    ) -> None:
        self._db = db
        self._sharded = use_sharding
        self._shards = user_shards
        self._index = db[SEQ_INDEX_COLLECTION]
        self._ready: set[str] = set()

    @mongo_errors
    async def start(self) -> None:
        """Create the indexes of every inbox collection that exists (and of the single one)."""
        if not self._sharded:
            await self._ensure(SINGLE_COLLECTION)
            return
        for name in await self._db.list_collection_names():
            if _SHARDED_NAME.match(name):
                await self._ensure(name)

    async def _ensure(self, name: str) -> AsyncCollection[Document]:
        collection = self._db[name]
        if name not in self._ready:
            await collection.create_index(
                [("owner_id", ASCENDING), ("box", ASCENDING), ("box_seq", ASCENDING)],
                unique=True,
                name="owner_box_seq",
            )
            await collection.create_index([("send_time", ASCENDING)], name="send_time")
            self._ready.add(name)
        return collection

    # --- writes -------------------------------------------------------------------------

    @mongo_errors
    async def insert_copies(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        if not copies:
            return
        by_collection: dict[str, list[Document]] = defaultdict(list)
        if not self._sharded:
            by_collection[SINGLE_COLLECTION] = [_document(o, b, m) for o, b, m in copies]
        else:
            # Per owner: {month: [low, high] per box}, raised in seq_months before the copies
            # land, so the index never misses a stored copy.
            bounds: dict[str, dict[int, list[int | None]]] = defaultdict(dict)
            for owner, box, msg in copies:
                month = month_of(msg.send_time)
                key = msg.send_seq if box else msg.seq
                by_collection[collection_name(month, shard_of(owner, self._shards))].append(
                    _document(owner, box, msg)
                )
                entry = bounds[owner].setdefault(month, [None, None, None, None])
                low, high = entry[box], entry[2 + box]
                entry[box] = key if low is None else min(low, key)
                entry[2 + box] = key if high is None else max(high, key)
            await self._raise_bounds(bounds)
        for name, docs in by_collection.items():
            collection = await self._ensure(name)
            try:
                await collection.insert_many(docs, ordered=False)
            except BulkWriteError as exc:
                errors = exc.details.get("writeErrors", [])
                if exc.details.get("writeConcernErrors") or any(
                    error.get("code") != _DUPLICATE_KEY for error in errors
                ):
                    raise

    async def _raise_bounds(self, bounds: dict[str, dict[int, list[int | None]]]) -> None:
        updates: list[UpdateOne] = []
        for owner, months in bounds.items():
            lows: Document = {}
            highs: Document = {}
            for month, entry in months.items():
                for box in (RECEIVED, SENT):
                    if entry[box] is not None:
                        lows[f"m.{month}.{_LOW[box]}"] = entry[box]
                        highs[f"m.{month}.{_HIGH[box]}"] = entry[2 + box]
            updates.append(UpdateOne({"_id": owner}, {"$min": lows, "$max": highs}, upsert=True))
        for first in range(0, len(updates), _UPSERTS_PER_COMMAND):
            await self._index.bulk_write(
                updates[first : first + _UPSERTS_PER_COMMAND], ordered=False
            )

    # --- reads and per-user changes ------------------------------------------------------

    async def _months(self, user_id: str) -> dict[int, Document]:
        doc = await self._index.find_one({"_id": user_id})
        return {int(month): b for month, b in (doc or {}).get("m", {}).items()}

    async def _routes(
        self, user_id: str, ranges: Sequence[tuple[int, int, int]]
    ) -> list[tuple[str, list[tuple[int, int, int]]]]:
        """The collections that can hold seqs of ``ranges`` (``(box, low, high]``), each with
        the ranges it can hold."""
        ranges = [r for r in ranges if r[2] > r[1]]
        if not ranges:
            return []
        if not self._sharded:
            return [(SINGLE_COLLECTION, list(ranges))]
        shard = shard_of(user_id, self._shards)
        routes: list[tuple[str, list[tuple[int, int, int]]]] = []
        for month, bounds in sorted((await self._months(user_id)).items()):
            meets = [r for r in ranges if _overlaps(bounds, *r)]
            if meets:
                routes.append((collection_name(month, shard), meets))
        return routes

    @mongo_errors
    async def pull(
        self, user_id: str, start: int, end: int, send_start: int, send_end: int, limit: int
    ) -> list[Msg]:
        docs: list[Document] = []
        for name, ranges in await self._routes(
            user_id, [(RECEIVED, start, end), (SENT, send_start, send_end)]
        ):
            query = {
                "owner_id": user_id,
                "$or": [
                    {"box": box, "box_seq": {"$gt": low, "$lte": high}} for box, low, high in ranges
                ],
            }
            cursor = self._db[name].find(query, {"_id": False}).sort(_ORDER)
            if limit > 0:
                cursor = cursor.limit(limit)
            docs.extend(await cursor.to_list())
        docs.sort(key=_sort_key)
        if limit > 0:
            del docs[limit:]
        return [_message(doc) for doc in docs]

    async def _received_routes(self, user_id: str, seqs: Sequence[int]) -> list[tuple[str, Any]]:
        if not seqs:
            return []
        wanted = sorted(set(seqs))
        routes = await self._routes(user_id, [(RECEIVED, wanted[0] - 1, wanted[-1])])
        return [
            (name, {"owner_id": user_id, "box": RECEIVED, "box_seq": {"$in": wanted}})
            for name, _ in routes
        ]

    @mongo_errors
    async def delete_received(self, user_id: str, seqs: Sequence[int]) -> int:
        deleted = 0
        for name, query in await self._received_routes(user_id, seqs):
            deleted += (await self._db[name].delete_many(query)).deleted_count
        return deleted

    @mongo_errors
    async def mark_read(self, user_id: str, seqs: Sequence[int]) -> int:
        matched = 0
        for name, query in await self._received_routes(user_id, seqs):
            result = await self._db[name].update_many(query, {"$set": {"is_read": True}})
            matched += result.matched_count
        return matched

    # --- the cleaner ----------------------------------------------------------------------

    @mongo_errors
    async def clean_inbox(
        self, now_ms: int, period_days: int, except_types: Collection[int]
    ) -> CleanReport:
        """Delete the copies (both boxes) sent more than ``period_days`` ago whose type is not
        in ``except_types``; under sharding, drop the month collections left empty and forget
        months that no longer have any collection."""
        cutoff = now_ms - period_days * DAY_MS
        keep: Document = {"msg_type": {"$nin": sorted(except_types)}} if except_types else {}
        report = CleanReport()
        if not self._sharded:
            result = await self._db[SINGLE_COLLECTION].delete_many(
                {"send_time": {"$lt": cutoff}, **keep}
            )
            report.deleted = result.deleted_count
            return report
        months: dict[int, list[str]] = defaultdict(list)
        for name in await self._db.list_collection_names():
            match = _SHARDED_NAME.match(name)
            if match:
                months[int(match[1])].append(name)
        for month, names in sorted(months.items()):
            if _month_start_ms(month) >= cutoff:
                continue
            whole = _month_start_ms(_next_month(month)) <= cutoff
            left = len(names)
            for name in names:
                if whole and not keep:
                    report.deleted += await self._db[name].count_documents({})
                else:
                    query = keep if whole else {"send_time": {"$lt": cutoff}, **keep}
                    report.deleted += (await self._db[name].delete_many(query)).deleted_count
                    if not whole or await self._db[name].find_one({}, {"_id": True}):
                        continue
                await self._db.drop_collection(name)
                self._ready.discard(name)
                report.dropped.append(name)
                left -= 1
            if left == 0:
                await self._index.update_many(
                    {f"m.{month}": {"$exists": True}}, {"$unset": {f"m.{month}": ""}}
                )
        log.info("inbox_cleaned", deleted=report.deleted, dropped=len(report.dropped))
        return report
