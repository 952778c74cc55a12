"""JSON framing for 2025-11-25 ``POST /mcp`` replies that carry nothing but their JSON-RPC response.

The SDK's 2025-era transport answers every request POST of a session with an SSE stream, even
when the handler emits nothing before its response. The spec lets a server answer such a POST
with either ``text/event-stream`` or ``application/json`` (and the client must accept both),
and the SDK's own 2026-07-28 path already chooses after the fact: JSON unless the handler emits
first. This does the same for the 2025 path at the HTTP edge, without touching the protocol:
the SSE response's head is held until its first frame; when that frame is the JSON-RPC
response and the stream ends right after it, the reply goes out as one JSON body; anything else
(a progress notification, an elicitation request, a keep-alive ping) releases the stream as the
SDK wrote it. The messages a client receives are the same either way, only their framing differs.

Why it matters: the MCP Python client (mcp 2.3) closes an SSE reply as soon as it has read the
response, before the stream's end, so its HTTP pool cannot reuse the connection and every call
opens a new one (python-sdk issue #3281); a JSON body is read to its end and the connection kept.
"""

from __future__ import annotations

import json
from typing import Final

from mcp.shared.inbound import MCP_PROTOCOL_VERSION_HEADER
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from starlette.types import ASGIApp, Message, Receive, Scope, Send

SSE_TYPE: Final = b"text/event-stream"
_VERSION_HEADER: Final = MCP_PROTOCOL_VERSION_HEADER.lower().encode("latin-1")
_SSE_ONLY_HEADERS: Final = frozenset({b"content-type", b"cache-control", b"x-accel-buffering", b"content-length"})


def _legacy_post(scope: Scope) -> bool:
    """A POST the SDK's 2025-era transport serves: no version header, or a handshake-era one."""
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    version = next((v for k, v in scope["headers"] if k == _VERSION_HEADER), None)
    return version is None or version.decode("latin-1") in HANDSHAKE_PROTOCOL_VERSIONS


def response_data(frame: bytes) -> bytes | None:
    """The JSON of ``frame`` when it is one SSE ``message`` event holding a JSON-RPC response, else None."""
    lines = frame.split(b"\r\n")  # as sse-starlette writes a frame: its fields, then an empty line
    if len(lines) != 4 or lines[0] != b"event: message" or not lines[1].startswith(b"data: ") or any(lines[2:]):
        return None
    data = lines[1][6:]
    try:
        message = json.loads(data)
    except ValueError:
        return None
    if not isinstance(message, dict) or "id" not in message or "method" in message:
        return None
    return data if "result" in message or "error" in message else None


class _Reframer:
    """The ``send`` of one POST: holds an SSE reply's head and first frame until it knows the reply's shape."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self._held: list[Message] = []
        self._data: bytes | None = None
        self._deciding = False
        self._done = False

    async def __call__(self, message: Message) -> None:
        if self._done:
            return
        if message["type"] == "http.response.start":
            self._deciding = _content_type(message) == SSE_TYPE
            if self._deciding:
                self._held.append(message)
                return
        elif self._deciding and message["type"] == "http.response.body":
            more, body = message.get("more_body", False), message.get("body", b"")
            if self._data is None and more and len(self._held) == 1 and (data := response_data(body)) is not None:
                self._held.append(message)
                self._data = data
                return
            if self._data is not None and not more and not body:
                await self._send_json(self._held[0], self._data)
                return
        await self.release()
        await self._send(message)

    async def release(self) -> None:
        """Send what is held as it was written, and stop deciding."""
        held, self._held, self._deciding = self._held, [], False
        for message in held:
            await self._send(message)

    async def _send_json(self, start: Message, data: bytes) -> None:
        self._held, self._deciding, self._done = [], False, True
        headers = [(k, v) for k, v in start.get("headers", ()) if k.lower() not in _SSE_ONLY_HEADERS]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode("ascii"))]
        await self._send({"type": "http.response.start", "status": start["status"], "headers": headers})
        await self._send({"type": "http.response.body", "body": data, "more_body": False})


def _content_type(start: Message) -> bytes:
    value = next((v for k, v in start.get("headers", ()) if k.lower() == b"content-type"), b"")
    return bytes(value).split(b";", 1)[0].strip().lower()


class JsonWhenSilent:
    """ASGI wrapper of the MCP endpoint: 2025-11-25 POST replies with only their response go out as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _legacy_post(scope):
            await self.app(scope, receive, send)
            return
        reframer = _Reframer(send)
        try:
            await self.app(scope, receive, reframer)
        finally:
            await reframer.release()
