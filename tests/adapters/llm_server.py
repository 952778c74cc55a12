"""A scripted OpenAI-compatible chat-completions server on loopback, for testing the ``llm`` runtime.

Each request takes the next scripted answer (a stream of events, an HTTP error, or a stream
that stalls) and is recorded with its headers and JSON body.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gateway.testing import STARTUP_TIMEOUT_S, free_socket

Event = dict[str, Any] | str  # a JSON chunk sent as ``data: {...}``, or raw text written as is


@dataclass(frozen=True)
class Stream:
    """A 200 event stream of ``events``, ended by ``data: [DONE]`` unless ``done`` is false."""

    events: list[Event]
    done: bool = True
    stall: bool = False  # after the events, send nothing more until the client gives up


@dataclass(frozen=True)
class Status:
    """An HTTP error answer."""

    code: int
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)


Answer = Stream | Status


@dataclass(frozen=True)
class Received:
    """One request the server received."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]


def text_chunk(content: str, finish: str | None = None) -> dict[str, Any]:
    """A streamed chunk carrying a text delta."""
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
    }


def tool_chunk(index: int, *, name: str = "", arguments: str = "", call_id: str = "") -> dict[str, Any]:
    """A streamed chunk carrying one piece of a tool call."""
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if name:
        piece.update(id=call_id or f"call_{index}", type="function")
        piece["function"]["name"] = name
    return {"choices": [{"index": 0, "delta": {"tool_calls": [piece]}, "finish_reason": None}]}


def finish_chunk(reason: str = "stop") -> dict[str, Any]:
    """The chunk that ends the choice."""
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    """The final usage chunk sent with ``stream_options.include_usage``."""
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


CHUNK_FIELDS = {
    "id": "chatcmpl-scripted",
    "object": "chat.completion.chunk",
    "created": 1767225600,
    "model": "scripted",
}
"""What every real chunk carries besides its choices (SDKs such as ``openai`` and Agent Framework read them)."""


def _sse(event: Event) -> str:
    return event if isinstance(event, str) else f"data: {json.dumps({**CHUNK_FIELDS, **event})}\n\n"


class ScriptedChatServer:
    """Replays scripted answers to ``POST /v1/chat/completions`` and records every request."""

    def __init__(self) -> None:
        self.script: list[Answer] = []
        self.received: list[Received] = []
        self.url = ""
        self._release = asyncio.Event()
        self._arrived = asyncio.Event()

    @property
    def base_url(self) -> str:
        """The API base to configure (``.../v1``)."""
        return f"{self.url}/v1"

    def answer(self, *answers: Answer) -> None:
        """Queue answers for the next requests, in order."""
        self.script.extend(answers)

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.received.append(Received(request.url.path, dict(request.headers), body))
        self._arrived.set()
        answer = self.script.pop(0) if self.script else Status(500, "no scripted answer left")
        if isinstance(answer, Status):
            payload = {"error": {"message": answer.message, "type": "scripted"}}
            return JSONResponse(payload, status_code=answer.code, headers=answer.headers)
        return StreamingResponse(self._events(answer), media_type="text/event-stream")

    async def _events(self, stream: Stream) -> AsyncIterator[str]:
        for event in stream.events:
            yield _sse(event)
        if stream.stall:
            await self._release.wait()
        if stream.done:
            yield "data: [DONE]\n\n"

    async def requests(self, count: int) -> list[Received]:
        """The requests received, once there are ``count`` (bound the wait with a timeout)."""
        while len(self.received) < count:
            self._arrived.clear()
            await self._arrived.wait()
        return self.received

    def app(self) -> Starlette:
        """The server's ASGI app."""
        return Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])

    def release(self) -> None:
        """Let stalled streams end (so the server can shut down)."""
        self._release.set()


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.listening.set()


@asynccontextmanager
async def scripted_chat_server() -> AsyncIterator[ScriptedChatServer]:
    """A ``ScriptedChatServer`` served by uvicorn on a free loopback port until the block ends."""
    chat = ScriptedChatServer()
    sock = free_socket()
    chat.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = _Server(uvicorn.Config(chat.app(), log_config=None, access_log=False, timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait([task, listening], timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the scripted chat server did not start")
        yield chat
    finally:
        listening.cancel()
        chat.release()
        server.should_exit = True
        await asyncio.wait_for(task, STARTUP_TIMEOUT_S)
        sock.close()
