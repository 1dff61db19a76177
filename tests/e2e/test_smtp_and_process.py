"""The SMTP mailer against a real SMTP server, and the real ``sandcat serve`` process."""

from __future__ import annotations

import asyncio
import email
import signal
from email.message import Message
from pathlib import Path

import aiohttp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from scripts.topology import free_port
from tests.client import Api, CodeBook, Socket, befriend
from tests.conftest import StartServer
from tests.process import serve

ROOT = Path(__file__).resolve().parents[2]


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append(email.message_from_bytes(envelope.content))
        return "250 OK"


async def test_smtp_mailer_sends_and_never_logs_the_code(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        async with start_server(
            mail__server="127.0.0.1",
            mail__port=port,
            mail__use_tls=False,
            mail__account="noreply@sandcat.test",
        ) as srv:
            api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
            await api.call("POST", "/user/mail/send", json={"email": "m@example.com"})
            for _ in range(100):
                if sink.messages:
                    break
                await asyncio.sleep(0.05)
            assert len(sink.messages) == 1
            mail = sink.messages[0]
            assert mail["To"] == "m@example.com" and mail["Subject"] == "Verify Login Code"
            body = mail.get_payload()[0].get_payload()  # type: ignore[index,union-attr]
            code = next(w for w in str(body).split() if w.isdigit() and len(w) == 6)
            assert codes.codes == {}  # nothing went to the log
            _, user = await api.call(
                "POST",
                "/user",
                json={
                    "avatar": "avatar1.png",
                    "name": "m",
                    "password": "p",
                    "email": "m@example.com",
                    "code": code,
                },
            )
            assert user["email"] == "m@example.com"
    finally:
        controller.stop()


async def test_real_process_end_to_end(tmp_path: Path, session: aiohttp.ClientSession) -> None:
    """`sandcat serve` as a user starts it: codes from its log, chat, offline pull."""
    async with serve(tmp_path, ROOT / "config.yml") as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", srv.book)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        await befriend(api, alice, bob)  # Bob's receive seq 1
        assert alice.ws_addr == f"ws://127.0.0.1:{srv.ws_port}/ws"
        a = await Socket.connect(session, alice)
        for i in range(3):
            await a.send(receiver_id=bob.id, local_id=f"p{i}", content=f"offline {i}".encode())
            await a.recv_until(lambda m: m["msg_type"] == 24)
        _, seqs = await api.call("GET", f"/api/message/seq/{bob.id}", token=bob.token)
        assert seqs == {"seq": 4, "send_seq": 0}
        _, pulled = await api.call(
            "POST",
            "/api/message",
            token=bob.token,
            json={"user_id": bob.id, "send_start": 0, "send_end": 0, "start": 1, "end": 4},
        )
        assert [bytes(m["content"]) for m in pulled] == [b"offline 0", b"offline 1", b"offline 2"]
        await a.close()
        srv.proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(srv.proc.wait(), 10)
    assert code == 0, "".join(srv.lines[-20:])
    assert srv.saw("server_started")
