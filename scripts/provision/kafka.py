"""Kafka in KRaft mode: the Apache release (and its log4j) from Maven, one broker-controller."""

from __future__ import annotations

import base64
import shutil
import socket
import struct
import subprocess
import uuid
from pathlib import Path
from typing import Any

from .base import (
    HOST,
    START_TIMEOUT,
    InstallContext,
    Service,
    ServiceError,
    cache_dir,
    find_java,
    recv_exact,
    run,
    say,
    spawn,
    wait_until,
)

KAFKA_VERSION = "4.1.2"
KAFKA_SCALA = "2.13"
LOG4J_VERSION = "2.25.3"
KAFKA_HEAP = "-Xmx512m"
#: The broker's JIT stops at C1. Every test session and benchmark run starts a fresh broker,
#: and under load its C2 compiler thread took 15-30 % of a core for the whole measurement
#: (per-thread CPU of the JVM, docs/performance.md), on a machine where that core is what the
#: Sandcat processes need. C1 code is slower once warm (the request threads went from about
#: 11 to 17 % of a core), but the sum is lower and send->receive p99 dropped at every rate.
#: A long-running production broker finishes compiling; this is for short-lived local ones.
KAFKA_JIT = "-XX:TieredStopAtLevel=1"


_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sandcat.local</groupId>
  <artifactId>kafka-server-deps</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <!-- SLF4J 1.x binding to log4j2, so the broker logs somewhere -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_KAFKA_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _kafka_home() -> Path:
    return cache_dir() / "kafka" / f"{KAFKA_SCALA}-{KAFKA_VERSION}"


def _kafka_request(
    sock: socket.socket, api_key: int, version: int, corr: int, body: bytes
) -> bytes:
    client = b"sandcat-services"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    resp = recv_exact(sock, size)
    got = struct.unpack(">i", resp[:4])[0]
    if got != corr:
        raise ValueError(f"kafka: correlation id {got} != {corr}")
    return resp[4:]


def _kafka_metadata(port: int, timeout: float = 5.0) -> dict[str, Any]:
    """ApiVersions v0 then Metadata (v4..v8, non-flexible) over a raw socket."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        body = _kafka_request(sock, 18, 0, 1, b"")
        error, count = struct.unpack(">hi", body[:6])
        if error != 0:
            raise ValueError(f"kafka ApiVersions error {error}")
        ranges: dict[int, tuple[int, int]] = {}
        off = 6
        for _ in range(count):
            key, lo, hi = struct.unpack(">hhh", body[off : off + 6])
            ranges[key] = (lo, hi)
            off += 6
        lo, hi = ranges.get(3, (0, -1))
        version = max(lo, 4)
        if version > min(hi, 8):
            raise ValueError(f"kafka: no non-flexible Metadata version in {lo}..{hi}")
        req = struct.pack(">i", -1)  # null topics: all
        req += b"\x00"  # allow_auto_topic_creation (v4+)
        if version >= 8:
            req += b"\x00\x00"  # include cluster/topic authorized operations
        body = _kafka_request(sock, 3, version, 2, req)
        off = 4  # throttle_time_ms
        (nbrokers,) = struct.unpack(">i", body[off : off + 4])
        off += 4
        brokers = []
        for _ in range(nbrokers):
            node_id, hlen = struct.unpack(">ih", body[off : off + 6])
            off += 6
            host = body[off : off + hlen].decode()
            off += hlen
            (bport, rlen) = struct.unpack(">ih", body[off : off + 6])
            off += 6 + max(rlen, 0)
            brokers.append({"node_id": node_id, "host": host, "port": bport})
        (clen,) = struct.unpack(">h", body[off : off + 2])
        off += 2
        cluster_id = body[off : off + clen].decode() if clen >= 0 else None
        off += max(clen, 0)
        (controller,) = struct.unpack(">i", body[off : off + 4])
        return {
            "brokers": brokers,
            "cluster_id": cluster_id,
            "controller_id": controller,
            "metadata_version": version,
        }


class Kafka(Service):
    name = "kafka"

    def installed(self) -> bool:
        return (_kafka_home() / ".complete").exists()

    def install(self, ctx: InstallContext) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            ctx.apt_install(self.name, ["maven"])
            mvn = shutil.which("mvn")
            if mvn is None:
                raise ServiceError(self.name, "Maven (mvn) is not installed")
        find_java()
        home = _kafka_home()
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(
            _KAFKA_POM.format(scala=KAFKA_SCALA, kafka=KAFKA_VERSION, log4j=LOG4J_VERSION)
        )
        tmp_lib = home / "lib.tmp"
        shutil.rmtree(tmp_lib, ignore_errors=True)
        log = home / "install.log"
        say(
            f"kafka: mvn dependency:copy-dependencies (kafka_{KAFKA_SCALA} {KAFKA_VERSION}), "
            f"log {log}"
        )
        run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(home / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp_lib}",
                "-DincludeScope=runtime",
            ],
            service=self.name,
            log=log,
            timeout=900,
            what="mvn dependency:copy-dependencies",
        )
        if not (tmp_lib / f"kafka_{KAFKA_SCALA}-{KAFKA_VERSION}.jar").exists():
            raise ServiceError(
                self.name, "kafka jar missing after mvn dependency:copy-dependencies", log
            )
        shutil.rmtree(home / "lib", ignore_errors=True)
        tmp_lib.rename(home / "lib")
        (home / "log4j2.properties").write_text(_KAFKA_LOG4J2)
        (home / ".complete").write_text(KAFKA_VERSION + "\n")

    def ports_needed(self) -> tuple[str, ...]:
        return ("port", "controller_port")

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        port, cport = ports["port"], ports["controller_port"]
        home = _kafka_home()
        kdir = run_dir / "kafka"
        data = kdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = kdir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={HOST}:{cport}",
                    f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "auto.create.topics.enable=true",
                    "num.partitions=8",
                    "default.replication.factor=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.flush.interval.messages=9223372036854775807",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "",
                ]
            )
        )
        java = find_java()
        log = run_dir / "kafka.log"
        cp = f"{home / 'lib'}/*"
        log4j = f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}"
        cluster_id = ""
        while not cluster_id or cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # A restart (`stop kafka` then `start kafka` on the same run dir) keeps the log dirs.
        if not (data / "meta.properties").exists():
            say("kafka: formatting storage (kafka.tools.StorageTool format --standalone)")
            run(
                [
                    java,
                    "-Xmx256m",
                    KAFKA_JIT,
                    log4j,
                    "-cp",
                    cp,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                service=self.name,
                log=log,
                cwd=kdir,
                timeout=180,
                what="kafka StorageTool format",
            )
        argv = [
            java,
            KAFKA_HEAP,
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            KAFKA_JIT,
            "-Djava.awt.headless=true",
            log4j,
            f"-Dkafka.logs.dir={kdir}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ]
        proc = spawn(self.name, argv, run_dir, cwd=kdir)
        meta: dict[str, Any] = {}

        def ready() -> bool:
            m = _kafka_metadata(port)
            if m["brokers"] and m["controller_id"] >= 0:
                meta.update(m)
                return True
            return False

        wait_until(self.name, proc, log, START_TIMEOUT[self.name], ready)
        info: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "controller_port": cport,
            "bootstrap_servers": f"{HOST}:{port}",
            "url": f"{HOST}:{port}",
            "cluster_id": meta.get("cluster_id") or cluster_id,
            "version": KAFKA_VERSION,
            "scala_version": KAFKA_SCALA,
            "config": str(props),
        }
        return proc, info

    def probe(self, info: dict[str, Any]) -> bool:
        return bool(_kafka_metadata(int(info["port"]))["brokers"])

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        return {"SANDCAT_TEST_KAFKA": str(info["bootstrap_servers"])}
