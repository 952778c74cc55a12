"""Checks at the edge of an agent's HTTP endpoints, before the SDK sees the request.

The SDK reads any body as JSON whatever its media type and answers an oversized body with an
internal error. Here a wrong media type gets the protocol's ContentTypeNotSupported (-32005 on
JSON-RPC, 415 on REST) and a body over the limit gets 413 before it is read in full.
"""

from __future__ import annotations

from a2a.server.jsonrpc_models import InvalidRequestError
from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.utils.error_handlers import build_rest_error_payload
from a2a.utils.errors import A2AError, ContentTypeNotSupportedError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

JSON_MEDIA_TYPES = frozenset({"application/json", "application/a2a+json"})


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON (parameters such as charset ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_MEDIA_TYPES or media.endswith("+json")


def _is_jsonrpc(scope: Scope) -> bool:
    # JSON-RPC is posted to the agent's URL itself; every other path is the REST binding.
    return bool(scope["path"].rstrip("/") == scope.get("switchboard.agent_prefix"))


def error_response(scope: Scope, status: int, error: A2AError | InvalidRequestError) -> JSONResponse:
    """The error in the caller's binding: a JSON-RPC error object or a REST error payload."""
    if _is_jsonrpc(scope):
        return JSONResponse(build_error_response(None, error), status_code=status)
    assert isinstance(error, A2AError)
    return JSONResponse(build_rest_error_payload(error), status_code=status)


class EdgeGuard:
    """Media-type and body-size checks for one agent's mount."""

    def __init__(self, app: ASGIApp, prefix: str, max_body_bytes: int) -> None:
        self.app = app
        self.prefix = prefix
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["switchboard.agent_prefix"] = self.prefix
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "application/json")
        if not is_json(content_type):
            error = ContentTypeNotSupportedError(
                message=f"Content-Type {content_type!r} is not supported; send application/json"
            )
            await error_response(scope, 200 if _is_jsonrpc(scope) else 415, error)(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._reject_size(scope, receive, send, int(declared))
            return
        if declared is None:
            body = await self._read_capped(receive)
            if body is None:
                await self._reject_size(scope, receive, send, None)
                return
            receive = _replay(body)
        await self.app(scope, receive, send)

    async def _read_capped(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _reject_size(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        told = f"{size} bytes" if size is not None else "the body"
        text = f"Payload too large: {told} exceeds the limit of {self.max_body_bytes} bytes"
        if _is_jsonrpc(scope):
            response = error_response(scope, 413, InvalidRequestError(message=text))
        else:
            payload = {"error": {"code": 413, "status": "RESOURCE_EXHAUSTED", "message": text}}
            response = JSONResponse(payload, status_code=413)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
