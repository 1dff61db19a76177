"""The reference codec against byte vectors computed by hand from the spec (§3.2)."""

from __future__ import annotations

import pytest

from sandcat.errors import DecodeError
from sandcat.protocol.bincode import decode_msg, encode_msg
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import ReadPayload
from tests import wire

# Msg{send_id:"a", receiver_id:"bc", local_id:"", server_id:"", create_time:1, send_time:2,
#     seq:3, msg_type:0, content_type:1, content:[0x68,0x69], is_read:true, group_id:"",
#     platform:1, avatar:"", nickname:"", related_msg_id:Some("r"), send_seq:-1}
VECTOR = bytes.fromhex(
    "0100000000000000"
    "61"  # send_id "a"
    "0200000000000000"
    "6263"  # receiver_id "bc"
    "0000000000000000"  # local_id ""
    "0000000000000000"  # server_id ""
    "0100000000000000"  # create_time 1
    "0200000000000000"  # send_time 2
    "0300000000000000"  # seq 3
    "00000000"  # msg_type 0
    "01000000"  # content_type 1
    "0200000000000000"
    "6869"  # content b"hi"
    "01"  # is_read true
    "0000000000000000"  # group_id ""
    "01000000"  # platform 1
    "0000000000000000"  # avatar ""
    "0000000000000000"  # nickname ""
    "01"
    "0100000000000000"
    "72"  # related_msg_id Some("r")
    "ffffffffffffffff"  # send_seq -1
)
VECTOR_MSG = Msg(
    send_id="a",
    receiver_id="bc",
    create_time=1,
    send_time=2,
    seq=3,
    msg_type=0,
    content_type=1,
    content=b"hi",
    is_read=True,
    platform=1,
    related_msg_id="r",
    send_seq=-1,
)


def test_encode_matches_hand_vector() -> None:
    assert encode_msg(VECTOR_MSG) == VECTOR


def test_decode_matches_hand_vector() -> None:
    assert decode_msg(VECTOR) == VECTOR_MSG


def test_empty_msg_is_exactly_the_fixed_part() -> None:
    # 8 strings/bytes with an 8-byte length each (64), 4 i64 (32), 3 i32 (12),
    # a bool (1) and a None tag (1).
    assert len(encode_msg(Msg())) == 64 + 32 + 12 + 1 + 1


def test_utf8_lengths_are_in_bytes() -> None:
    data = encode_msg(Msg(send_id="é"))
    assert data[:10] == bytes.fromhex("0200000000000000c3a9")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        VECTOR[:-1],  # truncated
        VECTOR + b"\x00",  # trailing byte
        bytes.fromhex("ffffffffffffff7f") + VECTOR[8:],  # absurd length prefix
        VECTOR[:8] + b"\xff" + VECTOR[9:],  # invalid UTF-8 in send_id
    ],
)
def test_malformed_input_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_msg(data)


def test_bad_bool_and_option_tags_are_rejected() -> None:
    is_read_at = len(VECTOR) - (8 + 4 + 8 + 8 + 1 + 8 + 1 + 8) - 1
    broken = bytearray(VECTOR)
    broken[is_read_at] = 2
    with pytest.raises(DecodeError):
        decode_msg(bytes(broken))


def test_read_payload_vector() -> None:
    raw = bytes.fromhex("020000000000000005000000000000000700000000000000010000000000000075")
    assert ReadPayload.decode(raw) == ReadPayload([5, 7], "u")
    assert wire.read_payload([5, 7], "u") == raw  # the tests' own encoder agrees


def test_json_form_round_trip_and_strictness() -> None:
    data = VECTOR_MSG.to_json()
    assert data["content"] == [104, 105]
    assert Msg.from_json(data) == VECTOR_MSG
    for missing in ("send_id", "seq", "content", "is_read"):
        broken = dict(data)
        del broken[missing]
        with pytest.raises(DecodeError):
            Msg.from_json(broken)
    with pytest.raises(DecodeError):
        Msg.from_json({**data, "msg_type": 2**31})
    with pytest.raises(DecodeError):
        Msg.from_json({**data, "content": [256]})
