"""The gateway's MCP server: agent tools, ``list_agents``, the run tools, served at ``/mcp`` and over stdio.

One ``MCPServer`` serves both protocol revisions. On Streamable HTTP, 2025-11-25 clients get
sessions (initialize handshake, ``Mcp-Session-Id``; see below for several replicas) and
2026-07-28 clients are served statelessly, one self-contained POST per request; the SDK's
session manager routes each request by its ``MCP-Protocol-Version`` header. The gateway's
lifespan runs the session manager (a mounted sub-app's lifespan would never run). Over stdio
the same server runs on the SDK's dual-era loop.

Several replicas (PostgreSQL): whichever replica a request reaches serves it, except for one thing.

- Works anywhere: every tool call; ``start_run`` / ``get_run`` / ``cancel_run`` and reading
  ``run://`` (the run is an A2A task in the shared store; a cancel reaches the replica running
  it); subscribing to ``run://`` on a replica other than the one running the run (that replica
  follows the task's events through the cluster and notifies its own subscribers:
  ``mcp_runs.Runs.followable``); 2026-07-28 ``subscriptions/listen`` streams; a 2026-07-28
  ``InputRequiredResult`` answered on another replica (its ``requestState`` is sealed with a key
  every replica holds: ``mcp_state_key``, else the cluster's shared secret, ``mcp_state``).
- Needs affinity: a 2025-11-25 session. The SDK keeps a session (its ``Mcp-Session-Id``, its
  standalone SSE stream, the server-to-client requests an elicitation sends on it, its resource
  subscriptions) in the memory of the replica that answered ``initialize``; another replica
  answers 404 and the client must initialize again. So route 2025 clients by the
  ``Mcp-Session-Id`` header (sticky sessions) or send them to one replica; the 2026-07-28
  revision is stateless and needs nothing of the sort (``deploy/README.md``).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from io import TextIOWrapper
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlsplit

import anyio
from a2a.auth.user import UnauthenticatedUser, User
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.stdio import stdio_server
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    CallToolResult,
    SubscribeRequestParams,
    TextContent,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from starlette.routing import BaseRoute, Route

from gateway.auth.http import McpAuthGuard, protected_resource_metadata_url, protected_resource_routes
from gateway.auth.policy import LOCAL_OPERATOR, AuthPolicy, CallerUser, Identity, a2a_user
from gateway.bindings.mcp_calls import AgentCaller
from gateway.bindings.mcp_framing import JsonWhenSilent
from gateway.bindings.mcp_limits import CallerCounts, CallerSessionManager
from gateway.bindings.mcp_listing import ToolListChanges, advertise
from gateway.bindings.mcp_runs import LocalSubscriptionBus, ResourceNotifier, RunBoard, Runs
from gateway.bindings.mcp_state import SharedStateCodec
from gateway.bindings.mcp_tools import AgentList, AgentTools, IdentityResolver, anonymous, tool_name
from gateway.errors import GatewayError
from gateway.spec import AgentSpec

if TYPE_CHECKING:
    from gateway.bindings.host import BindingHost
    from gateway.settings import Settings

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SERVER_NAME = "switchboard"
INSTRUCTIONS = (
    "Switchboard hosts agents and multi-agent workflows. Each agent tool runs one task and reports "
    "progress; list_agents shows every hosted agent, and start_run runs any of them in the background "
    "(follow it with get_run or the run://{run_id} resource, stop it with cancel_run)."
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")

ExtraModule = Callable[[MCPServer], None]
"""What an ``mcp_extra_modules`` entry names: ``register(server)`` adds tools, resources or prompts."""


class McpSetupError(GatewayError):
    """An MCP setting that cannot be honoured (an extra module that does not load)."""

    message = "invalid MCP setting"
    reason = "invalid-mcp-setting"


def select_agents(specs: Iterable[AgentSpec], entries: Iterable[str]) -> list[AgentSpec]:
    """The agents ``mcp_tools`` exposes: names, ``*`` (all) or ``kind:<runtime kind>``, in registry order."""
    wanted, specs = list(entries), list(specs)
    names = {s.name for s in specs}
    for entry in wanted:
        if entry != "*" and not entry.startswith("kind:") and entry not in names:
            logger.warning("mcp_tools names %r, which is not a hosted agent; skipped", entry)

    def chosen(spec: AgentSpec) -> bool:
        return any(e in ("*", spec.name, f"kind:{spec.runtime.kind}") for e in wanted)

    return [s for s in specs if chosen(s)]


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """The DNS-rebinding allowlist: loopback, the public URL's host, and ``mcp_allowed_hosts`` (``*``: off)."""
    if "*" in settings.mcp_allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = [*LOOPBACK_HOSTS, *settings.mcp_allowed_hosts]
    origins = [f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")]
    public = urlsplit(settings.base_url)
    if public.netloc:
        hosts.append(public.netloc)
        origins.append(f"{public.scheme}://{public.netloc}")
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted({h for host in hosts for h in (host, f"{host}:*")}),
        allowed_origins=sorted({o for origin in origins for o in (origin, f"{origin}:*")}),
    )


def _request_state_security(settings: Settings, shared: SharedStateCodec) -> RequestStateSecurity:
    """Shared keys seal 2026-07-28 ``requestState`` so any replica accepts it.

    The configured key; else ``shared``, keyed by the replicas' common secret once the database opens
    (PostgreSQL), or by this process alone (SQLite: one process).
    """
    key = settings.mcp_state_key.get_secret_value()
    if not key:
        return RequestStateSecurity(codec=shared, audience=SERVER_NAME)
    try:
        return RequestStateSecurity(keys=[key], audience=SERVER_NAME)
    except ValueError as exc:
        raise McpSetupError(f"mcp_state_key: {exc}") from exc


def _protocol_errors_for_unknown_names(server: MCPServer) -> ServerMiddleware[Any]:
    """Middleware: ``tools/call`` of an unknown tool or ``prompts/get`` of an unknown prompt is -32602."""

    listings = {"tools/call": ("tool", server.list_tools), "prompts/get": ("prompt", server.list_prompts)}
    known: dict[str, set[str]] = {}  # names seen listed; listed again only on a miss (tools may be added)

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        listing = listings.get(ctx.method)
        name = ctx.params.get("name") if isinstance(ctx.params, Mapping) else None
        if listing is not None and isinstance(name, str) and name not in known.get(ctx.method, ()):
            known[ctx.method] = {i.name for i in await listing[1]()}
            if name not in known[ctx.method]:
                raise MCPError(code=INVALID_PARAMS, message=f"Unknown {listing[0]}: {name}", data={"name": name})
        return await call_next(ctx)

    return middleware


def authenticated_caller(ctx: ServerRequestContext[Any, Any]) -> User:
    """The identity the HTTP auth guard admitted; on stdio, a local trusted pipe, the local operator."""
    if ctx.request is None:
        return a2a_user(LOCAL_OPERATOR)
    user = ctx.request.scope.get("user")
    return a2a_user(user.caller) if isinstance(user, CallerUser) else UnauthenticatedUser()


def _agent_scopes(
    policy: AuthPolicy, tools: Mapping[str, AgentSpec], specs: Mapping[str, AgentSpec]
) -> ServerMiddleware[Any]:
    """Middleware: a tool call that runs an agent (its tool, or ``start_run``) needs that agent's scopes.

    A tool call names no skill, so it needs every skill's scopes. Refused: an ``isError`` result
    naming the missing scopes, for the model to read. Calls over stdio are not checked.
    """

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params if ctx.method == "tools/call" and isinstance(ctx.params, Mapping) else {}
        name, arguments = params.get("name"), params.get("arguments")
        agent = arguments.get("agent") if name == "start_run" and isinstance(arguments, Mapping) else None
        spec = tools.get(name) if isinstance(name, str) else None
        spec = spec or (specs.get(agent) if isinstance(agent, str) else None)
        refusal = policy.may_call(_caller(ctx), spec) if spec is not None and ctx.request is not None else None
        if refusal is not None:
            logger.warning("refused MCP tools/call %s (agent %s): %s", name, spec.name if spec else "", refusal)
            return CallToolResult(content=[TextContent(type="text", text=refusal)], is_error=True)
        return await call_next(ctx)

    return middleware


CallerCheck = Callable[[ServerRequestContext[Any, Any], AgentSpec], bool]
"""Whether the caller of a request may call an agent (everyone may on stdio, a local trusted pipe)."""


def caller_check(policy: AuthPolicy) -> CallerCheck:
    """Whether a caller may call an agent's tool or ``start_run``: ``AuthPolicy.may_call``, as every step is checked."""

    def check(ctx: ServerRequestContext[Any, Any], spec: AgentSpec) -> bool:
        return ctx.request is None or policy.may_call(_caller(ctx), spec) is None

    return check


def _caller(ctx: ServerRequestContext[Any, Any]) -> Identity | None:
    """The authenticated caller of an MCP request over HTTP (None: anonymous)."""
    user = ctx.request.scope.get("user") if ctx.request is not None else None
    return user.caller if isinstance(user, CallerUser) else None


def _listed_for_caller(tools: Mapping[str, AgentSpec], allowed: CallerCheck) -> ServerMiddleware[Any]:
    """Middleware: ``tools/list`` leaves out the agent tools its caller may not call (a call still says why)."""

    async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method != "tools/list" or not isinstance(result, dict) or not isinstance(result.get("tools"), list):
            return result
        hidden = {name for name, spec in tools.items() if not allowed(ctx, spec)}
        if hidden:
            result["tools"] = [t for t in result["tools"] if not (isinstance(t, dict) and t.get("name") in hidden)]
        return result

    return middleware


def _guarded(routes: list[BaseRoute], gateway: BindingHost) -> list[BaseRoute]:
    """``/mcp`` behind the auth guard, plus the RFC 9728 metadata naming the issuers (auth off: as is)."""
    policy, settings = gateway.auth, gateway.settings
    if not policy.enabled:
        return routes
    metadata = protected_resource_metadata_url(settings.base_url, MCP_PATH)
    guarded: list[BaseRoute] = [
        Route(r.path, endpoint=McpAuthGuard(r.endpoint, policy, metadata, settings.max_body_bytes))
        if isinstance(r, Route) and r.path == MCP_PATH
        else r
        for r in routes
    ]
    scopes = policy.all_scopes(gateway.registry)
    return guarded + protected_resource_routes(policy, settings.base_url, scopes, MCP_PATH)


def _counted_sessions(routes: list[BaseRoute], server: MCPServer, settings: Settings) -> CallerSessionManager:
    """Serve ``/mcp`` with the SDK's session manager counting sessions per caller (``mcp_limits``)."""
    manager = CallerSessionManager(server.session_manager, settings.mcp_max_sessions_per_caller)
    for n, route in enumerate(routes):
        if isinstance(route, Route) and route.path == MCP_PATH:
            routes[n] = Route(MCP_PATH, endpoint=StreamableHTTPASGIApp(manager), methods=route.methods)
    server._lowlevel_server._session_manager = manager  # so server.session_manager is the one that runs
    return manager


def _json_when_silent(route: BaseRoute) -> BaseRoute:
    """``/mcp`` with 2025-11-25 replies that carry only their response framed as JSON (``mcp_framing``)."""
    if isinstance(route, Route) and route.path == MCP_PATH:
        return Route(route.path, endpoint=JsonWhenSilent(route.endpoint))
    return route


def _load_extra(target: str) -> ExtraModule:
    module_name, _, attr = target.partition(":")
    try:
        register = getattr(importlib.import_module(module_name), attr or "register")
    except (ImportError, AttributeError) as exc:
        raise McpSetupError(f"mcp_extra_modules: cannot load {target!r}: {exc}") from exc
    if not callable(register):
        raise McpSetupError(f"mcp_extra_modules: {target!r} is not callable")
    return register  # type: ignore[no-any-return]


@dataclass
class McpBinding:
    """The MCP server and what the gateway needs to serve it."""

    server: MCPServer
    routes: list[BaseRoute]
    runs: Runs
    tools: dict[str, str]
    notifier: ResourceNotifier
    sessions: CallerSessionManager
    state_codec: SharedStateCodec
    """Seals 2026-07-28 ``requestState`` when no ``mcp_state_key`` is set (``gateway.bindings.mcp_state``)."""
    changes: ToolListChanges
    refresh: Callable[[str], None]
    """Agent ``name``'s card changed while running: its tool follows, and clients are told (``mcp_listing``)."""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The HTTP session manager, the run watchers, tool-change announcements; entered by the gateway's lifespan."""
        async with self.sessions.run(), anyio.create_task_group() as group:
            self.runs.attach(group)
            self.changes.attach(group)
            try:
                yield
            finally:
                self.runs.attach(None)
                self.changes.attach(None)
                group.cancel_scope.cancel()

    async def serve_stdio(self, stdout: BinaryIO | None = None) -> None:
        """Serve this server on stdin and ``stdout`` (default: the process's) until the client closes stdin."""
        if stdout is None:
            await self.server.run_stdio_async()
            return
        wire = anyio.wrap_file(TextIOWrapper(stdout, encoding="utf-8"))
        lowlevel = self.server._lowlevel_server  # run_stdio_async, on the stdout given
        async with stdio_server(stdout=wire) as (read, write):
            await lowlevel.run(read, write, lowlevel.create_initialization_options())


def create_mcp_binding(gateway: BindingHost, identify: IdentityResolver | None = None) -> McpBinding:
    """The gateway's MCP server over its hosted agents, with the tools ``mcp_tools`` selects.

    The caller ``identify`` names owns the tasks of its calls; by default the caller the auth
    guard admitted (everyone is anonymous with auth off).
    """
    identify = identify or (authenticated_caller if gateway.auth.enabled else anonymous)
    settings = gateway.settings
    bus = LocalSubscriptionBus()
    state_codec = SharedStateCodec()
    server: MCPServer = MCPServer(
        SERVER_NAME,
        title="Switchboard",
        instructions=INSTRUCTIONS,
        version=_version(),
        subscriptions=bus,
        request_state_security=_request_state_security(settings, state_codec),
    )
    server.middleware.append(_protocol_errors_for_unknown_names(server))
    hint = "unsubscribe from some (or end a listen stream) first"
    subscriptions = CallerCounts("subscriptions", settings.mcp_max_subscriptions_per_caller, hint)
    notifier = ResourceNotifier(bus, subscriptions)
    board = RunBoard(notifier)
    caller = AgentCaller(gateway.agents, board.observe)
    runs = Runs(caller, identify, board)
    notifier.may_follow = runs.followable
    tools = AgentTools(caller, identify)
    allowed = caller_check(gateway.auth)
    specs = {s.name: s for s in gateway.registry}

    changes = ToolListChanges(bus)
    advertise(server._lowlevel_server)  # 2025-11-25 handshakes say tools.listChanged
    server.middleware.append(changes.middleware())
    exposed: dict[str, str] = {}
    builtin = {"list_agents", "start_run", "get_run", "cancel_run"}
    for spec in select_agents(gateway.registry, settings.mcp_tools):
        name = tool_name(spec.name)
        if name in builtin or name in exposed.values():
            logger.warning("agent %s is not exposed as a tool: the name %s is taken", spec.name, name)
            continue
        exposed[spec.name] = tools.register(server, spec)
    base_url = settings.base_url

    async def list_agents(ctx: Context) -> AgentList:
        """Every hosted agent and workflow you may call: what it does, its skills, and its tool if it has one.

        Any of them can be run with start_run, including those without a tool of their own.
        """
        return tools.summaries(exposed, base_url, lambda spec: allowed(ctx.request_context, spec))

    server.add_tool(
        list_agents,
        annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
        structured_output=True,
    )
    runs.register(server)
    lowlevel = server._lowlevel_server  # no public API for resources/subscribe yet (the SDK's own fixtures do this)
    lowlevel.add_request_handler("resources/subscribe", SubscribeRequestParams, notifier.subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, notifier.unsubscribe)
    server.middleware.append(notifier.listen_guard())
    by_tool = {tool: specs[agent] for agent, tool in exposed.items()}
    if gateway.auth.enabled:
        server.middleware.append(_agent_scopes(gateway.auth, by_tool, specs))
        server.middleware.append(_listed_for_caller(by_tool, allowed))

    def refresh(name: str) -> None:
        hosted, tool = gateway.agents.get(name), exposed.get(name)
        if hosted is None:
            return
        specs[name] = hosted.spec  # the scope checks see the agent as its card now shows it
        if tool is not None:
            by_tool[tool] = hosted.spec
            if tools.refresh(server, hosted.spec):
                changes.changed()

    for target in settings.mcp_extra_modules:
        _load_extra(target)(server)
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        transport_security=transport_security(settings),
        max_request_body_size=settings.max_body_bytes,
        session_idle_timeout=settings.mcp_session_idle_s,
        max_sessions=settings.mcp_max_sessions,
    )
    routes = list(app.routes)
    sessions = _counted_sessions(routes, server, settings)
    sessions.ended.append(notifier.session_ended)
    sessions.ended.append(changes.session_ended)
    routes = [_json_when_silent(r) for r in routes]
    return McpBinding(
        server=server,
        routes=_guarded(routes, gateway),
        runs=runs,
        tools=exposed,
        notifier=notifier,
        sessions=sessions,
        state_codec=state_codec,
        changes=changes,
        refresh=refresh,
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard-gateway")
    except PackageNotFoundError:
        return "0"
