"""The HTTP application: every route group over the services, the web page, the probes."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.bots import BotRoutes
from sandcat.api.common import BODY_TIMEOUT, add_routes, error_middleware
from sandcat.api.conversations import ConversationRoutes
from sandcat.api.devices import DeviceRoutes
from sandcat.api.files import FileRoutes
from sandcat.api.friends import FriendRoutes
from sandcat.api.groups import GroupRoutes
from sandcat.api.messages import MessageRoutes
from sandcat.api.oauth import OAuthRoutes
from sandcat.api.openapi import OpenApiRoutes
from sandcat.api.users import UserRoutes
from sandcat.config import Config
from sandcat.observability import http_metrics_middleware
from sandcat.web import WebPage
from sandcat.wiring import Services


def create_app(services: Services, config: Config) -> web.Application:
    limits = config.limits
    app = web.Application(
        middlewares=[http_metrics_middleware, error_middleware],
        client_max_size=limits.upload_bytes + 1024 * 1024,
        # aiohttp closes a connection without a complete request head (or idle between
        # requests) after the header timeout, and one whose body was not read to its end
        # after reading what still comes for at most 10 s.
        handler_args={
            "keepalive_timeout": limits.http_header_timeout,
            "lingering_time": min(10.0, limits.http_body_timeout),
        },
    )
    app[BODY_TIMEOUT] = limits.http_body_timeout
    users = UserRoutes(
        users=services.users, config=config, ws_addr=services.ws_address, friends=services.friends
    )
    body = limits.http_body_bytes
    for routes in (
        # Before the user routes: `GET /user/{id}` would take `/user/devices`.
        DeviceRoutes(
            users=services.users, devices=services.devices, friends=services.friends, auth=users
        ).routes(),
        users.routes(),
        MessageRoutes(sync=services.sync, auth=users, body_limit=body).routes(),
        FileRoutes(files=services.files, auth=users, upload_limit=limits.upload_bytes).routes(),
        FriendRoutes(friends=services.friends, auth=users, body_limit=body).routes(),
        GroupRoutes(groups=services.groups, auth=users, body_limit=body).routes(),
        ConversationRoutes(
            conversations=services.conversations, auth=users, body_limit=body
        ).routes(),
        BotRoutes(
            bots=services.bots,
            friends=services.friends,
            auth=users,
            body_limit=body,
            text_bytes=limits.text_bytes,
        ).routes(),
        OAuthRoutes(
            oauth=services.oauth,
            ws_addr=services.ws_address,
            trust_forwarded=config.server.trust_forwarded_for,
            ttl=config.server.oauth2.github.state_ttl_seconds,
        ).routes(),
        OpenApiRoutes().routes(),
    ):
        add_routes(app, routes)
    services.observability.add_routes(app, metrics=config.metrics.port < 0)
    WebPage(codes_in_log=not config.mail.server).add_to(app)
    return app
