"""A peer that misbehaves on purpose, on loopback: it drips its card or catalog, never answers, or answers garbage.

``FakePeer`` serves signed cards at ``/agents/<name>/.well-known/agent-card.json`` and takes A2A
calls at ``/agents/<name>`` (JSON-RPC), each the way its attributes say. It runs on a
``BackgroundLoop`` (a thread of its own), so a gateway that blocks its loop while it imports is
still answered. Everything it does is bounded: a drip stops after ``DRIP_LIMIT_S`` and a silent
call ends when its client leaves or the peer is stopped.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from typing import Any, Literal

import grpc
import grpc.aio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.cards.keys import KeyRing, SigningKey
from gateway.cards.signing import sign_card_dict

DRIP_S = 0.2
DRIP_LIMIT_S = 60.0
CHUNK = 64 * 1024
GARBAGE = b"\xff\xfe\x00not json\x80\x81"

Call = Literal["silent", "garbage", "first-event-then-silent", "quiet-task", "huge-answer"]


class FakePeer:
    """One misbehaving peer gateway (see the module docstring)."""

    def __init__(self, *, streaming: bool = True) -> None:
        self.ring = KeyRing((SigningKey.generate("ES256"),))
        self.other_ring = KeyRing((SigningKey.generate("ES256"),))
        self.streaming = streaming
        self.url = ""
        self.card_mode: Literal["ok", "drip", "huge"] = "ok"
        self.catalog_mode: Literal["ok", "drip", "huge"] = "ok"
        self.huge_bytes = 64 * 1024 * 1024
        self.call_mode: Call = "silent"
        self.quiet_polls = 0
        """``quiet-task``: GetTask answers WORKING this many times, then COMPLETED (streams stay silent)."""
        self.get_tasks = 0
        self.grpc_url = ""
        """When set, the cards offer gRPC there (``SilentGrpcPeer``) instead of JSON-RPC here."""
        self.unreachable_url = ""
        """Where the card of agent ``down`` says calls go (a closed port: the agent is unreachable)."""
        self.huge_sent = 0
        self.open_calls = 0
        self.calls = threading.Event()
        self.calls_closed = threading.Event()
        self.stopped = threading.Event()

    def app(self) -> Starlette:
        """The peer's routes."""
        return Starlette(
            routes=[
                Route("/.well-known/api-catalog", self._catalog),
                Route("/agents/{name}/.well-known/agent-card.json", self._card),
                Route("/agents/{name}", _Asgi(self._call), methods=["POST"]),
            ]
        )

    def jwks(self) -> dict[str, Any]:
        """The keys its genuine cards are signed with (a trust anchor for it)."""
        return self.ring.jwks()

    def card(self, name: str) -> dict[str, Any]:
        """The card of agent ``name``, unsigned."""
        interface = {
            "url": self.unreachable_url if name == "down" else f"{self.url}/agents/{name}",
            "protocolBinding": "JSONRPC",
            "protocolVersion": "1.0",
        }
        if self.grpc_url:
            interface = {"url": self.grpc_url, "protocolBinding": "GRPC", "protocolVersion": "1.0", "tenant": name}
        return {
            "name": name,
            "description": f"The {name} agent of a misbehaving peer.",
            "version": "1.0.0",
            "supportedInterfaces": [interface],
            "capabilities": {"streaming": self.streaming},
            "defaultInputModes": ["text/plain"],
            "defaultOutputModes": ["text/plain"],
            "skills": [{"id": name, "name": name, "description": f"what {name} does", "tags": ["peer"]}],
        }

    def card_bytes(self, name: str) -> bytes:
        """The served card: signed with the peer's key (``forged``: with another key)."""
        ring = self.other_ring if name == "forged" else self.ring
        return json.dumps(sign_card_dict(self.card(name), ring)).encode()

    async def _card(self, request: Request) -> Response:
        body = self.card_bytes(request.path_params["name"])
        if self.card_mode == "drip":
            return StreamingResponse(self._drip(body), media_type="application/json")
        if self.card_mode == "huge":
            return StreamingResponse(self._huge(), media_type="application/json")
        return Response(body, media_type="application/json", headers={"Cache-Control": "max-age=300"})

    async def _catalog(self, request: Request) -> Response:
        items = [{"href": f"{self.url}/agents/echo/.well-known/agent-card.json", "title": "echo"}]
        body = json.dumps({"linkset": [{"anchor": f"{self.url}/.well-known/api-catalog", "item": items}]}).encode()
        if self.catalog_mode == "drip":
            return StreamingResponse(self._drip(body), media_type="application/linkset+json")
        if self.catalog_mode == "huge":
            return StreamingResponse(self._huge(), media_type="application/linkset+json")
        return Response(body, media_type="application/linkset+json")

    async def _drip(self, body: bytes) -> AsyncIterator[bytes]:
        # One byte every DRIP_S: each read is quick, the whole body never comes (within DRIP_LIMIT_S).
        for index in range(min(len(body), int(DRIP_LIMIT_S / DRIP_S))):
            if self.stopped.is_set():
                return
            yield body[index : index + 1]
            await asyncio.sleep(DRIP_S)

    async def _huge(self) -> AsyncIterator[bytes]:
        yield b'{"linkset": [{"item": ['
        chunk = b'{"href": "/x", "title": "x"},' * (CHUNK // 29)
        while self.huge_sent < self.huge_bytes and not self.stopped.is_set():
            self.huge_sent += len(chunk)
            yield chunk
            await asyncio.sleep(0)  # a send after the client left returns at once: let the disconnect be seen

    async def _call(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.open_calls += 1
        self.calls.set()
        try:
            body = await _body(receive)
            if self.call_mode == "garbage":
                await Response(GARBAGE, media_type="application/json")(scope, receive, send)
            elif self.call_mode == "huge-answer":
                media_type = "text/event-stream" if self.streaming else "application/json"
                await StreamingResponse(self._huge(), media_type=media_type)(scope, receive, send)
            elif self.call_mode == "quiet-task" and json.loads(body).get("method") == "GetTask":
                await JSONResponse(self._task_answer(json.loads(body)))(scope, receive, send)
            elif self.call_mode in ("first-event-then-silent", "quiet-task"):
                await StreamingResponse(self._first_event(body), media_type="text/event-stream")(scope, receive, send)
            else:
                await _until_disconnect(receive)
        finally:
            self.open_calls -= 1
            if self.open_calls == 0:
                self.calls_closed.set()

    def _task_answer(self, request: dict[str, Any]) -> dict[str, Any]:
        # A long task that emits nothing: alive (WORKING) when asked, until it completes.
        self.get_tasks += 1
        state = "TASK_STATE_WORKING" if self.get_tasks <= self.quiet_polls else "TASK_STATE_COMPLETED"
        task = {"id": "remote-1", "contextId": "ctx-1", "status": {"state": state}}
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": task}

    async def _first_event(self, body: bytes) -> AsyncIterator[bytes]:
        request = json.loads(body)
        task = {"id": "remote-1", "contextId": "ctx-1", "status": {"state": "TASK_STATE_WORKING"}}
        event = {"jsonrpc": "2.0", "id": request.get("id"), "result": {"task": task}}
        yield f"data: {json.dumps(event)}\n\n".encode()
        await asyncio.sleep(DRIP_LIMIT_S)  # then nothing more, until the client leaves (the response is cancelled)


class _Asgi:
    """A plain ASGI endpoint (Starlette's ``Route`` hands it the raw scope, receive and send)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


async def _body(receive: Receive) -> bytes:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if message["type"] != "http.request" or not message.get("more_body"):
            return body


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class SilentGrpcPeer(grpc.GenericRpcHandler):
    """A gRPC server that takes every call and never answers it (until the caller gives up)."""

    def __init__(self) -> None:
        self.open_calls = 0
        self.calls = asyncio.Event()
        self.calls_closed = asyncio.Event()
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((self,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        """Every method: unary-stream for the streaming ones, unary-unary for the rest, raw bytes."""
        method = str(handler_call_details.method)  # type: ignore[attr-defined]
        if method.endswith(("SendStreamingMessage", "SubscribeToTask")):
            return grpc.unary_stream_rpc_method_handler(self._stream)
        return grpc.unary_unary_rpc_method_handler(self._unary)

    async def _silence(self) -> None:
        self.open_calls += 1
        self.calls.set()
        try:
            await asyncio.sleep(DRIP_LIMIT_S)  # cancelled when the caller cancels or its deadline passes
        finally:
            self.open_calls -= 1
            if self.open_calls == 0:
                self.calls_closed.set()

    async def _unary(self, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        await self._silence()
        return b""

    async def _stream(self, request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
        await self._silence()
        yield b""
