"""A FIFO submission queue drained by one worker in batches (the embedded message log's shape;
the distributed pipeline overlaps its batches and keeps its own queue).

``submit`` queues in call order and returns a future; one worker task takes up to
``max_batch`` queued items at a time and hands them to ``process``, which must settle every
future of its batch. ``stop`` lets what was accepted land first.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections import deque

from sandcat.domain import Stored, Submission

Item = tuple[Submission, "asyncio.Future[Stored]"]


class BatchingWorker(ABC):
    def __init__(self, *, max_batch: int, name: str) -> None:
        self._max_batch = max_batch
        self._name = name
        self._pending: deque[Item] = deque()
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

    def submit(self, submission: Submission) -> asyncio.Future[Stored]:
        """Queue in call order; the future resolves once the submission is durable."""
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._pending.append((submission, future))
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                size = min(self._max_batch, len(self._pending))
                await self.process([self._pending.popleft() for _ in range(size)])

    @abstractmethod
    async def process(self, batch: list[Item]) -> None:
        """Make ``batch`` durable and settle each of its futures."""
