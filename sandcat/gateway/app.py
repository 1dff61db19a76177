"""The WebSocket application: the gateway's route and the probes on its port."""

from __future__ import annotations

from aiohttp import web

from sandcat.config import Config
from sandcat.gateway.server import Gateway
from sandcat.wiring import Services

#: The gateway edge of the application (``GatewaySite`` takes its ``protocol``).
EDGE = web.AppKey("edge", Gateway)


def create_app(services: Services, config: Config) -> web.Application:
    edge = Gateway(
        users=services.users,
        messages=services.messages,
        registry=services.registry,
        config=config,
        cluster=services.cluster,
    )
    app = web.Application()
    app[EDGE] = edge
    app.add_routes(edge.routes())
    services.observability.add_routes(app, metrics=config.metrics.port < 0)
    return app
