"""A public test kit: run a real gateway on a free loopback port inside a test."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.bindings.http_server import server_config
from gateway.runtime import FileOutput
from gateway.settings import Settings

STARTUP_TIMEOUT_S = 15.0


class RecordingEmitter:
    """An ``Emitter`` that remembers what a runtime reported, for testing runtimes directly."""

    def __init__(self) -> None:
        self.progress_messages: list[str] = []
        self.artifacts: list[dict[str, Any]] = []

    async def progress(self, text: str) -> None:
        """Record a progress message."""
        self.progress_messages.append(text)

    async def artifact(
        self,
        name: str,
        *,
        text: str | None = None,
        data: dict[str, Any] | list[Any] | None = None,
        append: bool = False,
        last_chunk: bool | None = None,
        file: FileOutput | None = None,
    ) -> None:
        """Record an artifact (or chunk)."""
        self.artifacts.append(
            {"name": name, "text": text, "data": data, "append": append, "last_chunk": last_chunk, "file": file}
        )

    def chunks(self) -> list[tuple[str, str | None, bool, bool | None]]:
        """Each artifact as ``(name, text, append, last_chunk)``."""
        return [(a["name"], a["text"], a["append"], a["last_chunk"]) for a in self.artifacts]


@dataclass(frozen=True)
class RunningGateway:
    """A gateway serving on loopback for the duration of a test."""

    app: Starlette
    settings: Settings

    @property
    def url(self) -> str:
        """The gateway's base URL."""
        return self.settings.base_url

    def agent_url(self, name: str) -> str:
        """The URL of agent ``name``."""
        return f"{self.url}/agents/{name}"


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    """A listening-ready socket bound to a free port (handed to uvicorn, so no port race)."""
    # IPPROTO_TCP named: asyncio turns Nagle off on the connections it accepts (else a streamed answer's
    # small writes wait ~40 ms for the client's delayed ACK), as serve() does for the gateway's own socket.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server with an event set once it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.listening.set()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn exits the process when the app fails to start; inside a test that is an error.
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        raise RuntimeError(f"the gateway failed to start (uvicorn exit {exc.code}); see the log") from None


@asynccontextmanager
async def running_gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    """Serve ``settings`` with uvicorn on a free port (the given port is replaced) until the block ends."""
    sock = free_socket(settings.host)
    settings = settings.model_copy(update={"port": sock.getsockname()[1]})
    app = create_app(settings)
    server = _Server(server_config(app, settings, log_config=None, access_log=False, timeout_graceful_shutdown=2))
    task = asyncio.create_task(_serve(server, sock))
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait([task, listening], timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the gateway did not start") from (task.exception() if task.done() else None)
        yield RunningGateway(app=app, settings=settings)
    finally:
        listening.cancel()
        server.should_exit = True
        await asyncio.wait_for(task, STARTUP_TIMEOUT_S)
        sock.close()


async def wait_until_ready(http: httpx.AsyncClient, proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    """Wait for a gateway started as a subprocess to answer ``/readyz`` (or fail if it exits).

    A separate process offers no event to wait on, so this polls its port, bounded by ``timeout_s``.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.05)
