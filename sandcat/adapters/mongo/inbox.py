"""The inbox in MongoDB (or FerretDB): one copy per owner, optionally hybrid-sharded.

Each stored copy is the original's inbox document plus ``owner_id``,
``box`` (0 received, 1 sent) and ``box_seq`` (the owner's ``seq`` in box 0, ``send_seq`` in
box 1), without the fields it can be read back without (``_document``); ``(owner_id, box,
box_seq)`` is unique, so re-inserting a copy is a no-op.

- ``use_sharding: false``: every copy lives in ``single_msg_box``, as in the original.
- ``use_sharding: true`` (docs/sharding.md): a copy lives in the collection of the UTC month of
  its ``send_time`` and the owner's shard (``sandcat._native.inbox_collection_batch``). The
  ``seq_months`` collection holds small insert-only *marks* ``{o: owner, b: box, m: YYYYMM,
  s: seq}`` (``_id`` made of the four, so writing a mark twice is a no-op). Seqs grow with
  time, so the lowest mark of a month is its first seq and a month's seqs run up to the next
  month's first (the newest month is open-ended): the index changes only when an owner
  enters a new month. A per-process cache of each owner's latest marked month (bounded,
  least recently used first out) lets a batch skip the index for every owner whose copies
  stay in that month.

  Seq order and ``send_time`` order can disagree a little: ``send_time`` is stamped when a
  message is accepted and the seq allocated just after, on several servers. So a copy sent in
  the last ``late_window_ms`` of its month, or written into a month older than the owner's
  cached latest one, also leaves a mark of its seq: a month's range is ``[lowest mark,
  max(next month's first - 1, highest mark)]``.

  Marks are only ever inserted (no update, no upsert), so concurrent writers in any number
  of processes can only add information, and they are written before the copies, so the
  index never misses a stored copy. (Inserts are also the only writes that FerretDB v1 does
  in constant time: its ``update`` by ``_id`` reads the whole collection on both its SQLite
  and PostgreSQL handlers.) A pull, a delete or a read-mark reads the owner's marks (indexed
  by owner) and then queries only the month collections whose seq ranges meet the request.

Only plain ``find``/``insert``/``update``/``delete`` commands and indexes are used: FerretDB
v1 has no transactions and a partial aggregation pipeline.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict, defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from sandcat._native import collection_name, inbox_collection_batch, month_of, shard_of
from sandcat.adapters.mongo.errors import mongo_errors
from sandcat.config import MongoConfig
from sandcat.log import get_logger
from sandcat.ports import PullCursor
from sandcat.protocol.msg import Msg
from sandcat.util.tasks import run_all

log = get_logger(__name__)

SINGLE_COLLECTION = "single_msg_box"
SEQ_INDEX_COLLECTION = "seq_months"
RECEIVED, SENT = 0, 1
DAY_MS = 86_400_000
_DUPLICATE_KEY = 11000
_SHARDED_NAME = re.compile(r"^msg_box_(\d{6})_(\d+)$")
#: How far apart ``send_time`` order and seq order may be: copies sent in the last hour of a
#: month record their seq as the month's late bound.
LATE_WINDOW_MS = 3_600_000
#: Owners (per box) whose latest indexed month one process remembers.
INDEX_CACHE_SIZE = 200_000
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
    """A copy leaves out what it can be read back without: ``seq`` and a sent copy's
    ``send_seq`` are its ``box_seq``, a group copy's ``receiver_id`` is its ``group_id``,
    and ``group_id``, ``related_msg_id`` and a received copy's ``send_seq`` are stored only
    when set. A copy is stored unread (no ``is_read``; ``mark_read`` sets it), as in the
    embedded inbox. FerretDB's insert cost grows with a document's fields: a copy of
    12 fields instead of 17 went in about 20 % faster (docs/performance.md)."""
    doc: Document = {
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
        "msg_type": msg.msg_type,
    }
    if not msg.group_id or msg.receiver_id != msg.group_id:
        doc["receiver_id"] = msg.receiver_id
    if msg.group_id:
        doc["group_id"] = msg.group_id
    if msg.send_seq and not box:
        doc["send_seq"] = msg.send_seq
    if msg.related_msg_id is not None:
        doc["related_msg_id"] = msg.related_msg_id
    return doc


def _message(doc: Document) -> Msg:
    """Reads both a compact copy and a full one (every field stored, as written before)."""
    box = doc["box"]
    group_id: str = doc.get("group_id", "")
    receiver_id: str = doc.get("receiver_id", group_id)
    return Msg(
        send_id=doc["send_id"],
        receiver_id=receiver_id,
        local_id=doc["local_id"],
        server_id=doc["server_id"],
        create_time=doc["create_time"],
        send_time=doc["send_time"],
        seq=0 if box else doc["box_seq"],
        msg_type=doc["msg_type"],
        content_type=doc["content_type"],
        content=bytes(doc["content"]),
        is_read=doc.get("is_read", False),
        group_id=group_id,
        related_msg_id=doc.get("related_msg_id"),
        send_seq=doc["box_seq"] if box else doc.get("send_seq", 0),
    )


def _by_month(
    copies: Sequence[tuple[str, int, Msg]],
) -> list[tuple[int, list[tuple[str, int, Msg]]]]:
    """The copies of each UTC month of ``send_time``, in order, each group with one of its
    send times: one ``inbox_collection_batch`` call names a whole month's collections."""
    months: dict[int, int] = {}
    groups: dict[int, tuple[int, list[tuple[str, int, Msg]]]] = {}
    for copy in copies:
        send_time = copy[2].send_time
        month = months.get(send_time)
        if month is None:
            month = months[send_time] = month_of(send_time)
        group = groups.get(month)
        if group is None:
            group = groups[month] = (send_time, [])
        group[1].append(copy)
    return list(groups.values())


def _sort_key(doc: Document) -> tuple[int, int, int]:
    return doc["send_time"], doc["box_seq"], doc["box"]


def _month_start_ms(month: int) -> int:
    start = dt.datetime(month // 100, month % 100, 1, tzinfo=dt.UTC)
    return int(start.timestamp()) * 1000


def _next_month(month: int) -> int:
    return month + 1 if month % 100 < 12 else (month // 100 + 1) * 100 + 1


def _mark(owner: str, box: int, month: int, seq: int) -> Document:
    return {"_id": f"{owner}|{box}|{month}|{seq}", "o": owner, "b": box, "m": month, "s": seq}


def _month_ranges(marks: dict[int, tuple[int, int]]) -> list[tuple[int, int, int | None]]:
    """``(month, first, last)`` of every month of one box, oldest first, from each month's
    (lowest, highest) mark; ``last`` is None for the newest month (open-ended)."""
    months = sorted(marks)
    out: list[tuple[int, int, int | None]] = []
    for n, month in enumerate(months):
        first, highest = marks[month]
        last = None if n + 1 == len(months) else max(marks[months[n + 1]][0] - 1, highest)
        out.append((month, first, last))
    return out


async def _insert_ignoring_duplicates(
    collection: AsyncCollection[Document], docs: list[Document]
) -> None:
    try:
        await collection.insert_many(docs, ordered=False)
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if exc.details.get("writeConcernErrors") or any(
            error.get("code") != _DUPLICATE_KEY for error in errors
        ):
            raise


class MongoInbox:
    """Implements ``InboxWriter`` and the read side of ``InboxStore`` (``pull``,
    ``delete_received``, ``mark_read``); the exposed seqs come from the seq allocator."""

    def __init__(
        self,
        *,
        db: AsyncDatabase[Document],
        use_sharding: bool = False,
        user_shards: int = 10,
        late_window_ms: int = LATE_WINDOW_MS,
        index_cache_size: int = INDEX_CACHE_SIZE,
    ) -> None:
        self._db = db
        self._sharded = use_sharding
        self._shards = user_shards
        self._late_window = late_window_ms
        self._index = db[SEQ_INDEX_COLLECTION]
        self._ready: set[str] = set()
        self._index_ready = False
        #: (owner, box) -> (latest month, a seq >= that month's lowest stored mark)
        self._latest: OrderedDict[tuple[str, int], tuple[int, int]] = OrderedDict()
        self._cache_size = index_cache_size

    @mongo_errors
    async def start(self) -> None:
        """Create the indexes of every inbox collection that exists (and of the single one)."""
        if not self._sharded:
            await self._ensure(SINGLE_COLLECTION)
            return
        await self._ensure_index()
        for name in await self._db.list_collection_names():
            if _SHARDED_NAME.match(name):
                await self._ensure(name)

    async def _ensure_index(self) -> None:
        if not self._index_ready:
            await self._index.create_index([("o", ASCENDING)], name="owner")
            self._index_ready = True

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
            for send_time, group in _by_month(copies):
                owners = [owner for owner, _, _ in group]
                names = inbox_collection_batch(owners, send_time, self._shards)
                for name, (owner, box, msg) in zip(names, group, strict=True):
                    by_collection[name].append(_document(owner, box, msg))
            await self._write_index(copies)
        targets = [(await self._ensure(name), docs) for name, docs in by_collection.items()]
        # The collections' inserts in flight together, not one after another.
        await run_all(_insert_ignoring_duplicates(c, docs) for c, docs in targets)

    async def _write_index(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        """Add the marks ``copies`` need to ``seq_months`` before they are stored, leaving
        out what the cache proves is already there."""
        lows: dict[tuple[str, int, int], int] = {}
        highs: dict[tuple[str, int, int], int] = {}
        learned: dict[tuple[str, int], tuple[int, int]] = {}
        for owner, box, msg in copies:
            month = month_of(msg.send_time)
            seq = msg.send_seq if box else msg.seq
            key = (owner, box, month)
            known = learned.get((owner, box)) or self._latest.get((owner, box))
            if (owner, box) in self._latest:
                self._latest.move_to_end((owner, box))
            if known is None or known[0] != month or seq < known[1]:
                lows[key] = min(seq, lows.get(key, seq))
                if known is not None and month < known[0]:
                    highs[key] = max(seq, highs.get(key, seq))  # a late copy of an older month
                else:
                    learned[(owner, box)] = (month, seq)
            if _month_start_ms(_next_month(month)) - msg.send_time <= self._late_window:
                highs[key] = max(seq, highs.get(key, seq))
        marks = {
            doc["_id"]: doc
            for bound in (lows, highs)
            for (owner, box, month), seq in bound.items()
            for doc in [_mark(owner, box, month, seq)]
        }
        if marks:
            await self._ensure_index()
            await _insert_ignoring_duplicates(self._index, list(marks.values()))
        for slot, (month, seq) in learned.items():  # only once the index holds them
            known = self._latest.get(slot)
            if known is None or month > known[0] or (month == known[0] and seq < known[1]):
                self._latest[slot] = (month, seq)
            self._latest.move_to_end(slot)
        while len(self._latest) > self._cache_size:
            self._latest.popitem(last=False)

    # --- reads and per-user changes ------------------------------------------------------

    async def _marks(self, user_id: str) -> dict[int, dict[int, tuple[int, int]]]:
        """Per box, per month: the lowest and highest mark of ``user_id``."""
        out: dict[int, dict[int, tuple[int, int]]] = {RECEIVED: {}, SENT: {}}
        cursor = self._index.find({"o": user_id}, {"_id": False, "b": True, "m": True, "s": True})
        for doc in await cursor.to_list():
            box, month, seq = doc["b"], doc["m"], doc["s"]
            low, high = out[box].get(month, (seq, seq))
            out[box][month] = (min(low, seq), max(high, seq))
        return out

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
        marks = await self._marks(user_id)
        meets: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
        for box, low, high in ranges:
            for month, first, last in _month_ranges(marks[box]):
                if first <= high and (last is None or last > low):
                    meets[month].append((box, low, high))
        return [(collection_name(month, shard), meets[month]) for month in sorted(meets)]

    @mongo_errors
    async def pull(
        self,
        user_id: str,
        start: int,
        end: int,
        send_start: int,
        send_end: int,
        limit: int,
        after: PullCursor | None = None,
    ) -> list[Msg]:
        docs: list[Document] = []
        for name, ranges in await self._routes(
            user_id, [(RECEIVED, start, end), (SENT, send_start, send_end)]
        ):
            query: Document = {
                "owner_id": user_id,
                "$or": [
                    {"box": box, "box_seq": {"$gt": low, "$lte": high}} for box, low, high in ranges
                ],
            }
            if after is not None:
                t, seq, box = after
                query = {
                    "$and": [
                        query,
                        {
                            "$or": [
                                {"send_time": {"$gt": t}},
                                {"send_time": t, "box_seq": {"$gt": seq}},
                                {"send_time": t, "box_seq": seq, "box": {"$gt": box}},
                            ]
                        },
                    ]
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

    @mongo_errors
    async def origins(self, user_id: str, seqs: Sequence[int]) -> set[tuple[str, str]]:
        found: set[tuple[str, str]] = set()
        for name, query in await self._received_routes(user_id, seqs):
            async for doc in self._db[name].find(
                query, {"_id": False, "send_id": True, "group_id": True}
            ):
                found.add((doc["send_id"], doc.get("group_id", "")))
        return found

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
                await self._index.delete_many({"m": month})
                for key in [k for k, (m, _) in self._latest.items() if m == month]:
                    del self._latest[key]
        log.info("inbox_cleaned", deleted=report.deleted, dropped=len(report.dropped))
        return report
