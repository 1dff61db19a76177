"""The SQLite writer's batches: bounded by messages and by inbox rows (a group message
weighs a row per member), so a burst to a large group never makes one huge transaction."""

from __future__ import annotations

import asyncio

from sandcat.adapters.embedded.messages import MAX_BATCH_ROWS, SqliteMessageLog
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.domain import Submission
from sandcat.metrics import COUNTS
from sandcat.protocol.msg import Msg


def _group_message(i: int, members: list[str]) -> Submission:
    msg = Msg(
        send_id="owner",
        receiver_id="g",
        group_id="g",
        local_id=f"l{i}",
        server_id=f"s{i}",
        content=b"hi",
    )
    return Submission(msg=msg, receivers=members, history=True)


async def test_a_group_burst_goes_in_batches_within_the_row_bound(
    sqlite_db: SqliteDatabase,
) -> None:
    log = SqliteMessageLog(sqlite_db, max_batch=1024)
    members = [f"m{i:05d}" for i in range(MAX_BATCH_ROWS // 3)]  # two fit a batch, not three
    stored: list[int] = []
    log.add_listener(lambda sub, result: stored.append(len(result.receiver_seqs)))
    batches, messages = COUNTS.store_batch_size.count, COUNTS.store_batch_size.sum
    try:
        futures = [log.submit(_group_message(i, members)) for i in range(5)]
        log.start()  # all five are queued before the first batch is taken
        await asyncio.gather(*futures)
    finally:
        await log.stop()
    assert stored == [len(members)] * 5
    assert COUNTS.store_batch_size.sum - messages == 5
    assert COUNTS.store_batch_size.count - batches == 3  # 2 + 2 + 1
