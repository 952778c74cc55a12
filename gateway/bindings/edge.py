"""Checks at the edge of an agent's HTTP endpoints, before the SDK sees the request.

The SDK reads any body as JSON whatever its media type and answers an oversized body with an
internal error. Here a wrong media type gets the protocol's ContentTypeNotSupported (-32005 on
JSON-RPC, 415 on REST) and a body over the limit gets 413 before it is read in full.

The SDK also answers a body that is not UTF-8, or JSON nested so deep that Python's parser
gives up, with an internal error (-32603, or 500 on REST). Here such a body is the client's
mistake: -32700 (parse error) on JSON-RPC, 400 on REST, before the SDK reads it.

The SDK also labels every HTTP+JSON (REST) result ``application/a2a+json``, while the binding
(spec section 11.1) uses ``application/json`` for requests and responses. REST responses are
labelled ``application/json`` unless the client's ``Accept`` prefers ``application/a2a+json``.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl

from a2a.server import jsonrpc_models
from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.utils.error_handlers import build_rest_error_payload
from a2a.utils.errors import A2AError, ContentTypeNotSupportedError, InvalidRequestError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_JSON_DEPTH = 100
"""Deepest nesting of arrays and objects a request body may have (protobuf's own parser stops at 100)."""
DRAIN_BYTES = 1024 * 1024  # at least this much of a refused body is read and dropped, see EdgeGuard._drain
JSON_MEDIA_TYPE = "application/json"
A2A_JSON_MEDIA_TYPE = "application/a2a+json"
JSON_MEDIA_TYPES = frozenset({JSON_MEDIA_TYPE, A2A_JSON_MEDIA_TYPE})


def is_json(content_type: str) -> bool:
    """Whether a Content-Type names JSON (parameters such as charset ignored)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_MEDIA_TYPES or media.endswith("+json")


def _accept_quality(accept: str, media_type: str) -> float:
    """The quality ``accept`` gives ``media_type``: that of its most specific matching range."""
    kind = media_type.split("/", 1)[0]
    best, quality = -1, 0.0
    for item in accept.split(","):
        media, *params = (p.strip() for p in item.split(";"))
        media = media.lower()
        specificity = 2 if media == media_type else 1 if media == f"{kind}/*" else 0 if media == "*/*" else -1
        if specificity <= best:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        best, quality = specificity, q
    return quality


def rest_media_type(accept: str | None) -> str:
    """The media type of a REST JSON result: ``application/json`` unless ``accept`` prefers the A2A one."""
    if not accept:
        return JSON_MEDIA_TYPE
    if _accept_quality(accept, A2A_JSON_MEDIA_TYPE) > _accept_quality(accept, JSON_MEDIA_TYPE):
        return A2A_JSON_MEDIA_TYPE
    return JSON_MEDIA_TYPE


def _relabel(send: Send, media_type: str) -> Send:
    """``send`` with an ``application/a2a+json`` response labelled ``media_type`` (and ``Vary: Accept``)."""

    async def relabelled(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[tuple[bytes, bytes]] = []
            negotiated = False
            for name, value in message.get("headers", []):
                if name.lower() == b"content-type":
                    media, sep, params = value.decode("latin-1").partition(";")
                    if media.strip().lower() == A2A_JSON_MEDIA_TYPE:
                        value = f"{media_type}{sep}{params}".encode("latin-1")
                        negotiated = True
                headers.append((name, value))
            if negotiated:
                vary = [v for n, v in headers if n.lower() == b"vary"]
                if not any(b"accept" in (t.strip().lower() for t in v.split(b",")) for v in vary):
                    headers.append((b"vary", b"Accept"))
            message = {**message, "headers": headers}
        await send(message)

    return relabelled


def _is_jsonrpc(scope: Scope) -> bool:
    # JSON-RPC is posted to the agent's URL itself; every other path is the REST binding.
    return bool(scope["path"].rstrip("/") == scope.get("switchboard.agent_prefix"))


def error_response(scope: Scope, status: int, error: A2AError | jsonrpc_models.JSONRPCError) -> JSONResponse:
    """The error in the caller's binding: a JSON-RPC error object or a REST error payload."""
    if _is_jsonrpc(scope):
        return JSONResponse(build_error_response(None, error), status_code=status)
    assert isinstance(error, A2AError)
    return JSONResponse(build_rest_error_payload(error), status_code=status)


class EdgeGuard:
    """Media-type and body-size checks, and REST response labelling, for one agent's mount."""

    def __init__(self, app: ASGIApp, prefix: str, max_body_bytes: int) -> None:
        self.app = app
        self.prefix = prefix
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["switchboard.agent_prefix"] = self.prefix
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if not _is_jsonrpc(scope):
            send = _relabel(send, rest_media_type(headers.get("accept")))
        if not _is_jsonrpc(scope) and (problem := query_problem(scope.get("query_string", b""))):
            await error_response(scope, 400, InvalidRequestError(message=problem))(scope, receive, send)
            return
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
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
        body = await self._read_capped(receive)
        if body is None:
            await self._reject_size(scope, receive, send, None)
            return
        problem = json_problem(body)
        if problem is not None:
            if _is_jsonrpc(scope):
                response = error_response(scope, 200, jsonrpc_models.JSONParseError(message=problem))
            else:
                response = error_response(scope, 400, InvalidRequestError(message=problem))
            await response(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)

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
                if message.get("more_body", False):
                    await self._drain(receive)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _drain(self, receive: Receive) -> None:
        """Read and drop the rest of a refused body, up to the larger of the limit and ``DRAIN_BYTES``.

        Closing the connection with request bytes still unread makes the kernel reset it, and
        the client then sees a broken connection instead of the 413.
        """
        dropped, budget = 0, max(self.max_body_bytes, DRAIN_BYTES)
        while dropped <= budget:
            message = await receive()
            if message["type"] != "http.request":
                return
            dropped += len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    async def _reject_size(self, scope: Scope, receive: Receive, send: Send, size: int | None) -> None:
        told = f"{size} bytes" if size is not None else "the body"
        text = f"Payload too large: {told} exceeds the limit of {self.max_body_bytes} bytes"
        if _is_jsonrpc(scope):
            response = error_response(scope, 413, jsonrpc_models.InvalidRequestError(message=text))
        else:
            payload = {"error": {"code": 413, "status": "RESOURCE_EXHAUSTED", "message": text}}
            response = JSONResponse(payload, status_code=413)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


INT_QUERY_PARAMETERS = frozenset({"historyLength", "pageSize"})
_INT32 = range(-(2**31), 2**31)


def query_problem(query: bytes) -> str | None:
    """What is wrong with a REST query's integer parameters (the v0.3 adapter answers a bad one with 500)."""
    if not query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name in INT_QUERY_PARAMETERS:
            text = value.strip()
            if not re.fullmatch(r"-?[0-9]{1,11}", text) or int(text) not in _INT32:
                return f"query parameter {name} must be a 32-bit integer, not {value[:40]!r}"
    return None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_problem(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why ``body`` cannot be read as JSON before parsing it: not UTF-8, or nested past ``max_depth``.

    Anything else wrong with it is left to the parser, which says so as a parse error.
    """
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (byte {exc.start}); send JSON encoded as UTF-8"
    if json.detect_encoding(body) not in ("utf-8", "utf-8-sig"):
        return "the body looks like UTF-16 or UTF-32 (it has NUL bytes where JSON has none); send JSON encoded as UTF-8"
    if _lone_surrogate(body):
        return "the JSON has a \\u escape of half a UTF-16 surrogate pair, which no string can hold"
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return None  # cannot be deeper than it has brackets: the common case costs two scans in C
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub(b"", body)):
        depth += 1 if bracket.group() in b"[{" else -1
        if depth > max_depth:
            return f"the JSON is nested deeper than {max_depth} levels"
    return None


_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]")
_ESCAPE = re.compile(rb"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def _lone_surrogate(body: bytes) -> bool:
    """Whether a ``\\uD800``-``\\uDFFF`` escape in ``body`` is not half of a pair (escaped emoji are pairs)."""
    if not _SURROGATE_HINT.search(body):
        return False
    waiting = -1  # where the low half of a high surrogate just read must start
    for escape in _ESCAPE.finditer(body):
        code = int(escape.group(1), 16) if escape.group(1) else -1
        if waiting >= 0:
            if escape.start() != waiting or not 0xDC00 <= code <= 0xDFFF:
                return True
            waiting = -1
        elif 0xD800 <= code <= 0xDBFF:
            waiting = escape.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return True
    return waiting >= 0


def _replay(body: bytes, then: Receive) -> Receive:
    """``receive`` handing the app ``body`` whole, then ``then``'s messages (the client's real disconnect).

    Answering a second call with a disconnect of our own would end a streamed response after its
    first event, as if the client had left.
    """
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return await then()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive
