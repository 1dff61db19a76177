"""``sandcat.util.tasks.run_all``: results in order, the first failure as itself."""

from __future__ import annotations

import asyncio

import pytest

from sandcat.util.tasks import run_all


async def test_results_come_back_in_the_order_given() -> None:
    gate = asyncio.Event()

    async def late() -> str:
        await gate.wait()
        return "late"

    async def early() -> str:
        gate.set()
        return "early"

    assert await run_all([late(), early()]) == ["late", "early"]
    assert await run_all([]) == []


async def test_the_first_failure_is_raised_as_itself_and_cancels_the_rest() -> None:
    cancelled = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    async def fails() -> None:
        raise LookupError("gone")

    with pytest.raises(LookupError, match="gone"):
        await run_all([hangs(), fails()])
    assert cancelled.is_set()
