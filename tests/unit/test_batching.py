"""``sandcat.util.batching.BatchingWorker``: order, batch bound, failures, stop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from sandcat.util.batching import BatchingWorker


async def test_items_go_in_order_in_bounded_batches_and_a_failure_stays_in_its_batch() -> None:
    batches: list[list[int]] = []

    async def process(batch: list[tuple[int, asyncio.Future[str]]]) -> None:
        batches.append([item for item, _ in batch])
        if any(item == 4 for item, _ in batch):
            batch[0][1].set_result("settled before the failure")
            raise RuntimeError("bad batch")
        for item, future in batch:
            future.set_result(f"r{item}")

    worker: BatchingWorker[int, str] = BatchingWorker(process, max_batch=3, name="test-worker")
    worker.start()
    futures = [worker.submit(i) for i in range(8)]
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert batches == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert results[:3] == ["r0", "r1", "r2"] and results[6:] == ["r6", "r7"]
    assert results[3] == "settled before the failure"
    assert [type(r) for r in results[4:6]] == [RuntimeError, RuntimeError]
    await worker.stop()


async def test_stop_lets_what_was_accepted_land() -> None:
    gate, busy = asyncio.Event(), asyncio.Event()

    async def process(batch: list[tuple[int, asyncio.Future[int]]]) -> None:
        busy.set()
        await gate.wait()
        for item, future in batch:
            future.set_result(item * 2)

    worker: BatchingWorker[int, int] = BatchingWorker(process, max_batch=2, name="test-worker")
    worker.start()
    futures = [worker.submit(i) for i in range(5)]
    await busy.wait()
    stopping = asyncio.ensure_future(worker.stop())
    await asyncio.wait([stopping], timeout=0.05)
    assert not stopping.done()  # the first batch is still being processed
    gate.set()
    await stopping
    assert [f.result() for f in futures] == [0, 2, 4, 6, 8]


def _recording(
    batches: list[list[int]],
    *,
    max_batch: int,
    gather_seconds: float = 0.0,
    weight: Callable[[int], int] | None = None,
    max_weight: int = 0,
) -> BatchingWorker[int, None]:
    """A worker whose batches are appended to ``batches`` and settled at once."""

    async def process(batch: list[tuple[int, asyncio.Future[None]]]) -> None:
        batches.append([item for item, _ in batch])
        for _, future in batch:
            future.set_result(None)

    return BatchingWorker(
        process,
        max_batch=max_batch,
        name="test-worker",
        gather_seconds=gather_seconds,
        weight=weight,
        max_weight=max_weight,
    )


async def test_a_gather_window_lets_later_items_join_a_small_batch() -> None:
    """With a window, an item submitted while the worker waits joins the batch; without
    one, the same sequence gives a batch each. A full batch never waits."""

    async def run(gather: float, max_batch: int) -> list[list[int]]:
        batches: list[list[int]] = []
        worker = _recording(batches, max_batch=max_batch, gather_seconds=gather)
        worker.start()
        first = worker.submit(0)
        for _ in range(3):  # let the worker wake up (and start its window, if it has one)
            await asyncio.sleep(0)
        second = worker.submit(1)
        await asyncio.gather(first, second)
        await worker.stop()
        return batches

    assert await run(0.0, max_batch=8) == [[0], [1]]
    async with asyncio.timeout(2):  # full batches never wait out the 5 s window
        assert await run(5.0, max_batch=1) == [[0], [1]]
    assert await run(0.2, max_batch=8) == [[0, 1]]


async def test_a_weight_bound_splits_heavy_items_and_a_heavier_one_goes_alone() -> None:
    batches: list[list[int]] = []
    worker = _recording(batches, max_batch=4, weight=lambda item: item, max_weight=10)
    futures = [worker.submit(w) for w in (4, 4, 4, 1, 1, 1, 1, 1, 30, 2)]
    worker.start()  # everything is queued before the first batch is taken
    await asyncio.gather(*futures)
    await worker.stop()
    # 4+4 fit in 10, a third 4 does not; then the count (4) bounds; 30 goes alone.
    assert batches == [[4, 4], [4, 1, 1, 1], [1, 1], [30], [2]]
