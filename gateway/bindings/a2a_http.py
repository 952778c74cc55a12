"""A2A over HTTP for one agent: JSON-RPC 2.0 (+SSE) and HTTP+JSON under ``/agents/{name}``.

Each agent gets its own ``Mount``: the SDK's REST routes end in a ``/{tenant}`` mount that
would swallow a second agent's routes if agents shared one router with path prefixes.
"""

from __future__ import annotations

from collections.abc import Callable

from a2a.server.request_handlers import RequestHandler
from a2a.server.routes import create_jsonrpc_routes, create_rest_routes
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, Router, request_response
from starlette.types import ASGIApp

from gateway.auth.http import CallerContextBuilder
from gateway.bindings.edge import EdgeGuard
from gateway.cards.build import AGENT_CARD_PATH, CardDocument

Guard = Callable[[ASGIApp, str], ASGIApp]
"""Wraps an agent's app (given its path prefix) in the check every request passes first (auth)."""


def _unguarded(app: ASGIApp, prefix: str) -> ASGIApp:
    return app


def agent_routes(
    name: str,
    handler: RequestHandler,
    card: Callable[[], CardDocument],
    max_body_bytes: int,
    guard: Guard = _unguarded,
) -> list[BaseRoute]:
    """The routes serving agent ``name``: its card, JSON-RPC at the root (with or without a slash), REST.

    ``guard`` runs before the edge checks and the SDK on every route; it leaves the card public.
    """

    async def card_endpoint(request: Request) -> Response:
        return card().response(request)

    callers = CallerContextBuilder()  # the caller acts as itself in every step its task starts
    jsonrpc = create_jsonrpc_routes(handler, rpc_url="/", enable_v0_3_compat=True, context_builder=callers)
    inner: list[BaseRoute] = [
        Route(AGENT_CARD_PATH, card_endpoint, methods=["GET"]),
        *jsonrpc,
        *create_rest_routes(handler, enable_v0_3_compat=True, context_builder=callers),
    ]
    prefix = f"/agents/{name}"
    jsonrpc_app = request_response(jsonrpc[0].endpoint)  # type: ignore[attr-defined]
    # Clients post JSON-RPC to the card's URL exactly, without a trailing slash; answer it
    # here rather than with a redirect that would cost every call a round trip.
    return [
        Route(prefix, guard(EdgeGuard(jsonrpc_app, prefix, max_body_bytes), prefix), methods=["POST"]),
        Mount(prefix, app=guard(EdgeGuard(Router(inner), prefix, max_body_bytes), prefix)),
    ]


async def unknown_agent(request: Request) -> Response:
    """404 naming the agent, for any path under ``/agents/`` no hosted agent claims."""
    name = request.path_params.get("name", "")
    return JSONResponse(
        {"error": {"code": 404, "status": "NOT_FOUND", "message": f"no agent named {name!r} is hosted here"}},
        status_code=404,
    )


UNKNOWN_AGENT_ROUTES: list[BaseRoute] = [
    Route("/agents/{name}", unknown_agent, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
    Route("/agents/{name}/{rest:path}", unknown_agent, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
]
