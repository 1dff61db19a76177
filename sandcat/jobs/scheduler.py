"""A tiny periodic scheduler whose tasks live exactly as long as the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from sandcat.log import get_logger

log = get_logger(__name__)

Job = Callable[[], Awaitable[object]]


class Scheduler:
    def __init__(self) -> None:
        self._jobs: list[tuple[float, str, Job]] = []
        self._tasks: list[asyncio.Task[None]] = []

    def every(self, seconds: float, name: str, job: Job) -> None:
        self._jobs.append((seconds, name, job))

    def start(self) -> None:
        for seconds, name, job in self._jobs:
            self._tasks.append(asyncio.create_task(self._loop(seconds, name, job), name=name))

    async def _loop(self, seconds: float, name: str, job: Job) -> None:
        while True:
            try:
                result = await job()
                log.debug("job_done", job=name, result=result)
            except Exception:
                log.exception("job_failed", job=name)
            await asyncio.sleep(seconds)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
