"""Running the applications: one process, its role's listeners, graceful shutdown.

Shutdown (SIGTERM, SIGINT, or leaving ``running``): the listeners stop accepting, ``/ready``
answers 503, frames still arriving get an error ack, every accepted message is stored and
its ack queued, then every socket is closed with 1001; ``serve_forever`` bounds the whole
by ``server.shutdown_seconds``. SIGHUP reloads the log level and limits (``sandcat.reload``).
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiohttp import web

from sandcat.api.listener import CappedSite, ConnectionCap
from sandcat.composition import build
from sandcat.config import Config
from sandcat.errors import ConfigError
from sandcat.gateway.connections import CLOSE_GOING_AWAY
from sandcat.gateway.websocket import GatewaySite
from sandcat.log import get_logger, set_level
from sandcat.reload import apply_reload
from sandcat.wiring import Apps, ws_public_addr

log = get_logger(__name__)


@dataclass(slots=True)
class Running:
    apps: Apps
    api_port: int | None
    ws_port: int | None
    #: The ``metrics.port`` listener's port (``/metrics``, ``/health``, ``/ready``), if any.
    metrics_port: int | None = None


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Running]:
    """Start the listeners of ``config``'s role; ports of 0 pick free ones."""
    async with build(config) as apps:
        runners: list[web.AppRunner] = []
        sites: list[web.TCPSite] = []
        api_port = ws_port = metrics_port = None
        try:
            if apps.api is not None:
                runner = web.AppRunner(apps.api, access_log=None)
                await runner.setup()
                runners.append(runner)
                cap = ConnectionCap(
                    per_ip=config.limits.http_connections_per_ip,
                    total=config.limits.http_connections,
                )
                site: web.TCPSite = CappedSite(runner, cap, config.server.host, config.server.port)
                await site.start()
                sites.append(site)
                api_port = runner.addresses[0][1]
            if apps.gateway is not None:
                runner = web.AppRunner(apps.gateway, access_log=None, shutdown_timeout=1.0)
                await runner.setup()
                runners.append(runner)
                assert apps.gateway_edge is not None
                # WebSocket upgrades go to the gateway's own protocol, the rest to aiohttp.
                gateway_site = GatewaySite(
                    runner,
                    apps.gateway_edge.protocol,
                    config.websocket.host,
                    config.websocket.port,
                    backlog=4096,
                )
                await gateway_site.start()
                sites.append(gateway_site)
                ws_port = runner.addresses[0][1]
                apps.ws_address.set(ws_public_addr(config, ws_port))
                for hook in apps.on_listening:
                    await hook(ws_public_addr(config, ws_port))
            if config.metrics.port >= 0:
                own = web.Application()
                apps.observability.add_routes(own, metrics=True)
                runner = web.AppRunner(own, access_log=None)
                await runner.setup()
                runners.append(runner)
                await web.TCPSite(
                    runner, config.metrics.host, config.metrics.port, reuse_address=True
                ).start()
                metrics_port = runner.addresses[0][1]
            elif apps.api is None and apps.gateway is None:
                log.warning("no_http_listener", hint="set metrics.port for /metrics and /ready")
            log.info(
                "server_started",
                role=config.role,
                mode=config.mode,
                api=f"http://{config.server.host}:{api_port}" if api_port else "-",
                ws=ws_public_addr(config, ws_port) if ws_port else "-",
                metrics=f"http://{config.metrics.host}:{metrics_port}" if metrics_port else "-",
            )
            yield Running(apps, api_port, ws_port, metrics_port)
        finally:
            await _drain(apps, sites, config.server.shutdown_seconds / 2)
            for runner in reversed(runners):
                await runner.cleanup()


async def _drain(apps: Apps, sites: list[web.TCPSite], budget: float) -> None:
    """Stop accepting, let accepted messages land and their acks leave (at most ``budget``
    seconds), then close every socket with 1001 (a web client reconnects on it)."""
    apps.observability.draining = True
    for site in sites:  # no new connections; the open ones stay
        await site.stop()
    started = time.monotonic()
    if apps.gateway_edge is not None:
        try:
            async with asyncio.timeout(budget):
                await apps.gateway_edge.drain()
        except TimeoutError:
            log.warning("drain_timed_out", seconds=budget)
    await asyncio.sleep(0)  # the flusher's turn: the acks queued by the drain are written
    connections = len(apps.registry.all_connections())
    await apps.registry.close_all(CLOSE_GOING_AWAY, "server shutting down")
    log.info(
        "connections_closed",
        connections=connections,
        drain_seconds=round(time.monotonic() - started, 3),
    )


#: Allocations between young collections (CPython's default is 700), and how many young
#: collections make a middle one, and middle ones an old one.
GC_THRESHOLDS = (10_000, 50, 100)


def tune_gc() -> None:
    """Once the server is up: everything built at start-up (modules, config, services) goes
    to the permanent generation, so no collection scans it again, and young collections
    run less often. Under load this took the collector's pauses from 0.47 s of 10 s (one of
    71 ms) to 0.03 s (none over 15 ms); messages are freed by reference counting anyway."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class Reloader:
    """SIGHUP: read the config again (``load``) and apply what can change while running."""

    def __init__(self, config: Config, load: Callable[[], Config] | None) -> None:
        self.config = config
        self._load = load

    def __call__(self) -> None:
        if self._load is None:
            log.warning("sighup_ignored", hint="no config source to reload from")
            return
        try:
            fresh = self._load()
        except ConfigError as exc:
            log.error("reload_failed", details=str(exc), hint="the running config is kept")
            return
        result = apply_reload(self.config, fresh)
        self.config = result.config
        # A warning, so the line shows whatever level was just set (``load`` may set it).
        log.warning(
            "config_reloaded",
            applied="; ".join(result.applied) or "-",
            restart_needed=",".join(result.restart_needed) or "-",
        )
        if result.log_level is not None:
            set_level(result.log_level)


async def serve_forever(config: Config, reload: Callable[[], Config] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within ``server.shutdown_seconds``;
    ``reload`` re-reads the configuration on SIGHUP."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, Reloader(config, reload))
    serving = running(config)
    await serving.__aenter__()
    tune_gc()
    await stop.wait()
    deadline = config.server.shutdown_seconds
    log.info("server_stopping", within_seconds=deadline)
    try:
        async with asyncio.timeout(deadline):
            await serving.__aexit__(None, None, None)
    except TimeoutError:
        log.error("shutdown_timed_out", seconds=deadline, hint="what was left is abandoned")
    else:
        log.info("server_stopped")
