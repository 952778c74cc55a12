"""Two (three) organisations on loopback: gateway processes, a TCP proxy that can drop connections, helper servers.

Each organisation is a real ``python -m gateway serve`` process with its own data dir, signing
keys, agents folder and credentials. The helper servers (a card forger, an OAuth token endpoint)
and the proxy run on one background event loop in this process, so the tests' own loops stay free.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
import yaml
from starlette.applications import Starlette

from gateway.testing import free_socket

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 45.0
POLL_S = 0.05  # polling a subprocess's port: there is no event to wait on

T = TypeVar("T")


def free_port() -> int:
    """A port free right now on loopback (for a process that must know its port before it starts)."""
    sock = free_socket()
    port = int(sock.getsockname()[1])
    sock.close()
    return port


class BackgroundLoop:
    """An event loop on a thread of its own, for servers the tests talk to through their own loops."""

    def __init__(self) -> None:
        self._servers: list[uvicorn.Server] = []
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="federation-tests", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the background loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def serve(self, app: Starlette) -> str:
        """Serve ``app`` with uvicorn on a free port; its base URL."""
        sock = free_socket()
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(server.serve(sockets=[sock])))
        port = sock.getsockname()[1]
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("a helper server did not start")
            time.sleep(POLL_S)
        self._servers.append(server)
        return f"http://127.0.0.1:{port}"

    def close(self) -> None:
        """Stop the servers and the loop."""
        for server in self._servers:
            server.should_exit = True
        time.sleep(0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)


class TcpProxy:
    """Forwards a local port to a target port; ``sever()`` drops every open connection (new ones still work)."""

    def __init__(self, background: BackgroundLoop, target_port: int, port: int) -> None:
        self._background = background
        self._target = target_port
        self.port = port
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.connections = 0
        background.run(self._start())

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(OSError, RuntimeError):
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}

    def sever(self) -> int:
        """Drop every open connection; how many sockets were closed."""

        async def drop() -> int:
            writers = list(self._writers)
            for writer in writers:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.transport.abort()
            self._writers.clear()
            return len(writers)

        return self._background.run(drop())


@dataclass
class Org:
    """One organisation's gateway process."""

    name: str
    folder: Path
    env: dict[str, str]
    port: int
    public_url: str
    proc: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    @property
    def url(self) -> str:
        """Where the gateway listens (not through any proxy)."""
        return f"http://127.0.0.1:{self.port}"

    def agent_url(self, name: str) -> str:
        """An agent's URL on this gateway."""
        return f"{self.url}/agents/{name}"

    def start(self) -> None:
        """Start ``python -m gateway serve`` with this organisation's environment."""
        self.log = self.folder / "gateway.log"
        handle = self.log.open("wb")
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], env=env, cwd=REPO, stdout=handle, stderr=handle
        )

    def wait_ready(self) -> None:
        """Block until ``/readyz`` answers 200 (the process must not exit first)."""
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if http.get("/readyz").status_code == 200:
                        return
                time.sleep(POLL_S)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logged(self) -> str:
        """Everything the process logged so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def jwks(self) -> dict[str, Any]:
        """The organisation's published signing keys."""
        with httpx.Client(timeout=5) as http:
            jwks: dict[str, Any] = http.get(f"{self.url}/.well-known/jwks.json").json()
            return jwks


def org(name: str, root: Path, *, port: int | None = None, public_url: str = "", **env: str) -> Org:
    """An organisation with its own agents folder and data dir under ``root/name``."""
    folder = root / name
    (folder / "agents").mkdir(parents=True)
    port = port or free_port()
    values = {
        "SWITCHBOARD_AGENTS": str(folder / "agents"),
        "SWITCHBOARD_DATA_DIR": str(folder / "data"),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
        "SWITCHBOARD_ROOT_AGENT": "echo",
        "SWITCHBOARD_LOG_LEVEL": "info",
        **env,
    }
    if public_url:
        values["SWITCHBOARD_PUBLIC_URL"] = public_url
    return Org(name=name, folder=folder, env=values, port=port, public_url=public_url or f"http://127.0.0.1:{port}")


def write_yaml(path: Path, value: dict[str, Any]) -> None:
    """Write an agent or peers file."""
    path.write_text(yaml.safe_dump(value, sort_keys=False))


def agent_file(folder: Path, name: str, runtime: dict[str, Any], **extra: Any) -> None:
    """An agent file in ``folder``."""
    value: dict[str, Any] = {
        "format": 1,
        "name": name,
        "description": extra.pop("description", f"The {name} agent of the federation tests."),
        "skills": [{"id": name, "name": name, "description": f"what {name} does", "tags": ["federation"]}],
        "runtime": runtime,
        **extra,
    }
    write_yaml(folder / f"{name}.yaml", value)


def python_agent(folder: Path, name: str, entrypoint: str) -> None:
    """An in-process Python agent."""
    agent_file(folder, name, {"kind": "python", "entrypoint": entrypoint})


def workflow(folder: Path, name: str, pattern: str, participants: list[str], **runtime: Any) -> None:
    """A workflow agent."""
    agent_file(folder, name, {"kind": "workflow", "pattern": pattern, "participants": participants, **runtime})


def jsonrpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC 2.0 request body."""
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


V1 = {"A2A-Version": "1.0"}


async def rpc(http: httpx.AsyncClient, url: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """A JSON-RPC call; the whole response body."""
    response = await http.post(url, json=jsonrpc(method, params), headers=V1)
    body: dict[str, Any] = response.json()
    return body


def dump(value: Any) -> str:
    """Compact JSON, for assertion messages."""
    return json.dumps(value, default=str)[:2000]
