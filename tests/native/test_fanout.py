"""Fan-out batching twins: golden vectors, identical plans, identical errors."""

from __future__ import annotations

from collections import UserDict
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandcat._native import fanout, shard
from tests.native.golden import FanoutVector, read_fanout_vectors

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
recipient_ids = st.text(min_size=1, max_size=12)
gateway_ids = st.sampled_from(["gw-1", "gw-2", "gw-3", "gateway-ü"])
cases = st.dictionaries(
    recipient_ids, st.tuples(st.integers(0, 2**63 - 1), st.none() | gateway_ids)
)


def outcome(func: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", func(*args))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("v", read_fanout_vectors(), ids=lambda v: f"{len(v.recipients)}")
def test_golden_vectors(fanout_impl: Any, v: FanoutVector) -> None:
    pushes, inbox = fanout_impl.plan_fanout(v.recipients, v.gateways, v.month, v.user_shards)
    assert list(pushes.items()) == list(v.pushes.items())
    assert list(inbox.items()) == list(v.inbox.items())


@SETTINGS
@given(
    case=cases,
    shards=st.integers(1, 64),
    month=st.sampled_from([197001, 202405, 999912]),
    absent=st.booleans(),
)
def test_plans_match_the_reference_and_the_contract(
    fanout_impl: Any, case: dict[str, tuple[int, str | None]], shards: int, month: int, absent: bool
) -> None:
    recipients = [(rid, seq) for rid, (seq, _) in case.items()]
    gateways = {rid: gw for rid, (_, gw) in case.items() if gw is not None or not absent}
    pushes, inbox = fanout_impl.plan_fanout(recipients, gateways, month, shards)
    expected = fanout.plan_fanout(recipients, gateways, month, shards)
    assert (list(pushes.items()), list(inbox.items())) == (
        list(expected[0].items()),
        list(expected[1].items()),
    )
    # The contract, independent of the reference: each online recipient in its gateway's
    # batch, every recipient in its own shard's collection, in input order, as the same objects.
    for gateway, batch in pushes.items():
        assert batch == [item for item in recipients if gateways.get(item[0]) == gateway]
    for name, batch in inbox.items():
        assert batch == [
            item
            for item in recipients
            if shard.collection_name(month, shard.shard_of(item[0], shards)) == name
        ]
    entries = [item for batch in inbox.values() for item in batch]
    assert sorted(map(id, entries)) == sorted(map(id, recipients))


def test_defaults_other_iterables_and_mappings(fanout_impl: Any) -> None:
    recipients = [("a", 1), ("b", 2), ("c", 3)]
    presence: dict[str, str | None] = {"a": "gw", "c": "gw"}
    expected = fanout.plan_fanout(recipients, presence, 202405, 10)
    assert fanout_impl.plan_fanout(recipients, presence, 202405) == expected
    assert fanout_impl.plan_fanout(iter(recipients), UserDict(presence), 202405) == expected
    assert fanout_impl.plan_fanout(tuple(recipients), presence, 202405) == expected


@pytest.mark.parametrize(
    ("recipients", "gateways", "month", "shards"),
    [
        ([("a", 1)], {}, 202413, 10),
        ([("a", 1)], {}, 196912, 10),
        ([("a", 1)], {}, 202405, 0),
        ([("a", 1)], {}, 202405, 2**64),
        ([["a", 1]], {}, 202405, 10),
        ([("a", 1, 2)], {}, 202405, 10),
        ([(1, 1)], {}, 202405, 10),
        ([("a", "1")], {}, 202405, 10),
        ([("a", 1)], {"a": 5}, 202405, 10),
        ([("a", 1), ("b", 2)], {"b": b"gw"}, 202405, 10),
        ([("\ud800", 1)], {}, 202405, 10),
        (5, {}, 202405, 10),
    ],
)
def test_bad_input_fails_identically(
    fanout_impl: Any, recipients: Any, gateways: Any, month: Any, shards: Any
) -> None:
    got = outcome(fanout_impl.plan_fanout, recipients, gateways, month, shards)
    assert got[0] != "ok"
    assert got == outcome(fanout.plan_fanout, recipients, gateways, month, shards)
