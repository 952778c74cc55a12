"""``create_app(settings)``: the Starlette app, and one lifespan that owns every long-lived resource."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial

import httpx
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import BasePushNotificationSender
from a2a.types.a2a_pb2 import AgentCard
from a2a.utils.push_url_validator import validate_push_notification_url
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.bindings.a2a_grpc import grpc_address, grpc_interface, start_grpc_server
from gateway.bindings.a2a_http import UNKNOWN_AGENT_ROUTES, agent_routes
from gateway.cards import CardDocument, CardSigner, build_card
from gateway.executor import TaskContextBuilder
from gateway.keys import KeyRing
from gateway.registry import Registry
from gateway.runtimes import build_executor
from gateway.settings import Settings
from gateway.signing import JWKS_PATH, jwks_url, sign_card_dict
from gateway.spec import AgentSpec
from gateway.store import SqlPushConfigStore, SqlTaskStore, fail_interrupted, open_database
from gateway.store.database import DeferredDatabase

logger = logging.getLogger(__name__)

API_CATALOG_PATH = "/.well-known/api-catalog"
SWEEP_REASON = "The gateway restarted while this task was running; it did not finish. Send the request again."


@dataclass
class HostedAgent:
    """One agent as served: its spec, card and request handler."""

    spec: AgentSpec
    card: CardDocument
    handler: DefaultRequestHandler


@dataclass
class Gateway:
    """The running gateway's parts, shared by the bindings."""

    settings: Settings
    registry: Registry
    db: DeferredDatabase = field(default_factory=DeferredDatabase)
    agents: dict[str, HostedAgent] = field(default_factory=dict)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))
    keyring: KeyRing | None = None
    started: float = field(default_factory=time.time)
    ready: bool = False

    def render(self, card: AgentCard) -> CardDocument:
        """The card as served: signed with every active key when signing is on."""
        signer: CardSigner | None = None
        if self.keyring is not None:
            signer = partial(sign_card_dict, keyring=self.keyring, jku=jwks_url(self.settings.base_url))
        return CardDocument.render(card, self.started, signer)


def load_keyring(settings: Settings) -> KeyRing | None:
    """The card-signing keys: given in settings, or generated on first run into the data dir."""
    if not settings.sign_cards:
        return None
    return KeyRing.from_sources(
        key_texts=[settings.signing_keys] if settings.signing_keys else [],
        key_files=settings.signing_key_files,
        data_dir=settings.data_dir,
        alg=settings.signing_alg,
    )


async def _push_url_allowed(url: str) -> bool:
    return await validate_push_notification_url(url)


def _host(gateway: Gateway, spec: AgentSpec) -> HostedAgent:
    settings = gateway.settings
    card = gateway.render(build_card(spec, settings.base_url))
    push_store = SqlPushConfigStore(gateway.db)
    task_store = SqlTaskStore(gateway.db, spec.name)
    handler = DefaultRequestHandler(
        agent_executor=build_executor(spec),
        task_store=task_store,
        request_context_builder=TaskContextBuilder(task_store),
        agent_card=card.card,
        push_config_store=push_store,
        push_sender=BasePushNotificationSender(gateway.http, push_store),
        push_url_validator=None if settings.allow_private_push_urls else _push_url_allowed,
        interrupted_task_timeout=settings.interrupted_task_timeout,
    )
    return HostedAgent(spec=spec, card=card, handler=handler)


def _root_routes(gateway: Gateway) -> list[BaseRoute]:
    async def list_agents(request: Request) -> Response:
        return JSONResponse([a.card.body for a in gateway.agents.values()])

    async def api_catalog(request: Request) -> Response:
        base = gateway.settings.base_url
        items = [
            {"href": f"{base}/agents/{name}/.well-known/agent-card.json", "type": "application/json", "title": name}
            for name in gateway.agents
        ]
        linkset = {"linkset": [{"anchor": f"{base}{API_CATALOG_PATH}", "item": items}]}
        return JSONResponse(linkset, media_type="application/linkset+json")

    async def jwks(request: Request) -> Response:
        keys = gateway.keyring.jwks() if gateway.keyring is not None else {"keys": []}
        return JSONResponse(
            keys, media_type="application/jwk-set+json", headers={"Cache-Control": "public, max-age=300"}
        )

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not gateway.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            await gateway.db.fetch_one("SELECT 1")
        except Exception as exc:  # the edge: any database failure means not ready
            return JSONResponse({"status": "database unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "agents": len(gateway.agents)})

    return [
        Route("/agents", list_agents, methods=["GET"]),
        Route(API_CATALOG_PATH, api_catalog, methods=["GET", "HEAD"]),
        Route(JWKS_PATH, jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


def create_app(settings: Settings, registry: Registry | None = None) -> Starlette:
    """The gateway as an ASGI app; resources open in its lifespan."""
    gateway = Gateway(
        settings=settings, registry=registry or Registry.load(settings.agents), keyring=load_keyring(settings)
    )
    routes = _root_routes(gateway)
    for spec in gateway.registry:
        hosted = _host(gateway, spec)
        gateway.agents[spec.name] = hosted
        routes += agent_routes(spec.name, hosted.handler, lambda h=hosted: h.card, settings.max_body_bytes)
    routes += UNKNOWN_AGENT_ROUTES

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.db.attach(await open_database(settings.store_url))
        swept = await fail_interrupted(gateway.db, SWEEP_REASON)
        if swept:
            logger.warning("ended %d task(s) left running by an earlier stop: %s", len(swept), ", ".join(swept))
        # gRPC: one server for every agent; the cards list it once its port is bound.
        grpc_server = await start_grpc_server(
            {name: hosted.handler for name, hosted in gateway.agents.items()},
            host=settings.host,
            port=settings.grpc_port,
            default_agent=settings.grpc_default_agent,
        )
        grpc_at = settings.grpc_public_url or grpc_address(settings.base_url, grpc_server.port)
        for hosted in gateway.agents.values():
            interface = grpc_interface(grpc_at, hosted.spec.name)
            hosted.card = gateway.render(build_card(hosted.spec, settings.base_url, (interface,)))
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            await grpc_server.stop()
            for hosted in gateway.agents.values():
                await hosted.handler.aclose()
            await gateway.http.aclose()
            await gateway.db.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.gateway = gateway
    return app
