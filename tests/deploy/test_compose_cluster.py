"""The compose stack's two replicas behind its HAProxy, run here without Docker.

Two gateway processes start from the `gateway-local` service's environment through the image's
command, on the test PostgreSQL; the stack's own ``compose/haproxy.cfg`` runs in front of them,
with only its addresses changed (Docker's DNS alias becomes the two processes' loopback ports).
Through the balancer: A2A calls on JSON-RPC and gRPC land on both replicas, a stream is followed
and a task read wherever the requests land, and a 2025-11-25 MCP session keeps working (its
requests go back to the replica that began it), as a 2026-07-28 client does without affinity.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import asyncpg
import httpx
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, SendMessageRequest, SubscribeToTaskRequest, TaskState
from mcp.client import Client as McpClient

from gateway.testing import wait_until_ready
from tests.bindings.a2a_clients import BINDINGS, a2a_client, user_message
from tests.deploy.test_compose import DEPLOY, GATEWAYS, PG_DSN, with_defaults
from tests.deploy.test_image import IMAGE, free_port, image_env, image_process
from tests.store.test_cluster_replicas import Stream, task_id_of

HAPROXY = shutil.which("haproxy")
pytestmark = [
    pytest.mark.skipif(not PG_DSN, reason="SWITCHBOARD_TEST_PG_DSN is not set"),
    pytest.mark.skipif(HAPROXY is None, reason="haproxy is not installed (.ci/run installs it)"),
]
pytest_plugins = ["tests.store.test_cluster_replicas"]  # cluster_dsn: a schema of the module's own
WAIT_S = 30.0


def local_haproxy_config(http_port: int, grpc_port: int, replicas: list[tuple[int, int]]) -> str:
    """The stack's haproxy.cfg with its listening ports and replica addresses moved to this machine."""
    config = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    config = config.replace("bind :8000", f"bind 127.0.0.1:{http_port}").replace(
        "bind :50051", f"bind 127.0.0.1:{grpc_port}"
    )
    http_servers = "\n".join(
        f"  server gateway{n} 127.0.0.1:{http} check inter 2s fall 2 rise 1" for n, (http, _) in enumerate(replicas)
    )
    grpc_servers = "\n".join(
        f"  server gateway-grpc{n} 127.0.0.1:{grpc} proto h2 check port {http} inter 2s fall 2 rise 1"
        for n, (http, grpc) in enumerate(replicas)
    )
    config = re.sub(r"  server-template gateway 2 .*", http_servers, config)
    config = re.sub(r"  server-template gateway-grpc 2 .*", grpc_servers, config)
    return re.sub(r"resolvers docker\n(  .*\n)+", "", config)  # no Docker DNS here


@contextlib.contextmanager
def haproxy(config: Path) -> Iterator[subprocess.Popen[bytes]]:
    assert HAPROXY is not None
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def stack(tmp_path: Path, dsn: str) -> AsyncIterator[str]:
    """Two replicas of `gateway-local` and the balancer in front; the balancer's URL."""
    lb_http, lb_grpc = free_port(), free_port()
    replicas = [(free_port(), free_port()) for _ in range(2)]
    service = GATEWAYS["gateway-local"]
    config = tmp_path / "haproxy.cfg"
    config.write_text(local_haproxy_config(lb_http, lb_grpc, replicas))
    url = f"http://127.0.0.1:{lb_http}"
    with contextlib.ExitStack() as processes:
        for n, (http, grpc) in enumerate(replicas):
            home = tmp_path / f"r{n}"
            home.mkdir()
            env = image_env(IMAGE, home, http) | {k: with_defaults(str(v)) for k, v in service["environment"].items()}
            env |= {
                "SWITCHBOARD_DATABASE_URL": dsn,
                "SWITCHBOARD_PUBLIC_URL": url,  # cards name the balancer, as in the stack
                "SWITCHBOARD_GRPC_PORT": str(grpc),
                "SWITCHBOARD_GRPC_PUBLIC_URL": f"127.0.0.1:{lb_grpc}",
                "SWITCHBOARD_MCP_TOOLS": "echo",
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nothing listens
                "SWITCHBOARD_PORT": str(http),
            }
            proc = processes.enter_context(image_process(env, home))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http}", timeout=10) as direct:
                await wait_until_ready(direct, proc, timeout_s=60)
        balancer = processes.enter_context(haproxy(config))
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            deadline = time.monotonic() + WAIT_S
            while not await _ready_through(http):  # haproxy runs in another process: no event to wait on
                assert balancer.poll() is None, balancer.stderr.read() if balancer.stderr else ""
                assert time.monotonic() < deadline, "the balancer never answered ready"
                await anyio.sleep(0.1)
        yield url


async def _ready_through(http: httpx.AsyncClient) -> bool:
    """Whether /readyz answers 200 through the balancer twice in a row (round robin: both replicas)."""
    for _ in range(2):
        try:
            if (await http.get("/readyz")).status_code != 200:
                return False
        except httpx.HTTPError:
            return False
    return True


async def runners(dsn: str, task_ids: list[str]) -> set[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT runner FROM tasks WHERE id = ANY($1::text[])", task_ids)
        return {row["runner"] for row in rows}
    finally:
        await conn.close()


def test_the_stack_haproxy_config_is_valid_and_balances_the_replicas_the_services_name() -> None:
    assert HAPROXY is not None
    checked = subprocess.run([HAPROXY, "-c", "-f", str(DEPLOY / "compose" / "haproxy.cfg")], capture_output=True)
    assert checked.returncode == 0, checked.stderr
    config = (DEPLOY / "compose" / "haproxy.cfg").read_text()
    for name, gateway in GATEWAYS.items():
        assert gateway["deploy"]["replicas"] == 2, name
        assert "ports" not in gateway, f"{name}: only the balancer publishes the gateway's ports"
        for alias in gateway["networks"]["default"]["aliases"]:
            assert f"{alias}:8000" in config and f"{alias}:50051" in config
    assert "stick match req.hdr(mcp-session-id)" in config and "stick store-response res.hdr(mcp-session-id)" in config


async def test_two_replicas_behind_the_stack_balancer_serve_every_call(tmp_path: Path, cluster_dsn: str) -> None:
    async with stack(tmp_path, cluster_dsn) as url:
        sent = []
        for binding in (b for b in BINDINGS if b.id in ("jsonrpc", "grpc")):
            for _ in range(4):  # a new client (connection) each time: round robin per connection for gRPC
                async with a2a_client(f"{url}/agents/echo", binding) as client:
                    async for event in client.send_message(SendMessageRequest(message=user_message("hi"))):
                        sent.append(task_id_of(event))
        stream_binding = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
        async with (
            a2a_client(f"{url}/agents/echo", stream_binding) as c1,
            a2a_client(f"{url}/agents/echo", stream_binding) as c2,
        ):
            origin = Stream(c1.send_message(SendMessageRequest(message=user_message("wait: 2"))))
            await origin.until(2)
            task_id = task_id_of(origin.events[0])
            followed = Stream(c2.subscribe(SubscribeToTaskRequest(id=task_id)))
            with anyio.fail_after(WAIT_S):
                await origin.reading
                await followed.reading
            read = await c2.get_task(GetTaskRequest(id=task_id))
        async with McpClient(f"{url}/mcp", mode="legacy", read_timeout_seconds=30) as legacy:
            with anyio.fail_after(WAIT_S):
                for _ in range(6):  # every request of the session reaches the replica that holds it
                    listed = await legacy.list_tools()
                echoed = await legacy.call_tool("echo", {"text": "through the balancer"})
        async with McpClient(f"{url}/mcp", mode="2026-07-28", read_timeout_seconds=30) as modern:
            with anyio.fail_after(WAIT_S):
                modern_echo = await modern.call_tool("echo", {"text": "stateless"})

    assert len(await runners(cluster_dsn, sent)) == 2, "the calls landed on both replicas"
    assert followed.events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    assert read.status.state == TaskState.TASK_STATE_COMPLETED
    assert "echo" in {tool.name for tool in listed.tools}
    assert not echoed.is_error and not modern_echo.is_error
