"""The floor of a federated hop: the bare a2a-sdk client calling the bare a2a-sdk server, nothing else.

One A2A hop between two gateways is, at the least, one streaming ``SendMessage`` from an a2a-sdk
client to an a2a-sdk server running the agent: whatever a relay does, it sends that call and the
peer serves it. This module measures that call with no gateway at either end:

* the server is ``bare_sdk_server.py --agent noop --store memory --grpc-port 0``: the SDK's
  ``DefaultRequestHandler`` and ``InMemoryTaskStore`` around the no-op agent of the federation
  benchmark, run by the gateway's ``RuntimeExecutor`` as a gateway runs it (four events), served
  by the SDK's JSON-RPC routes (uvicorn) and its ``GrpcHandler`` (``grpc.aio``);
* the client is the SDK's ``ClientFactory`` client built from the server's card, configured as the
  relay configures its own (``streaming=True``, one binding, the shared ``httpx.AsyncClient`` or an
  insecure ``grpc.aio`` channel), calling ``send_message``; a call ends at the task's final event,
  as a relay's turn does, and the rest of the stream is read in the background, as the relay's is; the
  message carries what a relay's must, the hop count, gateway path and ``traceparent`` in its
  metadata (the peer echoes it in the task's history), but no credential and no headers.

Both ends run as cheaply as the SDK allows, as the gateway runs it: its OpenTelemetry spans off
and its tracing decorators unwrapped (``gateway/telemetry.py``; importing ``gateway`` first does
both), the server without auth, its task store in memory. What one call costs here is what any
relay built on the SDK adds at the least; ``bench_federation.py`` measures it in the same rounds
as the federated step (arms ``floor-jsonrpc`` and ``floor-grpc``). Alone::

    python tests/benchmarks/sdk_hop.py --calls 2000      # p50 and CPU per call, both bindings
"""

from __future__ import annotations

import gateway  # noqa: F401  first: the SDK's spans off and its decorators unwrapped, as in a gateway

# isort: split

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Mapping
from pathlib import Path
from typing import Any

import grpc.aio
import httpx
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.server.agent_execution import RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events import EventQueue
from a2a.types.a2a_pb2 import AgentCard, Message, Part, Role, SendMessageRequest, TaskState
from a2a.utils.constants import TransportProtocol

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.benchmarks.bare_sdk_server import build_executor  # noqa: E402
from tests.benchmarks.bench_a2a import BenchError, free_port  # noqa: E402

BINDINGS = {"floor-jsonrpc": TransportProtocol.JSONRPC.value, "floor-grpc": TransportProtocol.GRPC.value}
START_TIMEOUT_S = 60.0


def _serve(argv: list[str]) -> int:
    """``bare_sdk_server.main`` with ``gateway`` imported first (this module's import did it)."""
    from tests.benchmarks import bare_sdk_server

    return bare_sdk_server.main(argv)


HOP_METADATA = {
    "switchboard": {"hops": 1, "via": ["gw-0123456789abcdef"]},
    "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
}
"""What a relay must carry in each message it sends (``gateway/federation/hops.py``); B echoes it in the task."""


def request() -> SendMessageRequest:
    """What each call sends: the relay's message to its peer (the step's text and the hop metadata)."""
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="go")])
    message.metadata.update(HOP_METADATA)
    return SendMessageRequest(message=message)


class LoopbackProcess:
    """A server subprocess listening on 127.0.0.1:``port`` (set ``port`` and ``proc``)."""

    port: int
    proc: subprocess.Popen[bytes] | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        """Stop the server: terminate, then kill after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class SdkHop(LoopbackProcess):
    """The bare SDK server as a subprocess, and one SDK client per binding in this process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc = None
        self.clients: dict[str, Client] = {}
        self._http: httpx.AsyncClient | None = None
        self._draining: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Start the server (returns at once; ``open`` waits for it)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, str(Path(__file__)), "--serve", "--agent", "noop", "--store", "memory"]
        argv += ["--port", str(self.port), "--grpc-port", "0", "--log-level", "warning"]
        log = (self.folder / "server.log").open("wb")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log)
        log.close()

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client the clients share (after ``open``)."""
        assert self._http is not None, "open first"
        return self._http

    async def open(self) -> None:
        """Wait for the server's card, then build a client per binding from it, as the relay builds its own."""
        assert self.proc is not None
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0, read=None))
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"the bare SDK server exited: {(self.folder / 'server.log').read_text()[-2000:]}")
            try:
                card = await A2ACardResolver(self._http, self.url).get_agent_card()
                break
            except Exception:  # not up yet: any failure means "try again"
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        self.add_clients(card, BINDINGS)

    def add_clients(self, card: AgentCard, arms: Mapping[str, str]) -> None:
        """One client per arm for the agent of ``card``, on the arm's binding (``arms``: arm -> binding)."""
        assert self._http is not None, "open first"
        for arm, binding in arms.items():
            config = ClientConfig(
                streaming=True,
                httpx_client=self._http,
                grpc_channel_factory=grpc.aio.insecure_channel,
                supported_protocol_bindings=[binding],
                use_client_preference=True,
            )
            self.clients[arm] = ClientFactory(config).create(card)

    async def call(self, arm: str) -> str | None:
        """One streaming SendMessage on ``arm``'s binding; None when it completed, else why not.

        It returns at the final event, as the relay does; the rest of the stream (its end, which the
        server sends after its own bookkeeping) is read in the background, as the relay's is.
        """
        events = self.clients[arm].send_message(request())
        state = None
        while state != TaskState.TASK_STATE_COMPLETED:
            try:
                event = await anext(events)
            except StopAsyncIteration:
                return f"ended in state {state}"
            kind = event.WhichOneof("payload")
            if kind == "status_update":
                state = event.status_update.status.state
            elif kind == "task":
                state = event.task.status.state
        drain = asyncio.get_running_loop().create_task(_drain(events))
        self._draining.add(drain)
        drain.add_done_callback(self._draining.discard)
        return None

    async def aclose(self) -> None:
        """Close the clients (not the server: ``stop``)."""
        await asyncio.gather(*self._draining)
        for client in self.clients.values():
            await client.close()
        if self._http is not None:
            await self._http.aclose()


async def _drain(events: AsyncGenerator[object]) -> None:
    async for _ in events:
        pass


class _Dropped(EventQueue):
    """An event queue that keeps nothing: the agent's own work, without a task manager."""

    async def enqueue_event(self, event: Any) -> None:
        return None


async def agent_work_ms(calls: int = 2000) -> float:
    """CPU ms of one run of the no-op agent's executor in-process (its events dropped): part of both arms."""
    executor = build_executor("noop")
    call_context = ServerCallContext()
    started = time.process_time()
    for _ in range(calls):
        ids = {"task_id": str(uuid.uuid4()), "context_id": str(uuid.uuid4())}
        context = RequestContext(call_context, request=request(), **ids)
        await executor.execute(context, _Dropped())
    return (time.process_time() - started) * 1000 / calls


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _standalone(calls: int, folder: Path) -> None:
    hop = SdkHop(folder)
    hop.start()
    try:
        await hop.open()
        for arm in BINDINGS:
            for _ in range(200):  # warm up
                await hop.call(arm)
            latencies, errors = [], 0
            client0, server0 = time.process_time(), cpu_seconds(hop.pid)
            for _ in range(calls):
                started = time.perf_counter()
                error = await hop.call(arm)
                latencies.append((time.perf_counter() - started) * 1000)
                errors += error is not None
            client = (time.process_time() - client0) * 1000 / calls
            server = (cpu_seconds(hop.pid) - server0) * 1000 / calls
            print(
                f"{arm:<14} calls {calls}  errors {errors}  p50 {statistics.median(latencies):.2f} ms  "
                f"client cpu {client:.2f} ms  server cpu {server:.2f} ms  per call"
            )
        await hop.aclose()
    finally:
        hop.stop()
    print(f"agent work (in-process executor, events dropped): {await agent_work_ms():.3f} ms cpu per run")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return _serve(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per binding")
    args = parser.parse_args(argv)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="bench-sdk-hop-") as tmp:
        asyncio.run(_standalone(args.calls, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
