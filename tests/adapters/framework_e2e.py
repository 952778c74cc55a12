"""End-to-end checks for framework adapters: a real gateway serving framework agents from agent files.

A test writes agent files (``agent_file``, ``sequential_file``) into a folder, points the framework
agents at the scripted model server (``SWITCHBOARD_TEST_CHAT_URL``), and talks to the gateway through
a2a-sdk's client (every binding) or MCP's client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from a2a.client import Client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    SendMessageRequest,
    StreamResponse,
    Task,
)
from google.protobuf.json_format import MessageToDict
from mcp.client import Client as McpClient

from gateway.settings import bundled_agents_dir
from gateway.testing import RunningGateway, running_gateway
from tests.adapters.llm_server import ScriptedChatServer, scripted_chat_server
from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, start, user_message
from tests.conftest import make_settings

CHAT_URL_ENV = "SWITCHBOARD_TEST_CHAT_URL"
WAIT_S = 30.0
SKILL = {"id": "work", "name": "Work", "description": "Does the work.", "tags": ["test"], "examples": ["do it"]}
ARMS = [b for b in BINDINGS if b.id in ("jsonrpc", "jsonrpc-sse", "grpc", "grpc-stream")]
STREAMING_ARMS = [b for b in ARMS if b.streaming]


def agent_file(folder: Path, name: str, kind: str, agent: str, **options: Any) -> Path:
    """Write the agent file of framework agent ``name`` (no auth: tests call it anonymously)."""
    runtime: dict[str, Any] = {"kind": kind, "agent": agent}
    if options:
        runtime["options"] = options
    body = {"format": 1, "name": name, "description": f"The {name} test agent.", "security": "none"}
    return _write(folder, name, {**body, "skills": [SKILL], "runtime": runtime})


def sequential_file(folder: Path, name: str, participants: list[str], **limits: Any) -> Path:
    """Write a sequential workflow over ``participants``."""
    runtime: dict[str, Any] = {"kind": "workflow", "pattern": "sequential", "participants": participants}
    if limits:
        runtime["limits"] = limits
    body = {"format": 1, "name": name, "description": f"The {name} workflow.", "security": "none"}
    return _write(folder, name, {**body, "skills": [SKILL], "runtime": runtime})


def _write(folder: Path, name: str, body: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@asynccontextmanager
async def chat_for_agents(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScriptedChatServer]:
    """The scripted model server, named in the environment the test agents read."""
    async with scripted_chat_server() as chat:
        monkeypatch.setenv(CHAT_URL_ENV, chat.base_url)
        yield chat


@asynccontextmanager
async def serving(tmp_path: Path, agents: Path, tools: Iterable[str] = ()) -> AsyncIterator[RunningGateway]:
    """A gateway serving the files in ``agents`` plus the bundled echo agent; ``tools`` also as MCP tools."""
    (agents / "echo.yaml").write_text((bundled_agents_dir() / "echo.yaml").read_text())
    settings = make_settings(tmp_path, agents=agents, mcp_tools=list(tools))
    async with running_gateway(settings) as gateway:
        yield gateway


@dataclass
class Outcome:
    """A task as the server has it, and what its stream showed on the way."""

    task: Task
    progress: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)
    states: list[int] = field(default_factory=list)

    @property
    def state(self) -> int:
        return self.task.status.state

    @property
    def text(self) -> str:
        """The status message's text."""
        return " ".join(p.text for p in self.task.status.message.parts if p.text)

    @property
    def artifact_text(self) -> str:
        return "".join(p.text for a in self.task.artifacts for p in a.parts if p.HasField("text"))

    @property
    def usage(self) -> dict[str, Any]:
        """The usage the final status message reports for budgets."""
        meta = MessageToDict(self.task.status.message.metadata).get("switchboard", {})
        return dict(meta.get("usage", {}))


def _note(outcome: Outcome, event: StreamResponse) -> str:
    if event.HasField("task"):
        outcome.states.append(event.task.status.state)
        return event.task.id
    if event.HasField("status_update"):
        update = event.status_update
        outcome.states.append(update.status.state)
        outcome.progress += [p.text for p in update.status.message.parts if p.text]
        return update.task_id
    if event.HasField("artifact_update"):
        outcome.chunks += [p.text for p in event.artifact_update.artifact.parts if p.HasField("text")]
        return event.artifact_update.task_id
    return ""


async def send(client: Client, text: str, **ids: str) -> Outcome:
    """Send ``text`` (a new task, or a follow-up with ``task_id``), collect the stream, read the task back."""
    outcome = Outcome(Task())
    task_id = ids.get("task_id", "")
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=user_message(text, **ids))):
            task_id = _note(outcome, event) or task_id
        outcome.task = await client.get_task(GetTaskRequest(id=task_id))
    return outcome


async def ask(gateway: RunningGateway, agent: str, binding: Binding, text: str, **ids: str) -> Outcome:
    """``send`` on a fresh client of ``binding``."""
    async with a2a_client(gateway.agent_url(agent), binding) as client:
        return await send(client, text, **ids)


async def cancel_mid_run(
    gateway: RunningGateway, agent: str, binding: Binding, text: str, chat: ScriptedChatServer, requests: int = 1
) -> Task:
    """Start a task, wait until the framework's ``requests``-th model call is under way, cancel; the task then."""
    async with a2a_client(gateway.agent_url(agent), binding) as client, asyncio.timeout(WAIT_S):
        task = await start(client, text)
        await chat.requests(requests)
        await client.cancel_task(CancelTaskRequest(id=task.id))
        return await client.get_task(GetTaskRequest(id=task.id))


def mcp_client(gateway: RunningGateway, **options: Any) -> McpClient:
    """MCP's client on the gateway's Streamable HTTP endpoint."""
    return McpClient(f"{gateway.url}/mcp", read_timeout_seconds=60, **options)
