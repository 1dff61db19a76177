"""Time that decides behaviour comes from the ``Clock`` port: rate limits, push holds and
idempotency windows checked on a fake clock, without waiting for real time to pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandcat.adapters.embedded.messages import IDEMPOTENCY_TTL_MS, SqliteMessageLog
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations
from sandcat.adapters.embedded.users import SqliteCodeStore
from sandcat.domain import Submission, idempotency_key
from sandcat.protocol.msg import Msg
from sandcat.services.ratelimit import TokenBucket, WindowLimiter
from sandcat.services.storage import HOLD_SECONDS, StorageService
from tests.clock import FakeClock
from tests.unit.test_distributed_services import (
    FakeHistory,
    FakeInbox,
    FakeRouter,
    FakeSeqs,
    record,
)


def test_window_limiter_counts_within_its_window_only() -> None:
    clock = FakeClock()
    limiter = WindowLimiter(2, 60, clock=clock)
    assert limiter.hit("k") == 0
    clock.advance(30)
    assert limiter.hit("k") == 0
    assert limiter.hit("k") == 30  # the first hit leaves the window in 30 s
    assert limiter.hit("other") == 0  # per key
    clock.advance(30)  # the first hit is out of the window now, the second is not
    assert limiter.hit("k") == 0
    assert limiter.hit("k") > 0
    limiter.refund("k")
    assert limiter.hit("k") == 0


def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(2.0, 3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.advance(0.5)  # one token back
    assert [bucket.take() for _ in range(2)] == [True, False]
    clock.advance(3600)  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


@pytest.mark.parametrize(
    ("waited", "pushed"), [(HOLD_SECONDS - 0.001, [1, 2, 3]), (HOLD_SECONDS, [1, 3])]
)
async def test_a_held_push_expires_after_the_hold(waited: float, pushed: list[int]) -> None:
    """b's seq 2 is stored before seq 1 and held; a copy still above the watermark a whole
    hold later is dropped (the client pulls it), else it goes out once the hole is filled."""
    clock, seqs, router = FakeClock(), FakeSeqs(), FakeRouter()
    s1, s2, s3 = [(await seqs.allocate("a", ["b"]))[1][0] for _ in range(3)]
    service = StorageService(
        inbox=FakeInbox(), history=FakeHistory(), seqs=seqs, router=router, clock=clock
    )
    await service.store_batch([record("a", [("b", s2)], 2)])
    clock.advance(waited)
    await service.store_batch([record("a", [("b", s3)], 3)])  # b's hold is looked at again
    assert router.pushes == []
    await service.store_batch([record("a", [("b", s1)], 1)])
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == pushed
    assert await seqs.exposed("b") == (3, 0)


async def _database(tmp_path: Path) -> SqliteDatabase:
    path = str(tmp_path / "sandcat.db")
    apply_migrations(path)
    db = SqliteDatabase(path)
    await db.open()
    return db


async def test_embedded_codes_expire_after_their_ttl(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    clock = FakeClock()
    codes = SqliteCodeStore(db, clock=clock)
    try:
        await codes.put_code("a@example.com", "123456", 300)
        clock.advance(299)
        assert await codes.get_code("a@example.com") == "123456"
        clock.advance(1)
        assert await codes.get_code("a@example.com") is None
    finally:
        await db.close()


async def test_embedded_idempotency_keys_last_24_hours(tmp_path: Path) -> None:
    db = await _database(tmp_path)
    clock = FakeClock()
    log = SqliteMessageLog(db, clock=clock)
    log.start()
    try:

        async def send() -> bool:
            msg = Msg(send_id="a", receiver_id="b", local_id="l1", server_id="s", content=b"x")
            msg.send_time = clock.now_ms()
            key = idempotency_key("a", "b", "l1")
            sub = Submission(msg=msg, receivers=["b"], idem_key=key)
            return (await log.submit(sub)).duplicate

        assert not await send()
        clock.advance(IDEMPOTENCY_TTL_MS / 1000 - 1)
        assert await send()  # a resend within the window gets the first ack
        clock.advance(1)
        assert not await send()  # past it, the same local id is a new message
    finally:
        await log.stop()
        await db.close()
