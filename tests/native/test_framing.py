"""Framing twins: byte-identical encoding, identical decoding and identical errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandcat.errors import DecodeError
from sandcat.protocol import bincode
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import ReadPayload
from tests import wire
from tests.native.conftest import PY_FRAMING, Framing
from tests.native.golden import read_msg_vectors

VALID, MALFORMED = read_msg_vectors()
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

i64 = st.integers(-(2**63), 2**63 - 1)
i32 = st.integers(-(2**31), 2**31 - 1)
text = st.text(max_size=40)
msgs = st.builds(
    Msg,
    send_id=text,
    receiver_id=text,
    local_id=text,
    server_id=text,
    create_time=i64,
    send_time=i64,
    seq=i64,
    msg_type=i32,
    content_type=i32,
    content=st.binary(max_size=300),
    is_read=st.booleans(),
    group_id=text,
    platform=i32,
    avatar=text,
    nickname=text,
    related_msg_id=st.none() | text,
    send_seq=i64,
)


def outcome(func: Any, *args: Any) -> tuple[str, Any]:
    """What a call did: its result, or the type and message of what it raised."""
    try:
        return ("ok", func(*args))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize(("msg", "frame"), VALID)
def test_golden_frames(impl: Framing, msg: Msg, frame: bytes) -> None:
    assert impl.encode_msg(msg) == frame
    assert impl.decode_msg(frame) == msg


@pytest.mark.parametrize(("frame", "error"), MALFORMED)
def test_golden_malformed_frames(impl: Framing, frame: bytes, error: str) -> None:
    with pytest.raises(DecodeError) as caught:
        impl.decode_msg(frame)
    assert str(caught.value) == error


@SETTINGS
@given(msg=msgs)
def test_random_msgs_encode_identically_and_round_trip(impl: Framing, msg: Msg) -> None:
    frame = impl.encode_msg(msg)
    assert frame == bincode.encode_msg(msg)
    assert impl.decode_msg(frame) == msg


@SETTINGS
@given(msg=msgs, cut=st.integers(0, 10_000), junk=st.binary(max_size=12), at=st.integers(0))
def test_damaged_frames_fail_identically(
    impl: Framing, msg: Msg, cut: int, junk: bytes, at: int
) -> None:
    frame = bincode.encode_msg(msg)
    damaged = [frame[: cut % (len(frame) + 1)], frame + junk]
    pos = at % len(frame)
    damaged.append(frame[:pos] + junk + frame[pos + len(junk) :])
    for data in damaged:
        assert outcome(impl.decode_msg, data) == outcome(bincode.decode_msg, data)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_random_bytes_fail_identically(impl: Framing, data: bytes) -> None:
    for func, ref in (
        (impl.decode_msg, bincode.decode_msg),
        (impl.decode_read, PY_FRAMING.decode_read),
    ):
        assert outcome(func, data) == outcome(ref, data)


def test_huge_sequence_lengths_do_not_overflow(impl: Framing) -> None:
    for count in (2**61, 2**63, 2**64 - 1):
        data = count.to_bytes(8, "little") + b"\0" * 16
        with pytest.raises(DecodeError, match="sequence length exceeds"):
            impl.decode_read(data)


def test_decode_takes_any_buffer(impl: Framing) -> None:
    msg, frame = VALID[1]
    assert impl.decode_msg(bytearray(frame)) == msg  # type: ignore[arg-type]
    assert impl.decode_msg(memoryview(frame)) == msg  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "changes",
    [
        {"seq": 2**63},
        {"msg_type": 2**31},
        {"create_time": 1.5},
        {"send_id": "\ud800"},
        {"related_msg_id": 5},
        {"content": "text"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_unencodable_msgs_fail_like_the_reference(impl: Framing, changes: dict[str, Any]) -> None:
    msg = VALID[1][0].copy(**changes)
    got = outcome(impl.encode_msg, msg)
    assert got[0] != "ok"
    assert got == outcome(bincode.encode_msg, msg)


def test_subclassed_fields_encode_like_the_reference(impl: Framing) -> None:
    class Name(str):
        pass

    msg = VALID[1][0].copy(send_id=Name("alice"), content=bytearray(b"hi"), is_read=1)
    assert impl.encode_msg(msg) == bincode.encode_msg(msg) == VALID[1][1]
    assert impl.encode_msg(msg.copy(seq=True)) == bincode.encode_msg(msg.copy(seq=1))


@SETTINGS
@given(msg=msgs, seqs=st.lists(i64, max_size=20))
def test_fanout_frames_are_the_per_seq_frames(impl: Framing, msg: Msg, seqs: list[int]) -> None:
    frames = impl.encode_fanout(msg, seqs)
    assert frames == [bincode.encode_msg(msg.copy(seq=seq)) for seq in seqs]
    for seq, frame in zip(seqs, frames, strict=True):
        assert frame is frames[seqs.index(seq)]  # one frame per distinct copy


def test_fanout_with_an_unencodable_seq_fails_like_the_reference(impl: Framing) -> None:
    msg = VALID[1][0]
    assert outcome(impl.encode_fanout, msg, iter([1, 2**64])) == outcome(
        PY_FRAMING.encode_fanout, msg, [1, 2**64]
    )


@SETTINGS
@given(values=st.lists(text, max_size=20))
def test_strings_payload(impl: Framing, values: list[str]) -> None:
    data = impl.encode_strings(values)
    assert data == PY_FRAMING.encode_strings(values)
    assert wire.decode_strings(data) == values  # the independent decoder of the tests


@SETTINGS
@given(seqs=st.lists(i64, max_size=50), user_id=text)
def test_read_payload(impl: Framing, seqs: list[int], user_id: str) -> None:
    data = wire.read_payload(seqs, user_id)  # the independent encoder of the tests
    assert impl.decode_read(data) == ReadPayload(msg_seq=seqs, user_id=user_id)


@pytest.mark.parametrize("values", [["a", "\ud800"], ("a", "b"), ["a", 1]])
def test_odd_string_lists_encode_like_the_reference(impl: Framing, values: Any) -> None:
    assert outcome(impl.encode_strings, values) == outcome(PY_FRAMING.encode_strings, values)
