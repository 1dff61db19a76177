"""The embedded message writer's CPU per message by batch size: what a commit and the
batch's statements cost when a batch holds 1, 3, 8 or 16 one-to-one messages.

    .venv/bin/python -m benchmarks.writer_batches [--messages 6000] [--sizes 1,3,8,16]

Each size runs on a fresh SQLite database (in the temporary folder, on disk) through
the public ``SqliteMessageLog`` path with no commit window: the messages of one batch are
submitted together and the next batch waits for their acks, so every batch is exactly one
transaction. ``synchronous`` FULL (the default) and NORMAL (no fsync at commit) alternate,
so the difference is the fsync's share. Messages go between 200 users at random, with
history (conversations) on, as a client's chat messages do.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import uvloop

from sandcat.adapters.embedded.messages import SqliteMessageLog
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations
from sandcat.domain import Submission
from sandcat.protocol.msg import Msg, MsgType

USERS = [f"user{i:04d}-{'x' * 12}" for i in range(200)]
#: Batches written before the clock starts (the users' counters read, the pages cached).
WARM_BATCHES = 100


def _submissions(count: int, seed: int) -> list[Submission]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        sender, receiver = rng.sample(USERS, 2)
        msg = Msg(
            send_id=sender,
            receiver_id=receiver,
            local_id=f"l{seed}.{i}",
            server_id=f"s{seed}.{i}",
            content=b"x" * 40,
            msg_type=MsgType.SINGLE_MSG,
            send_time=1_700_000_000_000 + i,
            create_time=1_700_000_000_000 + i,
        )
        out.append(Submission(msg, [receiver], history=True, idem_key=(sender, msg.local_id)))
    return out


async def _cpu_per_message(size: int, messages: int, synchronous: str) -> tuple[float, float]:
    """(CPU µs, wall µs) per message in batches of ``size``."""
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.db")
        apply_migrations(path)
        db = SqliteDatabase(path, synchronous=synchronous)
        await db.open()
        log = SqliteMessageLog(db, max_batch=size)
        log.start()
        try:
            subs = _submissions(messages + WARM_BATCHES * size, seed=size)
            batches = [subs[k : k + size] for k in range(0, len(subs), size)]
            for batch in batches[:WARM_BATCHES]:
                await asyncio.gather(*(log.submit(sub) for sub in batch))
            timed = batches[WARM_BATCHES:]
            count = sum(len(batch) for batch in timed)
            cpu, wall = time.process_time(), time.perf_counter()
            for batch in timed:
                await asyncio.gather(*(log.submit(sub) for sub in batch))
            return (
                (time.process_time() - cpu) / count * 1e6,
                (time.perf_counter() - wall) / count * 1e6,
            )
        finally:
            await log.stop()
            await db.close()


async def main(messages: int, sizes: list[int]) -> None:
    print("batch  synchronous  CPU µs/msg  wall µs/msg")
    for size in sizes:
        for synchronous in ("FULL", "NORMAL"):
            cpu, wall = await _cpu_per_message(size, messages, synchronous)
            print(f"{size:5d}  {synchronous:11}  {cpu:10.1f}  {wall:11.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=6000, help="timed messages per run")
    parser.add_argument("--sizes", default="1,3,8,16", help="batch sizes, comma-separated")
    args = parser.parse_args()
    uvloop.run(main(args.messages, [int(s) for s in args.sizes.split(",")]))
