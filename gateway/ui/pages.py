"""The dashboard's pages: static files from the package, served with a strict Content-Security-Policy.

What ships is plain files in ``gateway/ui/static/`` (HTML, CSS and ES modules written by hand,
no build step). ``/`` redirects to ``/ui/``; every path under ``/ui/`` that is no file or API
is the one page (``index.html``), which routes in the browser. A browser opening an agent's URL
(``GET /agents/{name}`` accepting ``text/html``) is sent to that agent's page; any other ``GET``
there is told that the URL takes A2A requests by ``POST`` and where the card is.

Every page answer carries ``CSP``: scripts, styles and connections only from this origin, no
inline script or style, no framing, no ``<base>`` and no plugins. The page sets every text with
``textContent`` (never ``innerHTML``), so an agent's message, artifact or card field holding
HTML shows as text.
"""

from __future__ import annotations

import functools
from collections.abc import Container
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route, request_response
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.cards.build import AGENT_CARD_PATH

STATIC_DIR = Path(__file__).parent / "static"
UI_PATH = "/ui"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
)


class SecureHeaders:
    """ASGI: adds the CSP and its companions to every response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, with_headers)


@functools.lru_cache(maxsize=8)
def _index(root_path: str) -> bytes:
    """The page, with its asset URLs under the app's root path (a proxy may mount the gateway below /).

    Read from the package once per root path, not on every page request.
    """
    text = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    return text.replace("{{static}}", f"{root_path}{UI_PATH}/static").encode("utf-8")


def wants_html(request: Request) -> bool:
    """Whether the caller is a browser asking for a page (its ``Accept`` names ``text/html``)."""
    return "text/html" in request.headers.get("accept", "").lower()


def page_routes(agents: Container[str]) -> list[BaseRoute]:
    """``/``, ``/ui/...`` and the browser's view of ``/agents/{name}`` (put before the agents' own routes)."""

    async def root(request: Request) -> Response:
        return RedirectResponse(f"{request.scope.get('root_path', '')}{UI_PATH}/", status_code=302)

    async def page(request: Request) -> Response:
        body = _index(request.scope.get("root_path", ""))
        return Response(body, media_type="text/html", headers={"Cache-Control": "no-cache"})

    async def agent_url(request: Request) -> Response:
        name = request.path_params["name"]
        if wants_html(request):
            return RedirectResponse(f"{request.scope.get('root_path', '')}{UI_PATH}/agents/{name}", status_code=303)
        if name not in agents:
            message = f"no agent named {name!r} is hosted here; see /agents"
            return JSONResponse({"error": {"code": 404, "status": "NOT_FOUND", "message": message}}, status_code=404)
        message = (
            f"agent {name!r} is hosted here: send A2A JSON-RPC requests to this URL by POST; "
            f"its card is at /agents/{name}{AGENT_CARD_PATH}"
        )
        body = {"error": {"code": 405, "status": "UNIMPLEMENTED", "message": message}}
        return JSONResponse(body, status_code=405, headers={"Allow": "POST"})

    static = StaticFiles(directory=STATIC_DIR)
    return [
        Route("/", root, methods=["GET"]),
        Route(UI_PATH, root, methods=["GET"]),
        Mount(f"{UI_PATH}/static", app=SecureHeaders(static)),
        Route(f"{UI_PATH}/", SecureHeaders(request_response(page)), methods=["GET"]),
        Route(f"{UI_PATH}/{{rest:path}}", SecureHeaders(request_response(page)), methods=["GET"]),
        Route("/agents/{name}", agent_url, methods=["GET"]),
    ]
