"""What one MCP caller may hold at once: 2025-11-25 sessions and resource subscriptions, capped per caller.

The SDK's session manager caps sessions for all callers together (past it, everyone gets 503)
and closes a session after an idle period; this keeps both and adds the per-caller count. A
caller is its authenticated name, or ``anonymous@<client address>`` with auth off (``local`` on
stdio). A caller at its cap gets 429 with a JSON-RPC error body naming the cap, before any
session is created; other callers are unaffected. A session's place is given back however it
ends (DELETE, idle timeout, a failed opening request), and so are its subscriptions.

Why a subclass of the SDK's manager: it admits a session under its own lock, so a per-caller
check made anywhere else races with it (a caller opening many sessions at once would pass the
check together). ``_admit_session`` and ``_discard_session`` are where a session begins and ends.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Hashable, Iterable
from contextvars import ContextVar
from typing import Any, Final

from mcp.server import ServerRequestContext
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from mcp_types import ErrorData, JSONRPCError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from gateway.auth.policy import CallerUser
from gateway.errors import CallerLimitError, wire_for

logger = logging.getLogger(__name__)

LOCAL_CALLER: Final = "local"
RETRY_AFTER_S: Final = 30
"""What a refused caller is told to wait: about how long an idle session takes to be reaped, at most."""

SessionEnded = Callable[[str], None]
"""Told the id of every session that ends, however it ends."""

_OPENING: ContextVar[str] = ContextVar("mcp_opening_caller", default=LOCAL_CALLER)


def caller_of_scope(scope: Scope) -> str:
    """Who an HTTP request comes from: the authenticated caller, else ``anonymous@<client address>``."""
    user = scope.get("user")
    if isinstance(user, CallerUser):
        return user.caller.name
    client = scope.get("client")
    return f"anonymous@{client[0]}" if client else "anonymous"


def caller_of(ctx: ServerRequestContext[Any, Any]) -> str:
    """Who an MCP request comes from (``local`` on stdio)."""
    request = ctx.request
    scope = getattr(request, "scope", None)
    return caller_of_scope(scope) if isinstance(scope, dict) else LOCAL_CALLER


class CallerCounts:
    """How many of one resource each caller holds, by key, against a per-caller cap."""

    def __init__(self, what: str, cap: int, hint: str) -> None:
        self.what = what
        self.cap = cap
        self.hint = hint
        self._owner: dict[Hashable, str] = {}
        self._held: Counter[str] = Counter()

    def take(self, caller: str, keys: Iterable[Hashable]) -> None:
        """Count ``keys`` for ``caller`` (keys it holds already cost nothing); ``CallerLimitError`` past the cap."""
        new = [k for k in dict.fromkeys(keys) if k not in self._owner]
        if self._held[caller] + len(new) > self.cap:
            raise self._refusal(caller)
        for key in new:
            self._owner[key] = caller
        self._held[caller] += len(new)

    def check(self, caller: str) -> None:
        """``CallerLimitError`` when ``caller`` could not take one more."""
        if self._held[caller] >= self.cap:
            raise self._refusal(caller)

    def _refusal(self, caller: str) -> CallerLimitError:
        return CallerLimitError(
            f"{caller} holds {self._held[caller]} of the {self.cap} {self.what} a caller may hold; {self.hint}"
        )

    def release(self, keys: Iterable[Hashable]) -> None:
        """Give ``keys`` back (unknown ones are ignored, so a key may be given back twice)."""
        for key in keys:
            caller = self._owner.pop(key, None)
            if caller is not None:
                self._held[caller] -= 1
                if not self._held[caller]:
                    del self._held[caller]

    def held(self, caller: str) -> int:
        """How many ``caller`` holds."""
        return self._held[caller]

    def __len__(self) -> int:
        return len(self._owner)


def limit_error(error: CallerLimitError) -> MCPError:
    """The JSON-RPC error of a refusal, for a handler to raise."""
    return MCPError(code=wire_for(error).jsonrpc_code, message=error.detail, data={"reason": error.reason})


def limit_response(error: CallerLimitError) -> Response:
    """429 with the JSON-RPC error (no request id: the request was not read) and ``Retry-After``."""
    wire = wire_for(error)
    body = JSONRPCError(
        jsonrpc="2.0",
        id=None,
        error=ErrorData(code=wire.jsonrpc_code, message=error.detail, data={"reason": error.reason}),
    )
    return Response(
        body.model_dump_json(by_alias=True, exclude_unset=True),
        status_code=wire.http_status,
        media_type="application/json",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


class CallerSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, with sessions counted per caller and every session's end announced."""

    def __init__(self, sdk: StreamableHTTPSessionManager, per_caller: int) -> None:
        super().__init__(
            app=sdk.app,
            event_store=sdk.event_store,
            json_response=sdk.json_response,
            stateless=sdk.stateless,
            security_settings=sdk.security_settings,
            retry_interval=sdk.retry_interval,
            session_idle_timeout=sdk.session_idle_timeout,
            max_request_body_size=sdk.max_request_body_size,
            max_sessions=sdk.max_sessions,
        )
        self.sessions = CallerCounts(
            "open MCP sessions", per_caller, "close one (DELETE /mcp) or let an idle one expire, then retry"
        )
        self.ended: list[SessionEnded] = []

    async def _handle_stateful_request(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = caller_of_scope(scope)
        token = _OPENING.set(caller)
        try:
            await super()._handle_stateful_request(scope, receive, send)
        except CallerLimitError as error:
            logger.warning("refused a new MCP session: %s", error.detail)
            await limit_response(error)(scope, receive, send)
        finally:
            _OPENING.reset(token)

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        caller = _OPENING.get()
        self.sessions.check(caller)
        transport = super()._admit_session(requestor)
        if transport is not None and transport.mcp_session_id is not None:
            self.sessions.take(caller, [transport.mcp_session_id])
        return transport

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        self.sessions.release([session_id])
        for listener in self.ended:
            try:
                listener(session_id)
            except Exception:
                logger.exception("a session-end listener failed for session %s", session_id[:64])
        await super()._discard_session(session_id, transport)
