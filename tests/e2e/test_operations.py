"""The operator's view of a running server: /metrics scraped and parsed after real traffic,
/health and /ready (flipping to 503 when the data folder goes), audit lines, and a real
``sandcat serve`` process stopped with SIGTERM (drain, 1001) and reloaded with SIGHUP."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from sandcat.ids import nanoid
from sandcat.server import Running
from scripts import provision
from scripts import topology as topology_mod
from tests import wire
from tests.client import Api, CodeBook, Socket, User, befriend, until
from tests.cluster import _create_database, service_env
from tests.conftest import StartServer
from tests.process import serve
from tests.services import Services

ROOT = Path(__file__).resolve().parents[2]
read_env_file = topology_mod.read_env_file
ACK = 24
ERROR_CONTENT = 9
#: Unanswered messages the streaming client keeps in flight.
WINDOW = 32


async def scrape(session: aiohttp.ClientSession, base: str) -> dict[str, float]:
    """Every sample of ``base/metrics`` as ``name{label=value,...}`` -> value."""
    async with session.get(f"{base}/metrics") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/plain"
        text = await resp.text()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def acks(local_id: str) -> Callable[[dict[str, Any]], bool]:
    """Whether a frame is the ack (or error ack) of ``local_id``."""
    return lambda m: m["msg_type"] == ACK and m["local_id"] == local_id


async def chat(api: Api, session: aiohttp.ClientSession, count: int) -> tuple[User, User]:
    """Two friends; the first sends ``count`` messages and waits for each ack."""
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    await befriend(api, alice, bob)
    sock = await Socket.connect(session, alice, platform=1)
    for i in range(count):
        await sock.send(send_id=alice.id, receiver_id=bob.id, local_id=f"m{i}", content=b"hi")
        await sock.recv_until(acks(f"m{i}"))
    await sock.close()
    return alice, bob


async def test_metrics_scraped_after_real_traffic(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    base = f"http://127.0.0.1:{server.api_port}"
    before = await scrape(session, base)
    api = Api(session, base, codes)
    alice, bob = await chat(api, session, 5)
    bob_sock = await Socket.connect(session, bob, platform=0)
    await bob_sock.ready(bob)
    await api.call(
        "POST", "/api/user/login", json={"account": "x@y.z", "password": "eA"}, expect=None
    )
    async with aiohttp.ClientSession() as own:  # the gateway's too (its own connection)
        after = await scrape(own, f"http://127.0.0.1:{server.ws_port}")

    def grew(key: str, by: float = 1) -> bool:
        return after.get(key, 0) - before.get(key, 0) >= by

    assert grew("sandcat_messages_accepted_total{}", 5)
    assert grew("sandcat_messages_stored_total{}", 5)
    assert grew("sandcat_ws_frames_in_total{}", 5)
    assert grew("sandcat_ws_frames_out_total{}", 5)
    assert grew("sandcat_ws_connections_total{}", 2)
    assert after["sandcat_connections_open{platform=desktop}"] >= 1
    assert grew("sandcat_store_batch_size_count{}", 1)
    assert grew("sandcat_store_batch_seconds_bucket{le=+Inf}", 1)
    assert grew("sandcat_argon2_queue_wait_seconds_count{}", 4)  # 2 registrations, 2 logins
    assert grew("sandcat_http_requests_total{method=POST,route=/api/user/login,status=200}", 2)
    assert grew("sandcat_http_requests_total{method=POST,route=/api/user/login,status=401}", 1)
    assert after["sandcat_send_queue_frames{}"] >= 0
    assert after["sandcat_build_info{mode=embedded,role=all,version=0.1.0}"] == 1
    assert "process_resident_memory_bytes{}" in after
    assert "sandcat_kafka_publish_seconds_count{}" not in after  # distributed only
    # a refused message is counted by its reason
    sock = await Socket.connect(session, alice)
    await sock.send(send_id=alice.id, receiver_id="nobody", local_id="x", content=b"?")
    await sock.recv_until(lambda m: m["local_id"] == "x")
    refused = await scrape(session, base)
    key = "sandcat_messages_refused_total{reason=policy}"
    assert refused[key] - before.get(key, 0) >= 1
    await sock.close()
    await bob_sock.close()


async def test_metrics_on_their_own_port(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    async with start_server(metrics__port=0) as srv:
        assert srv.metrics_port is not None
        own = f"http://127.0.0.1:{srv.metrics_port}"
        assert "sandcat_connections_open{platform=desktop}" in await scrape(session, own)
        for port in (srv.api_port, srv.ws_port):
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                assert resp.status == 404  # not on the public ports
            async with session.get(f"http://127.0.0.1:{port}/health") as resp:
                assert resp.status == 200
        async with session.get(f"{own}/ready") as resp:
            assert resp.status == 200


async def test_health_and_readiness_flip_when_the_data_folder_goes(
    server: Running, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{server.api_port}"
    async with session.get(f"{base}/health") as resp:
        health = await resp.json()
    assert resp.status == 200
    assert health["status"] == "ok" and health["version"] == "0.1.0"
    assert (health["mode"], health["role"]) == ("embedded", "all")
    assert health["uptime_seconds"] >= 0

    async def ready() -> tuple[int, Any]:
        async with session.get(f"{base}/ready") as resp:
            return resp.status, await resp.json()

    assert await ready() == (200, {"status": "ready", "checks": {"sqlite": "ok"}})
    data, away = tmp_path / "data", tmp_path / "moved-away"
    data.rename(away)  # the volume went (chmod would not stop root, which the tests run as)
    try:
        status, body = await ready()
        assert status == 503
        assert body["failing"] == ["sqlite"]
        assert "FileNotFoundError" in body["checks"]["sqlite"]
    finally:
        away.rename(data)
    assert (await ready())[0] == 200


async def test_a_draining_gateway_answers_frames_with_an_error_ack(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """What shutdown's drain step does to frames that still arrive, and to a new socket."""
    api = Api(session, f"http://127.0.0.1:{server.api_port}", codes)
    alice, bob = await chat(api, session, 1)
    sock = await Socket.connect(session, alice)
    await sock.ready(alice)
    gateway = server.apps.gateway_edge
    assert gateway is not None
    await gateway.drain()  # nothing in flight: returns at once
    await sock.send(send_id=alice.id, receiver_id=bob.id, local_id="late", content=b"x")
    answer = await sock.recv_until(lambda m: m["local_id"] == "late")
    assert answer["content_type"] == ERROR_CONTENT
    assert bytes(answer["content"]).startswith(b"server shutting down")
    late = await Socket.connect(session, bob)
    assert await late.expect_close() == 1001
    metrics = await scrape(session, f"http://127.0.0.1:{server.api_port}")
    assert metrics["sandcat_messages_refused_total{reason=shutting_down}"] >= 1
    await sock.close()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [(r.getMessage(), getattr(r, "fields", {})) for r in self.records]


async def test_audit_lines(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    lines = _Lines()
    audit = logging.getLogger("sandcat.audit")
    audit.addHandler(lines)
    audit.setLevel(logging.INFO)
    try:
        api = Api(session, f"http://127.0.0.1:{server.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        carol = await api.new_user("carol", "carol@example.com")
        wrong = "d3JvbmctcGFzcw"  # base64 of the wrong password
        await api.call(
            "POST",
            "/api/user/login",
            json={"account": alice.email, "password": wrong},
            expect=None,
        )
        fs_id = await befriend(api, alice, bob)
        await befriend(api, alice, carol)
        _, denied = await api.call(
            "POST",
            "/api/friend",
            token=bob.token,
            json={"user_id": bob.id, "friend_id": carol.id, "source": "search"},
        )
        await api.call(
            "PUT", "/api/friend/deny", token=carol.token, json={"fs_id": denied["fs_id"]}
        )
        _, invitation = await api.call(
            "POST",
            f"/api/group/{alice.id}",
            token=alice.token,
            json={
                "owner": alice.id,
                "group_name": "g",
                "avatar": "a.png",
                "members_id": [bob.id],
            },
        )
        group_id = invitation["info"]["id"]
        await api.call(
            "PUT",
            "/api/group/invite",
            token=alice.token,
            json={"user_id": alice.id, "group_id": group_id, "members": [carol.id]},
        )
        await api.call(
            "DELETE",
            "/api/group/member",
            token=alice.token,
            json={"user_id": alice.id, "group_id": group_id, "mem_id": [carol.id]},
        )
        await api.call(
            "DELETE",
            "/api/group",
            token=bob.token,
            json={"user_id": bob.id, "group_id": group_id, "is_dismiss": False},
        )
        await api.call(
            "DELETE",
            "/api/group",
            token=alice.token,
            json={"user_id": alice.id, "group_id": group_id, "is_dismiss": True},
        )
        await api.call(
            "DELETE",
            "/api/friend",
            token=alice.token,
            json={"user_id": alice.id, "friend_id": bob.id, "fs_id": fs_id},
        )
        await api.call("POST", "/api/user/mail/send", json={"email": alice.email})
        await api.call(
            "PUT",
            "/api/user/pwd",
            json={
                "user_id": alice.id,
                "email": alice.email,
                "pwd": "bmV3LXBhc3M",
                "code": await codes.wait(alice.email),
            },
        )
        await api.call("DELETE", f"/api/user/logout/{bob.id}", token=bob.token)
    finally:
        audit.removeHandler(lines)
    events = lines.events()
    seen = {(event, f["actor"], f["target"]) for event, f in events}
    assert ("login_failed", "-", alice.email) in seen
    assert ("login", alice.id, alice.id) in seen
    assert ("friend_apply", alice.id, bob.id) in seen
    assert ("friend_agree", bob.id, alice.id) in seen
    assert ("friend_deny", carol.id, denied["fs_id"]) in seen
    assert ("friend_delete", alice.id, bob.id) in seen
    assert ("group_create", alice.id, group_id) in seen
    assert ("group_invite", alice.id, group_id) in seen
    assert ("group_remove", alice.id, group_id) in seen
    assert ("group_leave", bob.id, group_id) in seen
    assert ("group_dismiss", alice.id, group_id) in seen
    assert ("password_changed", alice.id, alice.id) in seen
    assert ("logout", bob.id, bob.id) in seen
    failed = next(f for event, f in events if event == "login_failed")
    assert failed["reason"] == "AccountOrPassword" and failed["ip"] == "127.0.0.1"
    assert all(f["ip"] == "127.0.0.1" for _, f in events)
    text = repr(events)
    assert wrong not in text and "wrong-pass" not in text and "new-pass" not in text
    assert alice.password not in text


# --- a real process and real signals ------------------------------------------------------


async def test_sigterm_drains_acks_and_closes_with_1001(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Frames stream while SIGTERM lands: each gets an ack or an error ack, none is lost,
    every socket gets 1001, the process exits 0 within ``server.shutdown_seconds``."""
    unlimited = {
        "SANDCAT__LIMITS__MESSAGES_PER_SECOND": "100000",
        "SANDCAT__LIMITS__MESSAGES_BURST": "100000",
    }
    async with serve(tmp_path, ROOT / "config.yml", unlimited) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", srv.book)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        sender = await Socket.connect(session, alice)
        idle = await Socket.connect(session, bob)
        answers: dict[str, bool] = {}  # local id -> stored (False: an error ack)
        sent: list[str] = []
        closed: list[int | None] = []

        answered = asyncio.Event()

        async def stream() -> None:
            """Keep up to ``WINDOW`` messages unanswered, as a client waiting for acks does."""
            for i in range(100_000):
                while len(sent) - len(answers) >= WINDOW:
                    answered.clear()
                    await answered.wait()
                local_id = f"s{i}"
                try:
                    await sender.send(
                        send_id=alice.id, receiver_id=bob.id, local_id=local_id, content=b"x"
                    )
                except ConnectionError:
                    return
                sent.append(local_id)

        async def read() -> None:
            while True:
                frame = await sender.ws.receive()
                if frame.type == aiohttp.WSMsgType.BINARY:
                    msg = wire.decode(frame.data)
                    if msg["msg_type"] == ACK:
                        answers[msg["local_id"]] = msg["content_type"] != ERROR_CONTENT
                        answered.set()
                elif frame.type == aiohttp.WSMsgType.CLOSE:
                    closed.append(int(frame.data))
                    return
                else:
                    closed.append(sender.ws.close_code)
                    return

        reader = asyncio.create_task(read())
        writer = asyncio.create_task(stream())
        await until(lambda: len(answers) >= 200, 20, "the first acks")
        idle_closed = asyncio.create_task(idle.expect_close(10))  # a client always reads
        loop = asyncio.get_running_loop()
        signalled = loop.time()
        srv.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(srv.proc.wait(), 12)
        took = loop.time() - signalled
        await asyncio.wait_for(reader, 5)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        assert code == 0, "".join(srv.lines[-20:])
        assert closed == [1001], "".join(srv.lines[-20:])
        assert took < 8.0  # server.shutdown_seconds in config.yml
        assert await idle_closed == 1001
        stored = [local_id for local_id, ok in answers.items() if ok]
        assert stored, "acks before the signal"
        # every frame the server read before closing was answered, in order, none twice
        assert list(answers) == sent[: len(answers)]
        assert srv.saw("server_stopping") and srv.saw("connections_closed")
        assert srv.saw("server_stopped")
    # every acked message is in the store: a restart on the same folder serves them
    async with serve(tmp_path, ROOT / "config.yml", unlimited) as again:
        api = Api(session, f"http://127.0.0.1:{again.api_port}", again.book)
        await api.login(bob)
        _, seqs = await api.call("GET", f"/api/message/seq/{bob.id}", token=bob.token)
        assert seqs["seq"] == len(stored)
        again.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(again.proc.wait(), 10) == 0


async def test_sighup_reloads_log_level_and_limits(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    config = tmp_path / "config.yml"
    original = (ROOT / "config.yml").read_text()
    config.write_text(original)
    async with serve(tmp_path, config) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", srv.book)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        sock = await Socket.connect(session, alice)
        await sock.send(send_id=alice.id, receiver_id=bob.id, local_id="a", content=b"x" * 40)
        first = await sock.recv_until(lambda m: m["local_id"] == "a")
        assert first["content_type"] != ERROR_CONTENT
        changed = (
            original.replace("text_bytes: 16384", "text_bytes: 32")
            .replace("level: info", "level: warn")
            .replace("access_ttl_seconds: 14400", "access_ttl_seconds: 7200")
        )
        assert changed.count("text_bytes: 32") == 1 and "level: warn" in changed
        config.write_text(changed)
        srv.proc.send_signal(signal.SIGHUP)
        await until(lambda: srv.saw("config_reloaded"), 10, "the reload line")
        line = next(line for line in srv.lines if "config_reloaded" in line)
        assert "limits.text_bytes: 16384 -> 32" in line and "log.level: info -> warn" in line
        assert "restart_needed=server.access_ttl_seconds" in line
        await sock.send(send_id=alice.id, receiver_id=bob.id, local_id="b", content=b"x" * 40)
        second = await sock.recv_until(lambda m: m["local_id"] == "b")
        assert second["content_type"] == ERROR_CONTENT
        assert b"larger than 32 bytes" in bytes(second["content"])
        # at warn, an info line (the audit login) is dropped, a warning (the code) is not
        seen = len(srv.lines)
        await api.login(bob)
        await api.call("POST", "/api/user/mail/send", json={"email": "carol@example.com"})
        await srv.book.wait("carol@example.com")
        assert not any("sandcat.audit login" in line for line in srv.lines[seen:])
        config.write_text("limits: {text_bytes: nope}\n")
        srv.proc.send_signal(signal.SIGHUP)
        await until(lambda: srv.saw("reload_failed"), 10, "the failed reload line")
        await sock.send(send_id=alice.id, receiver_id=bob.id, local_id="c", content=b"x" * 40)
        third = await sock.recv_until(lambda m: m["local_id"] == "c")
        assert third["content_type"] == ERROR_CONTENT  # the running limits are kept
        await sock.close()
        srv.proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(srv.proc.wait(), 10) == 0


async def test_distributed_readiness_names_the_stopped_backend(
    real_services: Services, tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """A distributed process (role all) on the shared services but a Redis of its own:
    ready, then 503 naming redis once that Redis stops; /metrics has the Kafka latency, and
    then the login checks its rate limiter answered in this process alone."""
    run_dir = tmp_path / "redis-run"
    provision.start_services(["redis"], str(run_dir))
    try:
        own_redis = read_env_file(run_dir / "services.env")["SANDCAT_TEST_REDIS_URL"]
        env = service_env(real_services, {"SANDCAT_TEST_REDIS_URL": own_redis})
        run = nanoid(6).lower().replace("-", "x").replace("_", "y")
        database = f"sandcat_ready_{run}"
        await _create_database(real_services.pg_dsn, database)
        env.update(
            {
                "SANDCAT__DB__POSTGRES__DATABASE": database,
                "SANDCAT__DB__MONGODB__DATABASE": database,
                "SANDCAT__KAFKA__TOPIC": f"chat-{run}",
                "SANDCAT__KAFKA__GROUP": f"group-{run}",
                "SANDCAT__KAFKA__PARTITIONS": "2",
                "SANDCAT__OSS__BUCKET": f"files-{run}",
                "SANDCAT__OSS__AVATAR_BUCKET": f"avatars-{run}",
                "SANDCAT__SERVER__JWT_SECRET": "ready-test-secret-ready-test-secret!!",
            }
        )
        migrate = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sandcat", "migrate", env={**os.environ, **env}
        )
        assert await migrate.wait() == 0
        async with serve(tmp_path, ROOT / "config.yml", env) as srv:
            base = f"http://127.0.0.1:{srv.api_port}"

            async def ready() -> tuple[int, Any]:
                async with session.get(f"{base}/ready") as resp:
                    return resp.status, await resp.json()

            status, body = await ready()
            assert status == 200, body
            assert body["checks"] == dict.fromkeys(
                ("postgres", "redis", "kafka", "mongodb", "s3"), "ok"
            )
            api = Api(session, base, srv.book)
            alice = await api.new_user("alice", "alice@example.com")
            bob = await api.new_user("bob", "bob@example.com")
            await befriend(api, alice, bob)  # two notifications through Kafka
            metrics = await scrape(session, base)
            assert metrics["sandcat_kafka_publish_seconds_count{}"] >= 2
            assert metrics["sandcat_build_info{mode=distributed,role=all,version=0.1.0}"] == 1
            assert not [k for k in metrics if k.startswith("sandcat_ratelimit_fallback")]

            provision.stop_services(str(run_dir))
            status, body = await ready()
            assert status == 503
            assert body["failing"] == ["redis"], body
            assert body["checks"]["postgres"] == "ok"
            # A login still gets its answer, its three budgets counted here alone.
            wrong = {"account": alice.email, "password": "d3Jvbmc"}
            await api.call("POST", "/api/user/login", json=wrong, expect=401)
            metrics = await scrape(session, base)
            fallbacks = {
                k: v for k, v in metrics.items() if k.startswith("sandcat_ratelimit_fallback")
            }
            assert fallbacks == {
                f"sandcat_ratelimit_fallback_checks_total{{rule={rule}}}": 1
                for rule in ("login_failures_account", "login_failures_account_ip", "login_ip")
            }
            srv.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(srv.proc.wait(), 10) == 0
    finally:
        provision.stop_services(str(run_dir))
