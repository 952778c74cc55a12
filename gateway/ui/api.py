"""The dashboard's read-only JSON API, under ``/ui/api/``: what the A2A protocol does not say.

The dashboard talks A2A for everything A2A covers (an agent's card, sending a message,
streaming, getting, cancelling and answering a task: the same JSON-RPC/SSE clients use). This
API adds only reads A2A has no method for, each owner-isolated like the protocols:

- ``GET /ui/api/me``: ``{caller, operator, auth}``, who the credential is (the login form checks it here);
- ``GET /ui/api/agents``: each hosted agent's runtime kind, a workflow's pattern and participants,
  a remote agent's origin and card state;
- ``GET /ui/api/tasks``: the caller's tasks on every agent, newest first, a page at a time:
  ``limit`` (1-100, default 25), ``cursor`` (the last page's ``next``), ``agent``, ``kind=runs``,
  ``state=active``, ``id`` (one task, to find its agent);
- ``GET /ui/api/task``: ``{owner, task}``, one task read-only (``agent``, ``id``): the caller's own, or
  any owner's for an operator (A2A's ``GetTask`` answers only for the caller's own);
- ``GET /ui/api/peers``: partner gateways, their trust anchors, imported agents with their card
  state, relay latency;
- ``GET /ui/api/keys``: the card-signing keys, their kid, algorithm and state (current, retiring);
- ``GET /ui/api/audit``: the caller's newest audit rows: ``limit`` (1-100), ``before`` (``next``);
- ``GET /ui/api/metrics``: requests, errors and latency per agent, open streams, runs, tasks by
  state (for an operator or a holder of the metrics scope).

Credentials are the API's own: ``X-API-Key`` or ``Authorization: Bearer``, checked by the same
``AuthPolicy``. A caller sees only the rows it owns; a caller holding ``ui_operator_scope`` sees
every owner's (with auth off everyone is the one anonymous owner, and sees all). Answers are
``Cache-Control: no-store``; errors are ``{"error": {code, status, message}}`` as on the REST binding. A
query parameter holding NUL is a 400 on every path (PostgreSQL text cannot hold one).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from a2a.utils.errors import TaskNotFoundError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.auth.policy import API_KEY_HEADER, AuthPolicy
from gateway.cards.keys import KeyRing
from gateway.errors import AuthenticationError, GatewayError, PermissionDeniedError, wire_for
from gateway.federation.hub import Federation
from gateway.hosting.hosted import HostedAgent
from gateway.settings import Settings
from gateway.spec import WorkflowRuntime
from gateway.store.database import INT64_MAX, Database
from gateway.telemetry.access import note_refusal
from gateway.telemetry.operating import Operating
from gateway.ui.operations import agents_json, audit_json, keys_json, metrics_json, peers_json
from gateway.ui.tasks import DEFAULT_PAGE, MAX_PAGE, BadQueryError, TaskQuery, list_tasks, read_task, whole_number

API_PREFIX = "/ui/api"
NO_STORE = {"Cache-Control": "no-store", "Vary": f"Authorization, {API_KEY_HEADER}"}


class UiHost(Protocol):
    """What the dashboard reads of the running gateway (``gateway.app.Gateway`` is one)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def agents(self) -> Mapping[str, HostedAgent]: ...
    @property
    def keyring(self) -> KeyRing | None: ...
    @property
    def federation(self) -> Federation: ...
    @property
    def auth(self) -> AuthPolicy: ...
    @property
    def db(self) -> Database: ...
    @property
    def operating(self) -> Operating | None: ...
    @property
    def started(self) -> float: ...


@dataclass(frozen=True)
class Viewer:
    """The dashboard's caller: the owner name its tasks are stored under, and whether it sees every owner's."""

    name: str
    scopes: frozenset[str]
    operator: bool

    @property
    def owner_filter(self) -> str | None:
        """The owner to list rows of (None: every owner, for an operator)."""
        return None if self.operator else self.name


def error_response(status: int, grpc_status: str, message: str) -> JSONResponse:
    """An error as the REST binding shapes it."""
    body = {"error": {"code": status, "status": grpc_status, "message": message}}
    return JSONResponse(body, status_code=status, headers=NO_STORE)


def _gateway_error(error: GatewayError) -> JSONResponse:
    wire = wire_for(error)
    return error_response(wire.http_status, wire.grpc_status, error.detail)


Handler = Callable[[Request, Viewer], Awaitable[Any]]


def _refuse_nul(params: list[tuple[str, str]]) -> None:
    """``BadQueryError`` for a parameter holding NUL, which no name, id or cursor has.

    Checked before any query reaches the database: PostgreSQL text cannot hold NUL, and refuses
    such a parameter with an error (a 500 here), where SQLite would only find no match.
    """
    for name, value in params:
        if "\x00" in name or "\x00" in value:
            raise BadQueryError(
                f"query parameter {name!r} holds a NUL character, which no agent name, id or cursor has"
            )


class DashboardApi:
    """The API's handlers over one running gateway."""

    def __init__(self, host: UiHost) -> None:
        self.host = host

    async def viewer(self, request: Request) -> Viewer:
        """The caller a request's credentials name; ``AuthenticationError`` without valid ones (auth on)."""
        auth = self.host.auth
        if not auth.enabled:
            return Viewer(name="", scopes=frozenset(), operator=True)
        headers = request.headers
        identity = await auth.authenticate(headers.get("authorization"), headers.get(API_KEY_HEADER))
        operator = self.host.settings.ui_operator_scope in identity.scopes
        return Viewer(name=identity.name, scopes=identity.scopes, operator=operator)

    def route(self, path: str, handler: Handler) -> Route:
        """``GET path`` answering ``handler``'s JSON for an authenticated caller."""

        async def endpoint(request: Request) -> Response:
            try:
                viewer = await self.viewer(request)
                _refuse_nul(request.query_params.multi_items())
                return JSONResponse(await handler(request, viewer), headers=NO_STORE)
            except (AuthenticationError, PermissionDeniedError) as error:
                note_refusal(error.detail)
                return _gateway_error(error)
            except BadQueryError as error:
                return error_response(400, "INVALID_ARGUMENT", str(error))
            except TaskNotFoundError as error:
                return error_response(404, "NOT_FOUND", str(error))

        return Route(f"{API_PREFIX}{path}", endpoint, methods=["GET"])

    async def me(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """Who the caller is."""
        return {"caller": viewer.name, "operator": viewer.operator, "auth": self.host.auth.enabled}

    async def agents(self, request: Request, viewer: Viewer) -> list[dict[str, Any]]:
        """Each agent's runtime (cards themselves are public at ``/agents``)."""
        return agents_json(self.host.agents, self.host.federation)

    async def tasks(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """One page of the caller's tasks."""
        workflows = tuple(n for n, h in self.host.agents.items() if isinstance(h.spec.runtime, WorkflowRuntime))
        query = TaskQuery.parse(viewer.owner_filter, request.query_params, workflows)
        return await list_tasks(self.host.db, query, frozenset(workflows))

    async def task(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """One task, read-only: any owner's for an operator (A2A's GetTask shows only the caller's own)."""
        agent, task_id = request.query_params.get("agent", ""), request.query_params.get("id", "")
        if not agent or not task_id:
            raise BadQueryError("give the task's agent and id: ?agent=NAME&id=TASK_ID")
        found = await read_task(self.host.db, agent, task_id, viewer.owner_filter)
        if found is None:
            raise TaskNotFoundError(f"task {task_id} not found on {agent}")
        return found

    async def peers(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """Partner gateways and the trust in their agents."""
        return peers_json(self.host.federation)

    async def keys(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """The signing keys' states."""
        return keys_json(self.host.keyring)

    async def audit(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """The caller's newest audit rows (every caller's for an operator)."""
        params = request.query_params
        limit = whole_number(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        before = whole_number(params, "before", 0, 0, INT64_MAX) if params.get("before") else None
        return await audit_json(self.host.db, viewer.owner_filter, limit, before)

    async def metrics(self, request: Request, viewer: Viewer) -> dict[str, Any]:
        """The main metrics, for an operator or a holder of the metrics scope."""
        settings = self.host.settings
        if self.host.auth.enabled and not viewer.operator and settings.metrics_scope not in viewer.scopes:
            raise PermissionDeniedError(
                f"{viewer.name} lacks scope {settings.ui_operator_scope} or {settings.metrics_scope} for metrics"
            )
        by_state: Mapping[str, int] = {}
        operating = self.host.operating
        if operating is not None and operating.collector is not None:
            await operating.collector.tasks.refresh()
            by_state = operating.collector.tasks.by_state
        return metrics_json(self.host.agents, self.host.started, by_state)

    def routes(self) -> list[BaseRoute]:
        """Every route of the API, and a JSON 404 for any other path under it."""

        async def unknown(request: Request) -> Response:
            return error_response(404, "NOT_FOUND", f"no dashboard API at {request.url.path}; see {API_PREFIX}/me")

        handlers: dict[str, Handler] = {
            "/me": self.me,
            "/agents": self.agents,
            "/tasks": self.tasks,
            "/task": self.task,
            "/peers": self.peers,
            "/keys": self.keys,
            "/audit": self.audit,
            "/metrics": self.metrics,
        }
        routes: list[BaseRoute] = [self.route(path, handler) for path, handler in handlers.items()]
        return [*routes, Route(API_PREFIX + "/{rest:path}", unknown, methods=["GET"])]
