"""Real MCP servers for tests: the stdio test server as an agent file names it, and its HTTP twin on uvicorn."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.spec import McpServerSpec
from gateway.testing import STARTUP_TIMEOUT_S, free_socket

HERE = Path(__file__).parent
TOOL_SERVER = HERE / "mcp_tool_server.py"
RAW_SERVER = HERE / "raw_mcp_server.py"
TEST_DIR_ENV = "MCP_TEST_DIR"


def stdio_server(*args: str, name: str = "tools", **fields: Any) -> dict[str, Any]:
    """The agent-file entry of the stdio test server (its evidence goes to ``$MCP_TEST_DIR``)."""
    return {"name": name, "command": [sys.executable, str(TOOL_SERVER), *args], "env": [TEST_DIR_ENV], **fields}


def stdio_spec(*args: str, **fields: Any) -> McpServerSpec:
    """``stdio_server`` as a spec."""
    return McpServerSpec(**stdio_server(*args, **fields))


def evidence(folder: Path, tool: str) -> list[str]:
    """What tool ``tool`` of the stdio server noted (one line per event)."""
    log = folder / f"{tool}.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


class _RequireBearer:
    """Refuses (401) a request whose Authorization is not ``Bearer <token>``, and counts the ones let in."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app, self.token, self.admitted = app, token, 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"authorization", b"").decode() != f"Bearer {self.token}":
                await send({"type": "http.response.start", "status": 401, "headers": []})
                await send({"type": "http.response.body", "body": b"no"})
                return
            self.admitted += 1
        await self.app(scope, receive, send)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.listening.set()


@asynccontextmanager
async def http_server(token: str) -> AsyncIterator[tuple[str, _RequireBearer]]:
    """The test server over Streamable HTTP on a free loopback port, admitting only ``Bearer <token>``.

    Yields its ``/mcp`` URL and the guard (whose ``admitted`` counts requests let in).
    """
    from tests.adapters.mcp_tool_server import http_app

    guard = _RequireBearer(http_app(), token)
    sock = free_socket()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    server = _Server(uvicorn.Config(guard, log_config=None, access_log=False, timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait([task, listening], timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the MCP test server did not start")
        yield url, guard
    finally:
        listening.cancel()
        server.should_exit = True
        await asyncio.wait_for(task, STARTUP_TIMEOUT_S)
        sock.close()


@contextmanager
def http_server_process(bearer: str = "") -> Iterator[str]:
    """The test server over Streamable HTTP in a process of its own (a gateway built in this loop can
    probe it at start); yields its ``/mcp`` URL. The socket listens before the process starts, so a
    connection waits in its backlog instead of being refused. With ``bearer`` it admits only
    ``Bearer <bearer>``, noting each request it admits (``evidence(folder, "admitted")``)."""
    sock = free_socket()
    sock.listen(16)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    argv = [sys.executable, str(TOOL_SERVER), "--http-fd", str(sock.fileno())]
    process = subprocess.Popen([*argv, "--bearer", bearer] if bearer else argv, pass_fds=[sock.fileno()])
    try:
        yield url
    finally:
        process.terminate()
        process.wait(STARTUP_TIMEOUT_S)
        sock.close()
