"""The distributed topology end to end: api + two gateways + msg-server as real processes
on real PostgreSQL, Redis, Kafka, FerretDB (MongoDB wire) and S3.

Users sit on different gateways; they register with codes from the api's log, befriend,
chat, group-chat and pull offline messages. Two failure basics: the msg-server dies
between storing a batch and committing its offsets, and a gateway dies and comes back.
"""

from __future__ import annotations

import asyncio
import importlib.util
import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.client import Api, CodeBook, Socket, User, befriend, pull
from tests.services import Services

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"sandcat_{name}", ROOT / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


topology_mod = _load("topology")


class LogCodes(CodeBook):
    """Verification codes read from the api process's log file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def wait(self, email: str, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.path.read_text(errors="replace").splitlines():
                    self.feed(line)
                if email in self.codes:
                    return self.codes.pop(email)
                await asyncio.sleep(0.05)


async def _create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


class Cluster:
    def __init__(self, topology: Any, log: Path) -> None:
        self.topology = topology
        self.log = log

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.topology.api_port}"


@pytest.fixture(scope="module")
def cluster(real_services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    run = secrets.token_hex(4)
    env = topology_mod.service_overrides(
        {
            "SANDCAT_TEST_PG_DSN": real_services.pg_dsn,
            "SANDCAT_TEST_REDIS_URL": real_services.redis_url,
            "SANDCAT_TEST_KAFKA": real_services.kafka,
            "SANDCAT_TEST_MONGO_URL": real_services.mongo_url,
            "SANDCAT_TEST_S3_ENDPOINT": real_services.s3_endpoint,
            "SANDCAT_TEST_S3_ACCESS_KEY": real_services.s3_access_key,
            "SANDCAT_TEST_S3_SECRET_KEY": real_services.s3_secret_key,
            "SANDCAT_TEST_S3_REGION": real_services.s3_region,
        }
    )
    database = f"sandcat_e2e_{run}"
    asyncio.run(_create_database(real_services.pg_dsn, database))
    env.update(
        {
            "SANDCAT__DB__POSTGRES__DATABASE": database,
            "SANDCAT__DB__MONGODB__DATABASE": database,
            "SANDCAT__DB__MONGODB__USE_SHARDING": "true",
            "SANDCAT__KAFKA__TOPIC": f"chat-{run}",
            "SANDCAT__KAFKA__GROUP": f"group-{run}",
            "SANDCAT__KAFKA__PARTITIONS": "4",
            "SANDCAT__REDIS__DB": "3",
            "SANDCAT__OSS__BUCKET": f"files-{run}",
            "SANDCAT__OSS__AVATAR_BUCKET": f"avatars-{run}",
            "SANDCAT__SERVER__JWT_SECRET": secrets.token_urlsafe(40),
            "SANDCAT__AUTH__ARGON2_TIME_COST": "1",
            "SANDCAT__AUTH__ARGON2_MEMORY_COST": "1024",
            "SANDCAT__AUTH__ARGON2_PARALLELISM": "1",
            "SANDCAT__LIMITS__LOGIN_PER_MINUTE_PER_IP": "100000",
            "SANDCAT__LIMITS__CODE_SENDS_PER_MINUTE_PER_IP": "100000",
            "SANDCAT__LIMITS__MESSAGES_PER_SECOND": "100000",
            "SANDCAT__LIMITS__MESSAGES_BURST": "100000",
        }
    )
    log = tmp_path_factory.mktemp("cluster") / "cluster.log"
    with log.open("ab") as sink:
        topology = topology_mod.Topology(
            base_env=env,
            api_port=topology_mod.free_port(),
            ws_ports=[topology_mod.free_port(), topology_mod.free_port()],
            stderr=sink,
        )
        topology.migrate()
        try:
            topology.start()
            yield Cluster(topology, log)
        finally:
            topology.stop()
    # Flush Redis DB 3 so a later topology does not see this one's gateways.
    import redis as redis_sync

    client = redis_sync.Redis.from_url(real_services.redis_url, db=3)
    client.flushdb()
    client.close()


@pytest.fixture
async def dapi(cluster: Cluster, session: aiohttp.ClientSession) -> Api:
    return Api(session, cluster.api_base, LogCodes(cluster.log))


async def _users_on_two_gateways(api: Api, tag: str) -> tuple[User, User]:
    a = await api.new_user(f"a{tag}", f"a{tag}@example.com")
    b = await api.new_user(f"b{tag}", f"b{tag}@example.com")
    if a.ws_addr == b.ws_addr:  # login round-robins over the live gateways
        await api.login(b)
    assert a.ws_addr != b.ws_addr
    return a, b


async def test_two_gateways_chat_friends_groups_and_sync(
    dapi: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    await a.send(receiver_id=bob.id, local_id="d1", content=b"across gateways")
    ack = await a.recv_until(lambda m: m["msg_type"] == 24, timeout=15)
    assert ack["content_type"] != 9 and ack["send_seq"] == 1
    got = await b.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
    assert got["content"] == b"across gateways" and got["seq"] == 2  # 1 = the friend request

    await b.send(receiver_id=alice.id, local_id="d2", content=b"and back")
    back = await a.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
    assert back["send_id"] == bob.id and back["content"] == b"and back"

    # Idempotent resend through the distributed pipeline.
    await a.send(receiver_id=bob.id, local_id="d1", content=b"across gateways")
    again = await a.recv_until(lambda m: m["msg_type"] == 24, timeout=15)
    assert (again["server_id"], again["send_seq"]) == (ack["server_id"], ack["send_seq"])

    # A group of three across both gateways.
    carol = await dapi.new_user(
        "carol" + secrets.token_hex(2), f"c{secrets.token_hex(3)}@example.com"
    )
    _, invitation = await dapi.call(
        "POST",
        f"/api/group/{alice.id}",
        token=alice.token,
        json={
            "id": "",
            "owner": alice.id,
            "avatar": "avatar1.png",
            "group_name": "trio",
            "members_id": [bob.id, carol.id],
        },
    )
    gid = invitation["info"]["id"]
    await b.recv_until(lambda m: m["msg_type"] == 2, timeout=15)
    await a.send(receiver_id=gid, group_id=gid, local_id="g1", msg_type=1, content=b"hi all")
    group_ack = await a.recv_until(
        lambda m: m["msg_type"] == 24 and m["local_id"] == "g1", timeout=15
    )
    assert group_ack["content_type"] != 9
    to_bob = await b.recv_until(lambda m: m["msg_type"] == 1, timeout=15)
    assert to_bob["content"] == b"hi all" and to_bob["group_id"] == gid

    # Carol was offline: she pulls the invitation and the group message by seq.
    _, seqs = await dapi.call("GET", f"/api/message/seq/{carol.id}", token=carol.token)
    pulled = await pull(dapi, carol, start=0, end=seqs["seq"])
    assert [m["msg_type"] for m in pulled] == [2, 1]
    assert bytes(pulled[1]["content"]) == b"hi all"
    await a.close()
    await b.close()


async def test_msg_server_crash_between_store_and_commit(
    cluster: Cluster, dapi: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    topology = cluster.topology
    topology.kill("msg-server")
    a = await Socket.connect(session, alice)
    for i in range(20):
        await a.send(receiver_id=bob.id, local_id=f"c{i}", content=f"m{i}".encode())
    acks = [await a.recv_until(lambda m: m["msg_type"] == 24, timeout=15) for _ in range(20)]
    assert [x["send_seq"] for x in acks] == list(range(1, 21))  # acked by Kafka alone
    # Restart with a failpoint: die after storing the first batch, before committing it.
    topology.restart("msg-server", {"SANDCAT_FAILPOINT": "after_store_before_commit"}, wait=False)
    code = await asyncio.to_thread(topology.procs["msg-server"].wait, 60)
    assert code == 75  # the failpoint's exit: the batch is stored, its offsets are not
    topology.restart("msg-server")
    for _ in range(150):
        _, seqs = await dapi.call("GET", f"/api/message/seq/{bob.id}", token=bob.token)
        if seqs["seq"] >= 21:
            break
        await asyncio.sleep(0.2)
    pulled = await pull(dapi, bob, start=1, end=21)
    assert [m["seq"] for m in pulled] == list(range(2, 22))  # none lost, none twice
    assert [bytes(m["content"]) for m in pulled] == [f"m{i}".encode() for i in range(20)]
    await a.close()


async def test_gateway_restart_clients_converge(
    cluster: Cluster, dapi: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    topology = cluster.topology
    port = int(alice.ws_addr.rsplit(":", 1)[1].split("/")[0])
    name = next(
        n
        for n, (_, extra) in topology.specs.items()
        if extra.get("SANDCAT__WEBSOCKET__PORT") == str(port)
    )
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    topology.kill(name)
    await a.expect_close(timeout=10)
    for i in range(5):
        await b.send(receiver_id=alice.id, local_id=f"o{i}", content=f"while down {i}".encode())
        await b.recv_until(lambda m: m["msg_type"] == 24, timeout=15)
    topology.restart(name)
    a = await Socket.connect(session, alice)  # the client reconnects to the same ws_addr
    await b.send(receiver_id=alice.id, local_id="after", content=b"back")
    # Like the web client: take pushes; a seq gap means "pull what is missing".
    received: dict[int, bytes] = {}
    async with asyncio.timeout(20):
        while b"back" not in received.values():
            frame = await a.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
            received[frame["seq"]] = frame["content"]
    top = max(received)
    gaps = [seq for seq in range(2, top) if seq not in received]
    if gaps:
        for m in await pull(dapi, alice, start=min(gaps) - 1, end=max(gaps)):
            received[m["seq"]] = bytes(m["content"])
    expected = [f"while down {i}".encode() for i in range(5)] + [b"back"]
    assert [received[seq] for seq in range(2, top + 1)] == expected
    await a.close()
    await b.close()
