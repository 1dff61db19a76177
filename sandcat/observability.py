"""``/health``, ``/ready`` and ``/metrics`` of every role (``docs/operations.md`` lists the
series and what each readiness check does).

The collector reads ``sandcat.metrics.COUNTS`` and the connection registry only when
``/metrics`` is scraped, so counting costs the hot path a plain integer increment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector, CollectorRegistry

from sandcat.api.common import Handler, json_response
from sandcat.gateway.connections import Registry
from sandcat.log import get_logger
from sandcat.metrics import COUNTS, Counts, Histogram

log = get_logger(__name__)

#: How long one readiness check may take before it counts as failing.
READY_CHECK_SECONDS = 2.0

Check = Callable[[], Awaitable[object]]


def _histogram(name: str, doc: str, hist: Histogram) -> HistogramMetricFamily:
    return HistogramMetricFamily(
        name, doc, buckets=[(le, float(n)) for le, n in hist.cumulative()], sum_value=hist.sum
    )


class SandcatCollector(Collector):
    """Turns the plain counters and the registry's connections into metric families."""

    def __init__(self, *, counts: Counts, registry: Registry, info: dict[str, str]) -> None:
        self._counts = counts
        self._registry = registry
        self._info = info

    def collect(self) -> Iterator[Metric]:
        c = self._counts
        yield InfoMetricFamily(
            "sandcat_build", "Version, mode and role of this process", self._info
        )
        by_platform = [0, 0]
        queued = biggest = buffered = 0
        for conn in self._registry.all_connections():
            by_platform[conn.platform] += 1
            frames, size = conn.queued()
            queued += frames
            biggest = max(biggest, frames)
            buffered += size
        open_ = GaugeMetricFamily(
            "sandcat_connections_open", "WebSocket connections open", labels=["platform"]
        )
        open_.add_metric(["desktop"], by_platform[0])
        open_.add_metric(["mobile"], by_platform[1])
        yield open_
        yield CounterMetricFamily(
            "sandcat_ws_connections", "WebSocket connections accepted", value=c.ws_connections
        )
        yield CounterMetricFamily(
            "sandcat_ws_frames_in", "WebSocket frames received from clients", value=c.frames_in
        )
        yield CounterMetricFamily(
            "sandcat_ws_frames_out", "WebSocket frames written to clients", value=c.frames_out
        )
        yield GaugeMetricFamily(
            "sandcat_send_queue_frames",
            "Frames queued or unsent in socket buffers, summed over connections",
            value=queued,
        )
        yield GaugeMetricFamily(
            "sandcat_send_queue_max_frames",
            "Frames queued on the most backed-up connection",
            value=biggest,
        )
        yield GaugeMetricFamily(
            "sandcat_send_buffer_bytes", "Bytes in the sockets' write buffers", value=buffered
        )
        yield CounterMetricFamily(
            "sandcat_slow_client_closes",
            "Connections closed with 4008 for not reading",
            value=c.slow_client_closes,
        )
        yield CounterMetricFamily(
            "sandcat_messages_accepted",
            "Client messages accepted (stored, relayed or answered)",
            value=c.messages_accepted,
        )
        refused = CounterMetricFamily(
            "sandcat_messages_refused",
            "Client messages answered with an error ack",
            labels=["reason"],
        )
        for reason, count in sorted(c.messages_refused.items()):
            refused.add_metric([reason], count)
        yield refused
        yield CounterMetricFamily(
            "sandcat_messages_stored",
            "Messages made durable by this process",
            value=c.messages_stored,
        )
        yield _histogram(
            "sandcat_store_batch_size", "Messages per stored batch", c.store_batch_size
        )
        yield _histogram(
            "sandcat_store_batch_seconds",
            "Time to store one batch, retries included",
            c.store_batch_seconds,
        )
        yield _histogram(
            "sandcat_argon2_queue_wait_seconds",
            "Wait for an argon2 slot before hashing or verifying a password",
            c.argon2_wait,
        )
        http = CounterMetricFamily(
            "sandcat_http_requests",
            "HTTP requests answered",
            labels=["method", "route", "status"],
        )
        for (method, route, status), count in sorted(c.http_requests.items()):
            http.add_metric([method, route, str(status)], count)
        yield http
        if self._info["mode"] == "distributed":
            yield _histogram(
                "sandcat_kafka_publish_seconds",
                "From handing a record to the producer to the broker's ack",
                c.kafka_publish,
            )
            lag = GaugeMetricFamily(
                "sandcat_kafka_consumer_lag",
                "Records on the broker not yet polled, per partition",
                labels=["partition"],
            )
            for partition, behind in sorted(c.kafka_lag.items()):
                lag.add_metric([str(partition)], behind)
            yield lag
            yield CounterMetricFamily(
                "sandcat_kafka_dead_letters",
                "Records sent to the dead-letter topic",
                value=c.dead_letters,
            )
            fallbacks = CounterMetricFamily(
                "sandcat_ratelimit_fallback_checks",
                "Rate-limit checks answered by this process's own counts because Redis was down",
                labels=["rule"],
            )
            for rule, count in sorted(c.ratelimit_fallbacks.items()):
                fallbacks.add_metric([rule], count)
            yield fallbacks


@dataclass(slots=True)
class Observability:
    """The three routes, for whichever listeners the role has."""

    version: str
    mode: str
    role: str
    checks: list[tuple[str, Check]]
    metrics: CollectorRegistry
    started: float = field(default_factory=time.monotonic)
    #: Set when shutdown begins: ``/ready`` answers 503 so balancers stop sending.
    draining: bool = False

    async def health(self, _: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "status": "ok",
                "version": self.version,
                "mode": self.mode,
                "role": self.role,
                "uptime_seconds": round(time.monotonic() - self.started, 3),
            }
        )

    async def ready(self, _: web.Request) -> web.StreamResponse:
        results = await asyncio.gather(*(_run_check(check) for _, check in self.checks))
        checks = {name: result for (name, _), result in zip(self.checks, results, strict=True)}
        failing = [name for name, result in checks.items() if result != "ok"]
        if self.draining:
            failing.insert(0, "shutting_down")
        if failing:
            log.warning("not_ready", failing=",".join(failing))
            body = {"status": "unavailable", "failing": failing, "checks": checks}
            return json_response(body, status=503)
        return json_response({"status": "ready", "checks": checks})

    async def metrics_page(self, _: web.Request) -> web.StreamResponse:
        body = generate_latest(self.metrics)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def add_routes(self, app: web.Application, *, metrics: bool) -> None:
        app.router.add_get("/health", self.health)
        app.router.add_get("/ready", self.ready)
        if metrics:
            app.router.add_get("/metrics", self.metrics_page)


async def _run_check(check: Check) -> str:
    """``ok``, or the failure in a few words (the exception's type and message)."""
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            await check()
    except TimeoutError:
        return f"no answer within {READY_CHECK_SECONDS:g} s"
    except Exception as exc:  # any failure of a backend is the answer, not an error here
        return f"{type(exc).__name__}: {exc}"[:200]
    return "ok"


def metrics_registry(registry: Registry, info: dict[str, str]) -> CollectorRegistry:
    """A registry of this process's series: Sandcat's, the process's and the platform's."""
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(SandcatCollector(counts=COUNTS, registry=registry, info=info))
    ProcessCollector(registry=metrics)
    PlatformCollector(registry=metrics)
    return metrics


@web.middleware
async def http_metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts each answered request by method, route pattern (bounded) and status."""
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        key = (request.method, route, status)
        requests = COUNTS.http_requests
        requests[key] = requests.get(key, 0) + 1
