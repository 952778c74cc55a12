"""MCP arms: the gateway's MCP tools through MCP's own client, over HTTP and stdio, in both protocol eras.

Over HTTP the client talks to a real gateway (uvicorn on a free port); over stdio it spawns
``python -m gateway mcp``. ``legacy`` is the 2025-11-25 handshake (sessions, server-to-client
requests); ``2026-07-28`` is the stateless revision (per-request ``_meta``, ``InputRequiredResult``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, SubscribeToTaskRequest, Task, TaskState
from a2a.utils.errors import A2AError
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters

from gateway.settings import DEFAULT_MCP_TOOLS
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.conftest import make_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
STREAMING = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
ENDED = {TaskState.TASK_STATE_CANCELED, TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED}
WAIT_TIMEOUT_S = 20
MODERN = "2026-07-28"
TEST_TOOLS = [*DEFAULT_MCP_TOOLS, "echo"]


async def task_once_ended(gateway: RunningGateway, agent: str, task_id: str) -> Task:
    """The A2A task once it has ended: followed over A2A streaming, then read with GetTask."""
    async with a2a_client(gateway.agent_url(agent), STREAMING) as client:
        with anyio.fail_after(WAIT_TIMEOUT_S):
            task = await client.get_task(GetTaskRequest(id=task_id))
            if task.status.state not in ENDED:
                try:
                    async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                        status = event.status_update.status if event.HasField("status_update") else event.task.status
                        if status.state in ENDED:
                            break
                except A2AError:
                    pass  # it ended between the read and the subscription: nothing left to stream
            return await client.get_task(GetTaskRequest(id=task_id))


@dataclass(frozen=True)
class Arm:
    """How a test reaches the MCP tools."""

    transport: str  # "http" | "stdio"
    mode: str  # "legacy" (2025-11-25) | "2026-07-28"

    @property
    def id(self) -> str:
        return f"{self.transport}-{'2025' if self.mode == 'legacy' else '2026'}"


HTTP_ARMS = [Arm("http", "legacy"), Arm("http", MODERN)]
ARMS = [*HTTP_ARMS, Arm("stdio", "legacy"), Arm("stdio", MODERN)]


@dataclass(frozen=True)
class McpTarget:
    """A served set of MCP tools and the way to connect to it."""

    arm: Arm
    server: str | StdioServerParameters
    gateway: RunningGateway | None = None

    def client(self, **options: Any) -> Client:
        """MCP's client for this arm (``elicitation_callback``, ``message_handler``, ... pass through)."""
        return Client(self.server, mode=self.arm.mode, read_timeout_seconds=60, **options)

    @property
    def modern(self) -> bool:
        return self.arm.mode == MODERN


def stdio_server(data_dir: Path, tools: list[str]) -> StdioServerParameters:
    """``python -m gateway mcp`` with its settings in the environment."""
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_MCP_TOOLS": ",".join(tools),
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "PYTHONPATH": str(REPO_ROOT),
    }
    return StdioServerParameters(command=sys.executable, args=["-m", "gateway", "mcp"], env=env, cwd=str(REPO_ROOT))


async def _target(arm: Arm, tmp_path: Path) -> AsyncIterator[McpTarget]:
    if arm.transport == "stdio":
        yield McpTarget(arm, stdio_server(tmp_path / "data", TEST_TOOLS))
        return
    async with running_gateway(make_settings(tmp_path, mcp_tools=TEST_TOOLS)) as gateway:
        yield McpTarget(arm, f"{gateway.url}/mcp", gateway)


@pytest.fixture(params=ARMS, ids=lambda arm: arm.id)
async def mcp(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[McpTarget]:
    """The gateway's MCP tools on every arm (the bundled agents, plus echo as a tool)."""
    async for target in _target(request.param, tmp_path):
        yield target


@pytest.fixture(params=HTTP_ARMS, ids=lambda arm: arm.id)
async def mcp_http(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[McpTarget]:
    """The HTTP arms only: the test also looks at the A2A side of the same gateway."""
    async for target in _target(request.param, tmp_path):
        yield target
