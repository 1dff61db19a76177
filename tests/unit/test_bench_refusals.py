"""The load generator's console explanations: each refusal maps to its cause and config key."""

from __future__ import annotations

import pytest

from benchmarks.load.refusals import Refusals, explain


@pytest.mark.parametrize(
    ("text", "name", "key"),
    [
        ("the receiver is not your friend", "policy", "server.allow_stranger_messages"),
        ("rate limited: slow down", "rate limit", "limits.messages_per_second"),
        (
            'POST /user/login: HTTP 429 b\'{"kind":"BadRequest"}\'',
            "rate limit",
            "limits.login_per_minute_per_account",
        ),
        ("POST /user/mail/send: HTTP 429 b'{}'", "rate limit", "limits.code_sends_per_minute"),
        ('GET /message/seq/x: HTTP 401 b\'{"kind":"UnAuthorized"}\'', "auth", "access_ttl"),
        ("POST /group/u: HTTP 413 b'{}'", "size limit", "limits.http_body_bytes"),
        ("closed 1008 too many connections from this address", "connection limit", "per_ip"),
        ("closed 4008 slow", "slow reader", "limits.send_queue_frames"),
        ("closed by the server: 4008 slow", "slow reader", "limits.send_queue_frames"),
        ("closed by the server: 4001 knock off", "knock-off", "--users"),
        ("closed by the server: 4002 unauthorized", "auth", "access_ttl"),
        ("closed by the server: 1001 server shutting down", "server stopped", "--api"),
        (
            "closed by the server: 1008 too many connections from this address",
            "connection limit",
            "limits.connections_per_ip",
        ),
        (
            "ClientConnectorError: Cannot connect to host 127.0.0.1:1",
            "unreachable",
            "--api",
        ),
    ],
)
def test_each_refusal_names_its_cause_and_key(text: str, name: str, key: str) -> None:
    cause = explain(text)
    assert cause is not None
    assert cause.name == name
    assert key in cause.key


def test_an_unknown_error_is_not_explained() -> None:
    assert explain("something odd happened") is None


def test_a_cause_is_explained_once_then_counted() -> None:
    refusals = Refusals()
    first = refusals.lines("one-to-one at 100/s", 30, ["the receiver is not your friend"])
    assert first[0] == 'REFUSED one-to-one at 100/s: 30 x "the receiver is not your friend"'
    assert "server.allow_stranger_messages" in first[1]
    assert "--server-config" in first[2]
    again = refusals.lines("one-to-one at 200/s", 60, ["the receiver is not your friend"])
    assert again == ["REFUSED one-to-one at 200/s: 60 more (policy; 90 so far)"]
    assert refusals.lines("one-to-one at 300/s", 0, []) == []
    odd = refusals.lines("http get", 2, ["something odd happened"])
    assert odd == [
        'ERROR http get: 2 x "something odd happened"',
        "  cause unknown: see the server log",
    ]
