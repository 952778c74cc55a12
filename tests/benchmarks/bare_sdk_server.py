"""The baseline for ``bench_a2a.py``: a2a-sdk's own server around the gateway's ``echo`` executor.

Nothing of the gateway is used except ``gateway.agents.echo:EchoExecutor``, so that the
benchmark compares the gateway's serving stack (routing, edge checks, its SQLite store, cards)
with the SDK's stock one running the same agent code::

    python tests/benchmarks/bare_sdk_server.py --store memory --port 8001
    python tests/benchmarks/bare_sdk_server.py --store sqlite --data-dir /some/tmp --port 8002
    python tests/benchmarks/bare_sdk_server.py --agent noop --port 8003 --grpc-port 0

``--agent noop`` hosts the no-op agent of ``noop_agent.py`` through the gateway's
``RuntimeExecutor``, exactly as a gateway hosts it (four events: the task, working, the "ok"
artifact, completed; ``echo`` sends three): ``bench_federation.py`` measures its floor with it.

``--store memory`` is the SDK's ``InMemoryTaskStore``; ``--store sqlite`` is the SDK's
``DatabaseTaskStore`` on ``sqlite+aiosqlite`` exactly as the SDK configures it (the SDK sets
no pragmas, so SQLite's defaults apply: rollback journal, ``synchronous=FULL``);
``--sqlite-wal`` adds the gateway's pragmas (WAL, ``synchronous=NORMAL``) for a like-for-like
durability comparison.

JSON-RPC is served at ``/``, HTTP+JSON beside it, the card at ``/.well-known/agent-card.json``.
``--grpc-port N`` (0: a free port) also serves A2A over gRPC with the SDK's ``GrpcHandler``
on the same request handler; the card then lists a GRPC interface with the bound address.
uvicorn runs with the options ``switchboard serve`` uses (no log config, no access log).
The SDK's OpenTelemetry spans follow ``OTEL_INSTRUMENTATION_A2A_SDK_ENABLED`` (the SDK's default:
on); a2a-sdk is imported before ``gateway``, so the gateway's own default (off unless tracing is
configured, ``gateway/telemetry.py``) does not apply here. ``bench_a2a.py --bare-otel`` sets it.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes, create_rest_routes
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types.a2a_pb2 import AgentCapabilities, AgentCard, AgentInterface, AgentProvider, AgentSkill
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from starlette.applications import Starlette

from gateway.agents.echo import EchoExecutor
from gateway.hosting.executor import RuntimeExecutor

HOST = "127.0.0.1"
REPO = Path(__file__).resolve().parents[2]
DESCRIPTIONS = {
    "echo": "Echoes what it is sent (bare a2a-sdk baseline for benchmarks).",
    "noop": "Answers ok at once (bare a2a-sdk baseline for benchmarks).",
}


def build_executor(agent: str) -> AgentExecutor:
    """The executor of ``agent``: ``echo``, or ``noop`` as a gateway runs a ``python`` agent."""
    if agent == "echo":
        return EchoExecutor()
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from tests.benchmarks.noop_agent import noop

    return RuntimeExecutor("noop", noop)


def build_card(base_url: str, grpc_address: str | None, name: str = "echo") -> AgentCard:
    """A card for ``name`` served at ``base_url`` (and ``grpc_address`` when gRPC is on)."""
    interfaces = [
        AgentInterface(
            url=f"{base_url}/", protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_1_0
        ),
        AgentInterface(
            url=base_url, protocol_binding=TransportProtocol.HTTP_JSON.value, protocol_version=PROTOCOL_VERSION_1_0
        ),
    ]
    if grpc_address:
        interfaces.append(
            AgentInterface(
                url=grpc_address, protocol_binding=TransportProtocol.GRPC.value, protocol_version=PROTOCOL_VERSION_1_0
            )
        )
    return AgentCard(
        name=name,
        description=DESCRIPTIONS[name],
        version="1.0.0",
        provider=AgentProvider(organization="Switchboard benchmarks", url=base_url),
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain", "application/json"],
        default_output_modes=["text/plain", "application/json"],
        skills=[AgentSkill(id="echo", name="Echo", description="Repeats the text it receives.", tags=["echo"])],
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _sqlite_store(data_dir: Path, wal: bool) -> tuple[TaskStore, Any]:
    from a2a.server.tasks import DatabaseTaskStore
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import create_async_engine

    data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'sdk.db'}")
    if wal:

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return DatabaseTaskStore(engine), engine


def create_app(args: argparse.Namespace) -> Starlette:
    """The bare SDK app for ``args``."""
    base_url = f"http://{HOST}:{args.port}"
    grpc_port = None
    if args.grpc_port is not None and args.grpc_port >= 0:
        grpc_port = args.grpc_port or _free_port()
    card = build_card(base_url, f"{HOST}:{grpc_port}" if grpc_port else None, args.agent)

    engine = None
    store: TaskStore
    if args.store == "memory":
        store = InMemoryTaskStore()
    else:
        store, engine = _sqlite_store(Path(args.data_dir), args.sqlite_wal)
    handler = DefaultRequestHandler(agent_executor=build_executor(args.agent), task_store=store, agent_card=card)

    routes = [
        *create_agent_card_routes(card),
        *create_jsonrpc_routes(handler, rpc_url="/"),
        *create_rest_routes(handler),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if engine is not None:
            await store.initialize()  # type: ignore[attr-defined]
        grpc_server = None
        if grpc_port:
            import grpc.aio
            from a2a.server.request_handlers import GrpcHandler
            from a2a.types import a2a_pb2_grpc

            grpc_server = grpc.aio.server()
            a2a_pb2_grpc.add_A2AServiceServicer_to_server(GrpcHandler(handler), grpc_server)
            grpc_server.add_insecure_port(f"{HOST}:{grpc_port}")
            await grpc_server.start()
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(1.0)
            await handler.aclose()
            if engine is not None:
                await engine.dispose()

    return Starlette(routes=routes, lifespan=lifespan)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory")
    parser.add_argument("--agent", choices=["echo", "noop"], default="echo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", default=".bench-sdk", help="where --store sqlite keeps sdk.db")
    parser.add_argument("--sqlite-wal", action="store_true", help="add WAL + synchronous=NORMAL pragmas")
    parser.add_argument("--grpc-port", type=int, default=None, help="also serve gRPC (0: a free port)")
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    config = uvicorn.Config(
        create_app(args),
        host=HOST,
        port=args.port,
        log_config=None,
        log_level=args.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
