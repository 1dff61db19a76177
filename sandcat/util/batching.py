"""A FIFO queue drained by one worker task in batches.

``submit`` queues an item in call order and returns its future; the worker takes up to
``max_batch`` queued items at a time and hands them, with their futures, to the
``process`` callback, which must settle every future of its batch (it may set them in any
order and do more after each). A callback that raises fails the futures it left unsettled.
``stop`` lets what was accepted land first.

``gather_seconds`` is a group-commit window: before a batch smaller than ``max_batch`` the
worker waits that long, so what arrives meanwhile joins it. A store that pays a fixed cost
per batch (a commit with its fsync) then pays it for several items at low rates too, at the
price of that much added latency; 0 takes each batch as soon as the previous one is done.

``weight`` and ``max_weight`` bound a batch by what its items cost as well as by their
number: a batch stops before the item that would take its weight past ``max_weight``
(an item heavier than that still goes, alone), so a few heavy items (a group message
with a row per member) do not make one long batch.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchingWorker(Generic[T, R]):
    def __init__(
        self,
        process: Callable[[list[tuple[T, asyncio.Future[R]]]], Awaitable[None]],
        *,
        max_batch: int,
        name: str,
        gather_seconds: float = 0.0,
        weight: Callable[[T], int] | None = None,
        max_weight: int = 0,
    ) -> None:
        self._process = process
        self._max_batch = max_batch
        self._weight = weight
        self._max_weight = max_weight
        self._gather = gather_seconds
        self._name = name
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            if self._pending:  # let what was accepted land before stopping
                await asyncio.gather(*(f for _, f in list(self._pending)), return_exceptions=True)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue in call order; the future settles once ``process`` has handled the item."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                if self._gather and len(self._pending) < self._max_batch:
                    await asyncio.sleep(self._gather)
                batch = self._take()
                try:
                    await self._process(batch)
                except Exception as exc:  # every waiter of the batch learns of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)

    def _take(self) -> list[tuple[T, asyncio.Future[R]]]:
        """The next batch: up to ``max_batch`` items, and within ``max_weight``."""
        pending, weight = self._pending, self._weight
        batch = [pending.popleft()]
        total = 0 if weight is None else weight(batch[0][0])
        while pending and len(batch) < self._max_batch:
            if weight is not None:
                total += weight(pending[0][0])
                if total > self._max_weight:
                    break
            batch.append(pending.popleft())
        return batch
