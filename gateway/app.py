"""``create_app(settings)``: the Starlette app, and one lifespan that owns every long-lived resource."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from a2a.types.a2a_pb2 import AgentCard
from a2a.utils.constants import TransportProtocol
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from gateway.auth.grpc import GrpcAuthGuard
from gateway.auth.http import agent_guard
from gateway.auth.policy import AuthPolicy
from gateway.bindings.a2a_grpc import GrpcServer, Observe, grpc_address, grpc_interface, start_grpc_server
from gateway.bindings.a2a_http import UNKNOWN_AGENT_ROUTES, Guard, agent_routes
from gateway.bindings.mcp_server import McpBinding, create_mcp_binding
from gateway.bindings.mcp_state import shared_secret
from gateway.bindings.v03_errors import use_own_codes_for_v03
from gateway.cards.build import AGENT_CARD_PATH, CardDocument, CardSigner, build_card
from gateway.cards.keys import KeyRing
from gateway.cards.shared_keys import KEYS_CHANNEL, SharedKeys
from gateway.cards.signing import JWKS_PATH, jwks_url, sign_card_dict
from gateway.errors import StartupError, UnknownAgentError, register_with_sdk
from gateway.federation.hub import Federation, derive_gateway_id
from gateway.hosting.admission import RetryAfter, build_admission
from gateway.hosting.cache import build_cache
from gateway.hosting.cluster import AgentLog, Cluster
from gateway.hosting.executor import RuntimeExecutor, TaskContextBuilder, ValidatesRequests, limit_parts
from gateway.hosting.failover import Failover
from gateway.hosting.hosted import HostedAgent
from gateway.hosting.local_tasks import LocalRequestHandler, LocalRunner
from gateway.hosting.mcp_clients import McpClientPool
from gateway.hosting.registry import Registry
from gateway.hosting.required_fields import use_in_sdk_handlers
from gateway.hosting.runtimes import DescribesAgent, agent_info, build_executor
from gateway.hosting.work_items import WorkItems
from gateway.logs import quiet_client_mistakes
from gateway.orchestration.api import AgentInfo
from gateway.orchestration.breaker import BreakerBoard
from gateway.orchestration.resume import recover_runs, resume_run
from gateway.push import OutboxPushSender, PushDelivery, create_push_delivery, queue_stored_tasks
from gateway.settings import Settings, bundled_agents_dir
from gateway.spec import FRAMEWORKS, AgentSpec
from gateway.store import SqlPushConfigStore, SqlTaskStore, fail_interrupted, open_database
from gateway.store.database import Database, DeferredDatabase
from gateway.store.leases import LeaseBook, leased_keys
from gateway.telemetry.operating import Operating, start_tracing
from gateway.telemetry.store import MeasuredDatabase
from gateway.triggers import Triggers
from gateway.ui import ui_routes

logger = logging.getLogger(__name__)

API_CATALOG_PATH = "/.well-known/api-catalog"
LOCAL_RUNTIMES = ("python", "llm", "a2a", "mcp", "command", *FRAMEWORKS)
"""Runtime kinds whose executors run in this process, so steps and MCP calls may use ``LocalRunner``."""
SWEEP_REASON = "The gateway restarted while this task was running; it did not finish. Send the request again."
READY_PROBE_TIMEOUT_S = 2.0  # a writer that cannot commit an empty transaction by then is not ready


@dataclass
class Gateway:
    """The running gateway's parts: the bindings' ``BindingHost`` and the executors' ``Host``."""

    settings: Settings
    registry: Registry
    db: DeferredDatabase = field(default_factory=DeferredDatabase)
    agents: dict[str, HostedAgent] = field(default_factory=dict)
    http: httpx.AsyncClient = field(default_factory=lambda: httpx.AsyncClient(timeout=10.0))
    keyring: KeyRing | None = None
    federation: Federation = field(default_factory=Federation)
    auth: AuthPolicy = field(default_factory=AuthPolicy.disabled)
    breakers: BreakerBoard = field(default_factory=BreakerBoard)
    background: set[asyncio.Task[None]] = field(default_factory=set)
    mcp_clients: McpClientPool = field(default_factory=McpClientPool)
    """MCP sessions of agents that use MCP servers (``gateway.hosting.mcp_clients``)."""
    started: float = field(default_factory=time.time)
    cards_modified: float = 0.0
    """When the signing keys last changed while running (0: not since start); cards' Last-Modified."""
    ready: bool = False
    stopping: bool = False
    operating: Operating | None = None
    """Metrics, request telemetry and the audit trail (``gateway.telemetry``)."""
    mcp: McpBinding | None = None
    """The MCP binding (``gateway.bindings.mcp_server``), once built."""
    card_listeners: list[Callable[[str], None]] = field(default_factory=list)
    """Called with an agent's name after ``refresh_card`` rendered its card again (the MCP tool list follows)."""
    push: PushDelivery = field(init=False)
    """Push notifications: the outbox's delivery worker and the push-URL policy."""

    cluster: Cluster = field(init=False)
    """On PostgreSQL: live events and cancels between replicas (``gateway.hosting.cluster``)."""
    leases: LeaseBook | None = None
    """On PostgreSQL: the leases of the workflow runs running here (``gateway.store.leases``)."""

    work_items: WorkItems = field(init=False)
    """On PostgreSQL: the steps of distributed work queues, claimed by any replica (``gateway.hosting.work_items``)."""

    def __post_init__(self) -> None:
        self.push = create_push_delivery(self.settings, self.db)
        self.cluster = Cluster(self.db, lambda: self.settings.store_url)
        self.work_items = WorkItems(self.cluster, self._local_runners)

    def _local_runners(self) -> dict[str, LocalRunner]:
        runners = {name: hosted.handler.local for name, hosted in self.agents.items()}
        return {name: runner for name, runner in runners.items() if runner is not None}

    @property
    def specs(self) -> Mapping[str, AgentSpec]:
        """Every agent's spec by name: the registry's, built once per registry (a changed agent makes a new one)."""
        return self.registry.by_name

    def handler(self, name: str) -> LocalRequestHandler:
        """The request handler of hosted agent ``name``."""
        hosted = self.agents.get(name)
        if hosted is None:
            raise UnknownAgentError(f"no agent named {name!r} is hosted here")
        return hosted.handler

    def local_runner(self, name: str) -> LocalRunner | None:
        """The in-process runner of hosted agent ``name`` when its runtime can run without the SDK's handler."""
        hosted = self.agents.get(name)
        return hosted.handler.local if hosted is not None else None

    def spec(self, name: str) -> AgentSpec | None:
        """The spec of hosted agent ``name``, or None."""
        hosted = self.agents.get(name)
        return hosted.spec if hosted is not None else None

    def describe(self, name: str) -> AgentInfo:
        """What the card of hosted agent ``name`` says about it."""
        spec = self.spec(name) or self.registry.get(name)
        if spec is None:
            raise UnknownAgentError(f"no agent named {name!r} is hosted here")
        return agent_info(spec)

    def refresh_card(self, name: str) -> None:
        """Render agent ``name``'s served card again (a remote agent's origin card, or its trust, changed;
        an ``mcp`` agent's tool was listed)."""
        hosted = self.agents.get(name)
        if hosted is not None:
            before = hosted.spec
            hosted.spec = self.federation.current_spec(hosted.spec)  # an imported agent: its card's content
            card = hosted.card.card
            executor = hosted.handler.agent_executor
            if isinstance(executor, DescribesAgent):  # its spec, completed again, is the card's content
                hosted.spec = executor.describe(hosted.spec)
            if hosted.spec is not before:  # every reader of the registry (and of specs) sees the new one
                self.registry = self.registry.replaced(hosted.spec)
            if isinstance(executor, DescribesAgent):
                grpc = tuple(i for i in card.supported_interfaces if i.protocol_binding == TransportProtocol.GRPC.value)
                security = self.auth.card_security(hosted.spec, self.specs)
                card = build_card(hosted.spec, self.settings.base_url, grpc, security)
            hosted.card = self.render(card)
            for listener in self.card_listeners:
                listener(name)
        remote = self.federation.remotes.get(name)
        if remote is not None and self.operating is not None:
            self.operating.record_trust(name, remote.peer.name, remote.source.health, remote.source.problem)

    def push_counts(self) -> tuple[int, int, int]:
        """Push notifications delivered, retried and dropped since start (``/metrics``)."""
        stats = self.push.stats
        return stats.delivered, stats.retried, sum(stats.dropped.values())

    def peer_cards(self) -> list[tuple[str, str]]:
        """(peer, card health) of every remote agent (``/metrics``)."""
        return [(remote.peer.name, remote.source.health) for remote in self.federation.remotes.values()]

    def mcp_sessions(self) -> int:
        """Open MCP sessions (``/metrics``)."""
        return len(self.mcp.sessions.sessions) if self.mcp is not None else 0

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` in the background until it ends or the gateway stops."""
        task = asyncio.create_task(coro, name=name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def use_keyring(self, keyring: KeyRing) -> None:
        """Sign with ``keyring`` from now on: every served card is signed again, the JWKS is its keys."""
        self.keyring = keyring
        self.cards_modified = time.time()  # If-Modified-Since from before the change gets the new card
        for hosted in self.agents.values():
            hosted.card = self.render(hosted.card.card)

    def render(self, card: AgentCard) -> CardDocument:
        """The card as served: signed with every active key when signing is on."""
        card = self.federation.republish(card)  # a remote agent's: the origin's card at this gateway's URLs
        card = listed_interfaces(card, self.settings.card_interfaces)
        signer: CardSigner | None = None
        if self.keyring is not None:
            signer = partial(sign_card_dict, keyring=self.keyring, jku=jwks_url(self.settings.base_url))
        return CardDocument.render(card, self.cards_modified or self.started, signer)


def listed_interfaces(card: AgentCard, bindings: Sequence[str]) -> AgentCard:
    """``card`` listing only the interfaces of ``bindings``, in that order (the card_interfaces setting)."""
    order = {binding: i for i, binding in enumerate(bindings)}
    kept = sorted(
        (i for i in card.supported_interfaces if i.protocol_binding in order), key=lambda i: order[i.protocol_binding]
    )
    if list(kept) == list(card.supported_interfaces):
        return card
    listed = AgentCard()
    listed.CopyFrom(card)
    del listed.supported_interfaces[:]
    listed.supported_interfaces.extend(kept)
    return listed


def load_registry(settings: Settings, imported: tuple[AgentSpec, ...] = ()) -> Registry:
    """The agents folder, plus the agents ``imported`` from peers (and the bundled LLM agents with a model)."""
    llm_agents = settings.agents / "llm"
    model_configured = bool(settings.llm_base_url and settings.llm_model)
    if model_configured and settings.agents == bundled_agents_dir() and llm_agents.is_dir():
        return Registry.load(settings.agents, llm_agents, imported=imported)
    return Registry.load(settings.agents, imported=imported)


def load_federation(settings: Settings, keyring: KeyRing | None) -> Federation:
    """The peers, with their agents imported (blocking, bounded), and this gateway's id on hop paths."""
    kids = [key.kid for key in keyring.keys] if keyring is not None else []
    return Federation.load(settings, derive_gateway_id(settings.gateway_id, kids, settings.base_url))


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


def _host(gateway: Gateway, spec: AgentSpec) -> HostedAgent:
    settings = gateway.settings
    executor = build_executor(spec, gateway)
    if isinstance(executor, DescribesAgent):
        spec = executor.describe(spec)  # before the card is built from it
    security = gateway.auth.card_security(spec, gateway.specs)
    card = gateway.render(build_card(spec, settings.base_url, security=security))
    push_store = SqlPushConfigStore(gateway.db)
    task_store = SqlTaskStore(gateway.db, spec.name, list_page_bytes=settings.list_tasks_page_bytes)
    own_check = executor.validate_request if isinstance(executor, ValidatesRequests) else None
    validate = limit_parts(settings.max_message_parts, own_check)
    push_sender = OutboxPushSender(push_store, gateway.push.outbox, gateway.push.wake)
    local = None
    log = AgentLog(gateway.cluster, spec.name, task_store)
    if spec.runtime.kind in LOCAL_RUNTIMES:
        save = partial(push_sender.save_and_notify, task_store, also=log.start_statements)
        local = LocalRunner(spec.name, executor, task_store, save, validate, log)
    handler = LocalRequestHandler(
        local=local,
        new_tasks_on_runner=isinstance(executor, RuntimeExecutor),
        agent_executor=executor,
        task_store=task_store,
        request_context_builder=TaskContextBuilder(task_store, validate, task_store.new_ids, executor),
        agent_card=card.card,
        push_config_store=push_store,
        push_sender=push_sender,
        push_url_validator=gateway.push.policy.allows,  # checked again at every delivery
        interrupted_task_timeout=settings.interrupted_task_timeout,
    )
    handler.join(log)
    push_sender.published = log.published
    handler.cache = build_cache(spec)  # opt-in per agent (``cache:``); the runner and the SDK's path share it
    handler.admission = build_admission(spec.name, spec.admission)  # concurrency caps (``admission:``)
    if local is not None:
        local.cache, local.admission = handler.cache, handler.admission
    return HostedAgent(spec=spec, card=card, handler=handler)


def _retry_after(guard: Guard, seconds: float) -> Guard:
    """``guard``, its app answering 429s with ``Retry-After``."""

    def guarded(app: ASGIApp, prefix: str) -> ASGIApp:
        return RetryAfter(guard(app, prefix), seconds)

    return guarded


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

    async def root_card(request: Request) -> Response:
        hosted = gateway.agents.get(gateway.settings.root_agent)
        if hosted is None:
            message = f"no root agent: {gateway.settings.root_agent!r} is not hosted here; see /agents"
            return JSONResponse({"error": {"code": 404, "status": "NOT_FOUND", "message": message}}, status_code=404)
        return hosted.card.response(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        if not gateway.ready:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            # An empty transaction through the writer: it commits only if the writer can (a wedged
            # writer, a lost lock or connection shows here); the cause goes to the log, not the caller.
            async with asyncio.timeout(READY_PROBE_TIMEOUT_S):
                await gateway.db.write_many([])
        except Exception:  # the edge: any database failure means not ready
            logger.exception("readiness: the database cannot commit")
            return JSONResponse({"status": "database unavailable"}, status_code=503)
        return JSONResponse({"status": "ready", "agents": len(gateway.agents)})

    return [
        Route("/agents", list_agents, methods=["GET"]),
        Route(API_CATALOG_PATH, api_catalog, methods=["GET", "HEAD"]),
        Route(AGENT_CARD_PATH, root_card, methods=["GET"]),
        Route(JWKS_PATH, jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
    ]


async def _start_leases(gateway: Gateway) -> frozenset[tuple[str, str, str]]:
    """On PostgreSQL: this replica's ``LeaseBook``, renewing and fencing its runs; the runs with a lease now."""
    if gateway.db.dialect != "postgresql":
        return frozenset()
    gateway.leases = LeaseBook(gateway.db, gateway.db.runner)
    for hosted in gateway.agents.values():
        if isinstance(hosted.handler.task_store, SqlTaskStore):
            hosted.handler.task_store.leases = gateway.leases
    gateway.leases.start()
    return frozenset(await leased_keys(gateway.db))


def redact_url(url: str) -> str:
    """``url`` without its password, fit for a log line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _open_store(url: str) -> Database:
    """The task database, or a ``StartupError`` saying in one line why it does not open."""
    try:
        return await open_database(url)
    except Exception as exc:  # any driver's error (refused, unknown role or database, bad DSN): one boundary
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StartupError(
            f"cannot open the database {redact_url(url)}: {reason} (--database-url takes postgresql://USER@HOST/DB; "
            "leave it unset for SQLite in the data dir)"
        ) from exc


async def _share_keys(gateway: Gateway) -> None:
    """On PostgreSQL without keys in settings: the replicas' shared key ring, reloaded when it changes.

    See ``gateway.cards.shared_keys``; this replica's data-dir keys start the ring on the cluster's first start.
    """
    settings = gateway.settings
    if gateway.keyring is None or gateway.db.dialect != "postgresql" or settings.signing_keys:
        return
    if settings.signing_key_files:
        return
    shared = SharedKeys(gateway.db, gateway.use_keyring)
    ring = await shared.start(gateway.keyring.keys, settings.signing_alg)
    gateway.use_keyring(ring)
    if not settings.gateway_id:  # one id for the cluster on hop paths: from its oldest key, as one gateway's
        gateway.federation.gateway_id = derive_gateway_id("", [ring.keys[0].kid], settings.base_url)
    gateway.cluster.on_notify(KEYS_CHANNEL, shared.notified)
    gateway.spawn(shared.watch(), name="keys:watch")


async def _start_grpc(gateway: Gateway, observe: Observe | None = None) -> GrpcServer:
    """Serve every agent over gRPC and list the gRPC interface in their cards; ``StartupError`` if it cannot."""
    settings = gateway.settings
    grpc_guard = GrpcAuthGuard(gateway.auth, {n: h.spec for n, h in gateway.agents.items()})
    try:
        grpc_server = await start_grpc_server(
            {name: hosted.handler for name, hosted in gateway.agents.items()},
            host=settings.host,
            port=settings.grpc_port,
            default_agent=settings.grpc_default_agent,
            context_builder=grpc_guard.context_builder if gateway.auth.enabled else None,
            guard=grpc_guard if gateway.auth.enabled else None,
            observe=observe,
        )
    except OSError as exc:
        for task in list(gateway.background):
            task.cancel()
        await asyncio.gather(*gateway.background, return_exceptions=True)
        await gateway.db.close()
        hint = "choose another with --grpc-port (SWITCHBOARD_GRPC_PORT), 0 for any free port"
        raise StartupError(f"{exc}; {hint}") from exc
    grpc_at = settings.grpc_public_url or grpc_address(settings.base_url, grpc_server.port)
    for hosted in gateway.agents.values():
        interface = grpc_interface(grpc_at, hosted.spec.name)
        security = gateway.auth.card_security(hosted.spec, gateway.specs)
        hosted.card = gateway.render(build_card(hosted.spec, settings.base_url, (interface,), security))
    return grpc_server


def create_app(settings: Settings, registry: Registry | None = None, *, serve_grpc: bool = True) -> Starlette:
    """The gateway as an ASGI app; resources open in its lifespan (the gRPC listener too, unless not ``serve_grpc``)."""
    use_in_sdk_handlers()  # the SDK's REQUIRED-field check, 100x cheaper (gateway.required_fields)
    register_with_sdk()  # federation refusals get their own codes on every binding, not INTERNAL
    quiet_client_mistakes()  # a client's mistake is one short log line, without the SDK's traceback
    use_own_codes_for_v03()  # v0.3 JSON-RPC clients get an error's own code, not -32603
    keyring = load_keyring(settings)
    federation = load_federation(settings, keyring)  # peers' agents are imported before the registry loads
    traced = start_tracing(settings, federation.gateway_id)  # spans exported when OTEL_* says so (once per process)
    gateway = Gateway(
        settings=settings,
        registry=registry or load_registry(settings, federation.imported),
        db=MeasuredDatabase() if settings.metrics or traced else DeferredDatabase(),
        keyring=keyring,
        federation=federation,
    )
    gateway.auth = AuthPolicy.from_settings(settings, gateway.http)  # inbound credentials; JWKS over gateway.http
    names = [spec.name for spec in gateway.registry]
    operating = gateway.operating = Operating.build(settings, gateway.auth, gateway.db, names)
    routes = _root_routes(gateway) + operating.routes()
    if settings.ui:
        routes[:0] = ui_routes(gateway)  # the dashboard, and a browser's view of an agent's URL (before the agents')
    for spec in gateway.registry:
        hosted = _host(gateway, spec)
        gateway.agents[spec.name] = hosted
        guard = agent_guard(gateway.auth, spec, settings.base_url, settings.max_body_bytes)
        if spec.admission is not None:  # REST's busy refusals carry Retry-After
            guard = _retry_after(guard, spec.admission.retry_after_s)
        routes += agent_routes(spec.name, hosted.handler, lambda h=hosted: h.card, settings.max_body_bytes, guard)
    # An executor may have completed its spec (an mcp agent's skill, from its tool): every reader sees that one.
    gateway.registry = Registry(tuple(gateway.agents[spec.name].spec for spec in gateway.registry))
    routes += UNKNOWN_AGENT_ROUTES
    triggers = Triggers(
        gateway,
        list(gateway.registry),
        nats_url=settings.nats_url,
        max_body_bytes=settings.max_body_bytes,
        retention_s=settings.trigger_retention_days * 86400,
    )
    routes[:0] = triggers.routes()  # webhooks and A2A pushes: /triggers/{agent}/{trigger}
    mcp = gateway.mcp = create_mcp_binding(gateway)  # MCP: Streamable HTTP at /mcp (and `switchboard mcp` over stdio)
    routes[:0] = mcp.routes  # first: the router tries routes in order, and /mcp is one exact path
    gateway.card_listeners.append(mcp.refresh)  # an agent's tool follows its card

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        gateway.db.attach(await _open_store(settings.store_url))
        operating.attach(gateway)
        await operating.start(gateway.spawn)
        # Runs a stop interrupted resume from their checkpoints (or end FAILED with the reason);
        # the sweep ends every other task a stop left running.
        # On a shared database (replicas), only what has not changed for a while counts as crashed.
        since = None if gateway.db.exclusive else time.time_ns() - int(settings.takeover_after_s * 1e9)
        hosted_specs = {name: hosted.spec for name, hosted in gateway.agents.items()}
        leased = await _start_leases(gateway)  # PostgreSQL: runs with a lease are taken over through it
        resumable = await recover_runs(gateway.db, hosted_specs, since, skip=leased)
        keep = frozenset((run.agent, run.owner, run.task_id) for run in resumable) | leased
        swept = await fail_interrupted(gateway.db, SWEEP_REASON, keep, since)
        if swept:
            logger.warning("ended %d task(s) left running by an earlier stop: %s", len(swept), ", ".join(swept))
        # Push: what a stop left in the outbox goes out (what was in flight too: on SQLite no one holds it now),
        # then the ends of the tasks just swept.
        await gateway.push.outbox.recover(release_leases=gateway.db.exclusive)
        await queue_stored_tasks(gateway.push.outbox, swept)
        gateway.spawn(gateway.push.run(), name="push:delivery")
        await _share_keys(gateway)  # PostgreSQL: every replica signs with the same keys, rotated live
        if gateway.db.dialect == "postgresql" and not settings.mcp_state_key.get_secret_value():
            mcp.state_codec.use(await shared_secret(gateway.db))  # MCP requestState unsealed on any replica
        await gateway.cluster.start()  # PostgreSQL: follow and cancel tasks running on other replicas
        gateway.work_items.start()  # PostgreSQL: claim the steps of distributed work queues
        # gRPC: one server for every agent; the cards list it once its port is bound (not over stdio MCP).
        observe = operating.telemetry.grpc_call if operating.telemetry.active else None
        grpc_server = await _start_grpc(gateway, observe) if serve_grpc else None
        # Federation: remote cards checked (their served cards follow every change), then kept fresh.
        await gateway.federation.start(gateway.db, gateway.refresh_card)
        if gateway.federation.remotes:
            gateway.spawn(gateway.federation.keep_fresh(), name="federation:refresh")
        if gateway.mcp_clients.waiting:  # MCP servers not reached at start: their agents come in when they answer
            gateway.spawn(gateway.mcp_clients.keep_probing(gateway.refresh_card), name="mcp:probe")
        # Everything built so far (modules, agents, cards, SDK objects) lives as long as the process:
        # out of the collector's sight, full collections scan only what requests create.
        gc.collect()
        gc.freeze()
        gateway.ready = True
        if gateway.leases is not None:
            failover = Failover(gateway.db, gateway.leases, gateway.cluster, lambda: gateway.specs, gateway.handler)
            gateway.spawn(failover.run(), name="cluster:failover")
        for run in resumable:
            logger.info("resuming run %s of %s after %d step(s)", run.task_id, run.agent, len(run.steps))
            gateway.spawn(resume_run(gateway.handler(run.agent), run, gateway.db), name=f"resume:{run.task_id}")
        await triggers.start(gateway.spawn)  # NATS consumers and schedules; webhooks arrive through routes
        try:
            async with mcp.running():  # MCP: its session manager and run watchers live in this lifespan
                yield
        finally:
            gateway.ready = False
            gateway.stopping = True  # runs keep their checkpoints, to resume on the next start
            await gateway.work_items.close()  # the shared steps running here go back to the queue
            for task in list(gateway.background):
                task.cancel()
            await asyncio.gather(*gateway.background, return_exceptions=True)
            await triggers.aclose()
            if grpc_server is not None:
                await grpc_server.stop()
            for hosted in gateway.agents.values():
                await hosted.handler.aclose()
                if isinstance(hosted.handler.agent_executor, RuntimeExecutor):  # a framework's runner, sessions
                    await hosted.handler.agent_executor.aclose()
            await gateway.mcp_clients.aclose()  # after the agents: their tasks may still be calling tools
            if gateway.leases is not None:  # the runs stopped here resume on another replica now
                await gateway.leases.release_all()
                await gateway.leases.stop()
            await gateway.cluster.close()
            await gateway.federation.aclose()
            await gateway.http.aclose()
            await operating.stop()  # the audit rows still queued are written
            await gateway.db.close()
            gc.unfreeze()  # what this app built may be collected again (tests start many apps in one process)

    app = Starlette(routes=routes, lifespan=lifespan, middleware=operating.middleware())
    app.state.gateway = gateway
    app.state.mcp = mcp
    app.state.triggers = triggers
    return app
