"""The auth edge on HTTP: a protected agent's A2A routes and ``/mcp`` refuse callers before any SDK reads them.

A refused A2A call gets 401 (no, bad or expired credentials) or 403 (valid credentials without
the scopes) with a ``WWW-Authenticate`` challenge (RFC 6750, naming the RFC 9728 metadata), and
a body in the caller's binding: a JSON-RPC error object or the REST ``google.rpc.Status``
payload. An admitted caller becomes the request's ``user``: the A2A SDK takes its name as the
task owner, MCP binds its session and ``requestState`` to it. Cards stay public.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from a2a.auth.user import User
from a2a.server.routes.common import DefaultServerCallContextBuilder
from mcp.server.auth.middleware.auth_context import AuthContextMiddleware
from mcp.server.auth.routes import create_protected_resource_routes
from pydantic import AnyHttpUrl, ConfigDict, TypeAdapter
from starlette.authentication import AuthCredentials
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.auth.policy import API_KEY_HEADER, AuthPolicy, CallerUser, Identity, a2a_user
from gateway.cards.build import AGENT_CARD_PATH
from gateway.errors import AuthenticationError, GatewayError, MissingCredentialsError, PermissionDeniedError, wire_for
from gateway.spec import AgentSpec
from gateway.telemetry.access import note_refusal

logger = logging.getLogger(__name__)

PROTECTED_RESOURCE_PATH = "/.well-known/oauth-protected-resource"
REALM = "switchboard"
ERROR_DOMAIN = "switchboard"
DRAIN_BYTES = 1024 * 1024
SEND_METHODS = frozenset({"SendMessage", "SendStreamingMessage", "message/send", "message/stream"})
REST_SEND_SUFFIXES = ("/message:send", "/message:stream")
_URL = TypeAdapter(AnyHttpUrl, config=ConfigDict(url_preserve_empty_path=True))  # issuers compare exactly: no "/"

Refused = AuthenticationError | PermissionDeniedError


def _quoted(text: str) -> str:
    return text.replace("\\", "").replace('"', "'")


def challenges(policy: AuthPolicy, error: Refused, resource_metadata: str) -> list[str]:
    """The ``WWW-Authenticate`` challenges for ``error``: Bearer (RFC 6750) and/or the API key header."""
    found: list[str] = []
    if policy.tokens is not None:
        params = [f'realm="{REALM}"']
        if isinstance(error, PermissionDeniedError):
            params += ['error="insufficient_scope"', f'error_description="{_quoted(error.detail)}"']
        elif not isinstance(error, MissingCredentialsError):
            params += ['error="invalid_token"', f'error_description="{_quoted(error.detail)}"']
        params.append(f'resource_metadata="{resource_metadata}"')
        found.append("Bearer " + ", ".join(params))
    if len(policy.api_keys):
        found.append(f'ApiKey realm="{REALM}", header="{API_KEY_HEADER}"')
    return found


def protected_resource_metadata_url(base_url: str, resource_path: str = "") -> str:
    """Where RFC 9728 metadata of the resource at ``base_url + resource_path`` is served."""
    return f"{base_url}{PROTECTED_RESOURCE_PATH}{resource_path}"


def protected_resource_routes(policy: AuthPolicy, base_url: str, scopes: list[str], mcp_path: str) -> list[BaseRoute]:
    """RFC 9728 metadata for the gateway and for ``mcp_path``, naming the configured issuers (none: no routes)."""
    if not policy.issuers:
        return []
    servers = [_URL.validate_python(i.issuer) for i in policy.issuers]
    routes: list[BaseRoute] = []
    for resource in (base_url, f"{base_url}{mcp_path}"):
        routes += create_protected_resource_routes(
            resource_url=_URL.validate_python(resource), authorization_servers=servers, scopes_supported=scopes or None
        )
    return routes


async def _read_capped(receive: Receive, cap: int) -> tuple[bytes | None, Receive]:
    """The body (``None`` past ``cap`` bytes) and a ``receive`` that hands the app every byte read here."""
    chunks: list[bytes] = []
    size, more = 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
        if size > cap and more:
            return None, _replay(chunks, True, receive)
    body = b"".join(chunks)
    return body, _replay([body], False, receive)


def _replay(chunks: list[bytes], more_after: bool, then: Receive) -> Receive:
    """``receive`` giving ``chunks`` first, then ``then``'s messages (the rest of the body, the disconnect)."""
    pending = list(chunks)

    async def receive() -> Message:
        if pending:
            body = pending.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(pending) or more_after}
        return await then()

    return receive


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop a refused request's body (bounded), so the client reads the answer, not a reset."""
    dropped = 0
    while dropped <= budget:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body", False):
            return
        dropped += len(message.get("body", b""))


class _Guard:
    """What both HTTP guards share: reading credentials, admitting a caller, refusing one."""

    def __init__(self, app: ASGIApp, policy: AuthPolicy, resource_metadata: str, max_body_bytes: int) -> None:
        self.app = app
        self.policy = policy
        self.resource_metadata = resource_metadata
        self.max_body_bytes = max_body_bytes

    async def _authenticate(self, scope: Scope) -> Identity:
        headers = Headers(scope=scope)
        return await self.policy.authenticate(headers.get("authorization"), headers.get(API_KEY_HEADER))

    @staticmethod
    def _admit(scope: Scope, identity: Identity) -> None:
        scope["user"] = CallerUser(identity)
        scope["auth"] = AuthCredentials(sorted(identity.scopes))

    def _body(self, scope: Scope, error: Refused) -> dict[str, Any]:
        raise NotImplementedError

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: Refused, what: str) -> None:
        level = logging.INFO if isinstance(error, MissingCredentialsError) else logging.WARNING
        logger.log(level, "refused %s %s (%s): %s", scope["method"], scope["path"], what, error.detail)
        note_refusal(error.detail)
        await _drain(receive, max(self.max_body_bytes, DRAIN_BYTES))
        response = JSONResponse(self._body(scope, error), status_code=wire_for(error).http_status)
        for challenge in challenges(self.policy, error, self.resource_metadata):
            response.raw_headers.append((b"www-authenticate", challenge.encode("latin-1", "replace")))
        await response(scope, receive, send)


class AgentAuthGuard(_Guard):
    """ASGI: authenticates the callers of one protected agent's A2A routes and checks its scopes."""

    def __init__(
        self,
        app: ASGIApp,
        prefix: str,
        spec: AgentSpec,
        policy: AuthPolicy,
        resource_metadata: str,
        max_body_bytes: int,
    ) -> None:
        super().__init__(app, policy, resource_metadata, max_body_bytes)
        self.prefix = prefix
        self.spec = spec

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == self.prefix + AGENT_CARD_PATH:
            await self.app(scope, receive, send)  # the card is public
            return
        try:
            identity = await self._authenticate(scope)
            receive, message, skill = await self._message_skill(scope, receive)
            self.policy.authorize(identity, self.spec, message=message, skill=skill)
        except (AuthenticationError, PermissionDeniedError) as error:
            await self._refuse(scope, receive, send, error, f"agent {self.spec.name}")
            return
        self._admit(scope, identity)
        await self.app(scope, receive, send)

    def _is_jsonrpc(self, scope: Scope) -> bool:
        return bool(scope["path"].rstrip("/") == self.prefix)

    async def _message_skill(self, scope: Scope, receive: Receive) -> tuple[Receive, bool, str | None]:
        """Whether the request sends a message, and the skill it names; the body is read only when that matters."""
        jsonrpc = self._is_jsonrpc(scope)
        rest_send = scope["path"].endswith(REST_SEND_SUFFIXES)
        if scope["method"] != "POST" or not (jsonrpc or rest_send) or not self.policy.skill_scoped(self.spec):
            return receive, False, None
        body, receive = await _read_capped(receive, self.max_body_bytes)
        try:
            doc = json.loads(body) if body is not None else None
        except (ValueError, RecursionError):  # RecursionError: nested too deep, which the edge answers as a parse error
            return receive, rest_send, None  # the SDK answers the parse error; a REST send still needs every scope
        if jsonrpc:
            method = doc.get("method") if isinstance(doc, dict) else None
            if isinstance(doc, dict) and not (isinstance(method, str) and method in SEND_METHODS):
                return receive, False, None  # not a send (a method that is no string is the SDK's -32600)
            doc = doc.get("params") if isinstance(doc, dict) else None
        return receive, True, _named_skill(doc)

    def _body(self, scope: Scope, error: Refused) -> dict[str, Any]:
        wire = wire_for(error)
        reason = error.reason.upper().replace("-", "_")
        if self._is_jsonrpc(scope):
            data = {"reason": reason, "domain": ERROR_DOMAIN}
            return {
                "jsonrpc": "2.0",
                "id": None,
                "error": {"code": wire.jsonrpc_code, "message": error.detail, "data": data},
            }
        info = {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": ERROR_DOMAIN}
        return {
            "error": {"code": wire.http_status, "status": wire.grpc_status, "message": error.detail, "details": [info]}
        }


def _named_skill(params: object) -> str | None:
    """``message.metadata.skill`` of send-message params, if it is a string."""
    message = params.get("message") if isinstance(params, dict) else None
    metadata = message.get("metadata") if isinstance(message, dict) else None
    skill = metadata.get("skill") if isinstance(metadata, dict) else None
    return skill if isinstance(skill, str) else None


class McpAuthGuard(_Guard):
    """ASGI: authenticates every ``/mcp`` request (per-agent scopes are checked per tool call)."""

    def __init__(self, app: ASGIApp, policy: AuthPolicy, resource_metadata: str, max_body_bytes: int) -> None:
        super().__init__(AuthContextMiddleware(app), policy, resource_metadata, max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            identity = await self._authenticate(scope)
        except AuthenticationError as error:
            await self._refuse(scope, receive, send, error, "mcp")
            return
        self._admit(scope, identity)
        await self.app(scope, receive, send)

    def _body(self, scope: Scope, error: GatewayError) -> dict[str, Any]:
        return {"error": "invalid_token", "error_description": error.detail}  # RFC 6750, as MCP clients read it


class CallerContextBuilder(DefaultServerCallContextBuilder):
    """The SDK's HTTP context builder, with the caller the guard admitted as the user (``auth.caller_of`` reads it)."""

    def build_user(self, request: Request) -> User:
        """The admitted caller, or the SDK's own user (anonymous) for an open agent."""
        user = request.scope.get("user")
        return a2a_user(user.caller) if isinstance(user, CallerUser) else super().build_user(request)


def agent_guard(
    policy: AuthPolicy, spec: AgentSpec, base_url: str, max_body_bytes: int
) -> Callable[[ASGIApp, str], ASGIApp]:
    """The guard of agent ``spec``'s A2A routes (none for an open agent or with auth off)."""
    if not policy.protects(spec):
        return lambda app, prefix: app
    metadata = protected_resource_metadata_url(base_url)
    return lambda app, prefix: AgentAuthGuard(app, prefix, spec, policy, metadata, max_body_bytes)
