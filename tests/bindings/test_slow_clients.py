"""Slow clients: a request's headers and body must arrive within their deadlines, idle connections close.

Raw sockets on loopback drip a request a few bytes at a time; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gateway.bindings.http_server import server_config
from gateway.testing import RunningGateway, free_socket, running_gateway
from tests.conftest import make_settings

HEADER_S = 0.5
BODY_S = 1.0
KEEP_ALIVE_S = 0.5
CLOSED_WITHIN_S = 5.0  # far past every deadline above; the old server never closed these at all
BODY = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "nope"}}).encode()
HEAD = (
    b"POST /agents/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nA2A-Version: 1.0\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
)


@pytest.fixture
async def strict(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(
        tmp_path, header_timeout_s=HEADER_S, body_timeout_s=BODY_S, keep_alive_timeout_s=KEEP_ALIVE_S
    )
    async with running_gateway(settings) as running:
        yield running


async def _connect(gateway: RunningGateway) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", gateway.settings.port)


async def _drip(writer: asyncio.StreamWriter, data: bytes, every_s: float = 0.05) -> None:
    """Send ``data`` one byte at a time (the slow client under test); stops when the server closes."""
    for byte in data:
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(every_s)


async def _answer_then_close(reader: asyncio.StreamReader) -> bytes:
    """All the server sends until it closes the connection (bounded)."""
    try:
        return await asyncio.wait_for(reader.read(), CLOSED_WITHIN_S)
    except ConnectionResetError:
        return b""


async def test_a_connection_that_sends_nothing_is_closed(strict: RunningGateway) -> None:
    reader, writer = await _connect(strict)
    answer = await _answer_then_close(reader)
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_headers_dripped_past_their_deadline_are_cut_off(strict: RunningGateway) -> None:
    reader, writer = await _connect(strict)
    drip = asyncio.create_task(_drip(writer, HEAD * 20))  # would take 10 s at this pace
    answer = await _answer_then_close(reader)
    drip.cancel()
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_a_body_dripped_past_its_deadline_is_cut_off(strict: RunningGateway) -> None:
    reader, writer = await _connect(strict)
    writer.write(HEAD)
    drip = asyncio.create_task(_drip(writer, BODY, every_s=0.1))  # would take ~8 s at this pace
    answer = await _answer_then_close(reader)
    drip.cancel()
    assert answer.startswith(b"HTTP/1.1 408")
    writer.close()


async def test_many_dripping_connections_are_all_released(strict: RunningGateway) -> None:
    connections = [await _connect(strict) for _ in range(50)]
    for _, writer in connections[::2]:
        writer.write(HEAD + BODY[:5])  # half stall in the body, half in the headers
    for _, writer in connections[1::2]:
        writer.write(HEAD[:20])
    answers = await asyncio.gather(*(_answer_then_close(reader) for reader, _ in connections))
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers)
    for _, writer in connections:
        writer.close()


async def test_a_prompt_request_is_served_and_an_idle_keep_alive_then_closed(strict: RunningGateway) -> None:
    reader, writer = await _connect(strict)
    writer.write(HEAD + BODY)
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), CLOSED_WITHIN_S)
    assert status.startswith(b"HTTP/1.1 200")
    rest = await _answer_then_close(reader)  # the idle kept-alive connection is closed after KEEP_ALIVE_S
    assert b'"code":-32001' in rest.replace(b" ", b"")
    writer.close()


async def test_a_response_may_take_longer_than_the_read_deadlines(tmp_path: Path) -> None:
    # A slow app on the same server: once the request is in, the deadlines are off.
    async def slow_stream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for n in range(3):
            await asyncio.sleep(BODY_S)  # the app's own slow work: 3 s in all, past both deadlines
            await send({"type": "http.response.body", "body": f"part {n}\n".encode(), "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    settings = make_settings(tmp_path, header_timeout_s=HEADER_S, body_timeout_s=BODY_S)
    sock = free_socket()
    sock.listen()  # connections wait in the backlog until uvicorn accepts them: no wait for its start
    server = uvicorn.Server(server_config(slow_stream, settings, log_config=None, lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with httpx.AsyncClient(timeout=10.0) as http:
            response = await http.post(f"http://127.0.0.1:{sock.getsockname()[1]}/", content=BODY)
        assert response.text == "part 0\npart 1\npart 2\n"
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        sock.close()
