"""2025-11-25 replies that carry only their JSON-RPC response go out as JSON; anything else stays SSE."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from gateway.bindings.mcp_framing import JsonWhenSilent, response_data
from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings

LEGACY = "2025-11-25"
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
SSE_HEAD = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache, no-transform")]
SESSION = (b"mcp-session-id", b"abc")
RESPONSE = b'{"jsonrpc":"2.0","id":1,"result":{}}'
PROGRESS = b'{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}'


def frame(data: bytes) -> bytes:
    return b"event: message\r\ndata: " + data + b"\r\n\r\n"


def sse_app(*chunks: bytes) -> Any:
    """An ASGI app answering as the SDK's 2025 transport does: an SSE head, the chunks, the end."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [*SSE_HEAD, SESSION]})
        for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    return app


async def serve(app: Any, method: str = "POST", headers: list[tuple[bytes, bytes]] | None = None) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "headers": headers or [], "path": "/mcp"}
    await JsonWhenSilent(app)(scope, receive, send)
    return sent


def test_response_data_takes_one_response_event_only() -> None:
    assert response_data(frame(RESPONSE)) == RESPONSE
    assert response_data(frame(b'{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}')) is not None
    assert response_data(frame(PROGRESS)) is None  # a notification
    assert response_data(frame(b'{"jsonrpc":"2.0","id":7,"method":"elicitation/create"}')) is None  # a request
    assert response_data(b": ping\r\n\r\n") is None
    assert response_data(b"id: 1\r\ndata: \r\n\r\n") is None  # a priming event
    assert response_data(frame(RESPONSE) + frame(RESPONSE)) is None
    assert response_data(frame(b"{not json")) is None


async def test_a_reply_with_only_its_response_is_json() -> None:
    sent = await serve(sse_app(frame(RESPONSE)))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    headers = dict(sent[0]["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert headers[b"content-length"] == str(len(RESPONSE)).encode()
    assert headers[b"mcp-session-id"] == b"abc" and b"cache-control" not in headers
    assert sent[1] == {"type": "http.response.body", "body": RESPONSE, "more_body": False}


@pytest.mark.parametrize(
    "chunks",
    [(frame(PROGRESS), frame(RESPONSE)), (b": ping\r\n\r\n", frame(RESPONSE)), (frame(RESPONSE), frame(RESPONSE))],
    ids=["progress-first", "ping-first", "two-events"],
)
async def test_anything_else_stays_the_stream_the_sdk_wrote(chunks: tuple[bytes, ...]) -> None:
    expected = await _unwrapped(sse_app(*chunks))
    assert await serve(sse_app(*chunks)) == expected


async def test_modern_requests_and_gets_pass_through() -> None:
    app = sse_app(frame(RESPONSE))
    expected = await _unwrapped(app)
    assert await serve(app, headers=[(b"mcp-protocol-version", b"2026-07-28")]) == expected
    assert await serve(app, method="GET") == expected


async def test_what_is_held_is_sent_when_the_app_stops_early() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEAD})
        await send({"type": "http.response.body", "body": frame(RESPONSE), "more_body": True})

    assert await serve(app) == await _unwrapped(app)


async def _unwrapped(app: Any) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app({"type": "http", "method": "POST", "headers": []}, None, send)
    return sent


# --- end to end, on a real gateway ------------------------------------------------------------------


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, mcp_tools=["echo"])) as running:
        yield running


async def _session(client: httpx.AsyncClient, url: str) -> dict[str, str]:
    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}
    r = await client.post(
        url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, headers=ACCEPT
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    headers = {**ACCEPT, "Mcp-Session-Id": r.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    r = await client.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert r.status_code == 202
    return headers


async def test_a_session_call_without_progress_is_answered_with_json(gateway: RunningGateway) -> None:
    url = f"{gateway.url}/mcp"
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await _session(client, url)
        call = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"}},
        }
        r = await client.post(url, json=call, headers=headers)
    assert r.headers["content-type"] == "application/json"
    assert r.headers["mcp-session-id"] == headers["Mcp-Session-Id"]
    assert r.json()["result"]["structuredContent"]["text"] == "hi"


async def test_a_session_call_with_progress_streams_it(gateway: RunningGateway) -> None:
    url = f"{gateway.url}/mcp"
    params = {"name": "echo", "arguments": {"text": "hi"}, "_meta": {"progressToken": "p1"}}
    async with httpx.AsyncClient(timeout=30) as client:
        headers = await _session(client, url)
        r = await client.post(
            url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}, headers=headers
        )
    assert r.headers["content-type"].startswith("text/event-stream")
    messages = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert messages[0]["method"] == "notifications/progress" and messages[0]["params"]["progressToken"] == "p1"
    assert messages[-1]["id"] == 1 and messages[-1]["result"]["structuredContent"]["text"] == "hi"
