"""``RemotePushRouter.emit``, the v2 events' way to the gateways: one EVENT entry per user
held, in one batch per gateway holding any of them; best effort, as pushes are (the HTTP
routes are the truth), so neither a presence nor a bus failure reaches the caller, whose
change is already stored."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import orjson

from sandcat.errors import DbError
from sandcat.protocol.push_batch import EntryKind, decode_batch
from sandcat.services.push import RemotePushRouter
from tests.unit.test_distributed_services import FakeBus, FakePresence


class DownPresence(FakePresence):
    """Presence whose store is unreachable (Redis down, in distributed mode)."""

    async def locate(self, user_ids: Sequence[str]) -> dict[str, dict[int, str]]:
        raise DbError("presence is unavailable")


class DownBus(FakeBus):
    async def publish(self, batches: object) -> None:
        raise DbError("the push bus is unavailable")


async def test_one_event_entry_per_user_in_one_batch_per_gateway() -> None:
    bus = FakeBus()
    presence = FakePresence({"a": {0: "gw1", 1: "gw2"}, "b": {0: "gw1"}})
    router = RemotePushRouter(presence=presence, bus=bus)
    await router.emit(["a", "b", "offline", "a"], "conversation.updated", {"id": "x"})
    assert sorted(bus.sent) == ["gw1", "gw2"]
    gw1 = decode_batch(bus.sent["gw1"][0])
    gw2 = decode_batch(bus.sent["gw2"][0])
    assert [(e.kind, e.user_id) for e in gw1] == [(EntryKind.EVENT, "a"), (EntryKind.EVENT, "b")]
    assert [(e.kind, e.user_id) for e in gw2] == [(EntryKind.EVENT, "a")]
    payload = orjson.loads(gw1[0].frame)
    assert payload == {"event": "conversation.updated", "data": {"id": "x"}}


async def test_an_unreachable_presence_or_bus_is_not_the_callers_failure() -> None:
    down: Iterable[RemotePushRouter] = (
        RemotePushRouter(presence=DownPresence({}), bus=FakeBus()),
        RemotePushRouter(presence=FakePresence({"a": {0: "gw1"}}), bus=DownBus()),
    )
    for router in down:
        await router.emit(["a"], "device.added", {"id": "d"})  # raises nothing
