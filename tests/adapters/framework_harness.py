"""What every framework adapter's end-to-end tests do: real a2a-sdk and MCP clients against a real gateway.

Each framework's test module serves its agents folder (``tests/adapters/frameworks/<framework>``, or
one it writes with ``agent_file`` and ``sequential_file``) with the framework pointed at the scripted
OpenAI-compatible server (``OPENAI_BASE_URL``), queues the model's answers, and checks through these
helpers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from a2a.client import Client
from a2a.types.a2a_pb2 import CancelTaskRequest, GetTaskRequest, SendMessageRequest, Task, TaskState
from google.protobuf.json_format import MessageToDict
from mcp.client import Client as McpClient
from mcp.client import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from gateway.settings import bundled_agents_dir
from gateway.testing import RunningGateway, running_gateway
from tests.adapters.llm_server import ScriptedChatServer, scripted_chat_server
from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, start, user_message
from tests.conftest import make_settings

WAIT_S = 30.0
BY_ID = {b.id: b for b in BINDINGS}
A2A_ARMS = [BY_ID["jsonrpc-sse"], BY_ID["grpc-stream"]]
"""The A2A bindings each framework agent is checked on: JSON-RPC and gRPC, streaming."""
ARMS = [BY_ID["jsonrpc"], BY_ID["jsonrpc-sse"], BY_ID["grpc"], BY_ID["grpc-stream"]]
"""JSON-RPC and gRPC, each unary and streaming."""
SKILL = {"id": "work", "name": "Work", "description": "Does the work.", "tags": ["test"], "examples": ["do it"]}


@dataclass
class Conversation:
    """What one message's stream showed, and the task as the server has it after."""

    task: Task = field(default_factory=Task)
    progress: list[str] = field(default_factory=list)
    chunks: list[str] = field(default_factory=list)  # text of the result artifact's updates, in order

    @property
    def state(self) -> int:
        return self.task.status.state

    @property
    def text(self) -> str:
        """The final status message's text."""
        return "".join(p.text for p in self.task.status.message.parts)

    @property
    def usage(self) -> dict[str, Any]:
        """The usage the gateway reported in the status message's metadata."""
        meta = MessageToDict(self.task.status.message.metadata).get("switchboard", {})
        return dict(meta.get("usage", {}))

    def artifact_text(self, name: str = "result") -> str:
        return "".join(p.text for a in self.task.artifacts if a.name == name for p in a.parts)


async def converse(client: Client, text: str, task_id: str = "", context_id: str = "") -> Conversation:
    """Send ``text`` (on task ``task_id``, in context ``context_id``, when given), streaming; what came back."""
    seen = Conversation()
    message = user_message(text, task_id=task_id, context_id=context_id)
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=message)):
            if event.HasField("task"):
                task_id = event.task.id
            elif event.HasField("status_update"):
                task_id = task_id or event.status_update.task_id
                if event.status_update.status.state == TaskState.TASK_STATE_WORKING:
                    seen.progress += [p.text for p in event.status_update.status.message.parts if p.text]
            elif event.HasField("artifact_update") and event.artifact_update.artifact.name == "result":
                seen.chunks += [p.text for p in event.artifact_update.artifact.parts]
        seen.task = await client.get_task(GetTaskRequest(id=task_id))
    return seen


async def cancel_when(client: Client, text: str, progress_says: str) -> tuple[Task, list[str]]:
    """Send ``text``, cancel its task once a progress update says ``progress_says``; the task after, the progress."""
    progress: list[str] = []
    task_id = ""
    async with asyncio.timeout(WAIT_S):
        stream = client.send_message(SendMessageRequest(message=user_message(text)))
        async for event in stream:
            if event.HasField("status_update"):
                task_id = event.status_update.task_id
                progress += [p.text for p in event.status_update.status.message.parts if p.text]
                if any(progress_says in said for said in progress):
                    break
        await stream.aclose()
        assert task_id, "no status update came"
        canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED, canceled.status
        return await client.get_task(GetTaskRequest(id=task_id)), progress


class Elicitation:
    """An MCP elicitation callback answering every question with ``answer``, recording the questions."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.questions: list[str] = []

    async def __call__(self, ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        return ElicitResult(action="accept", content={"answer": self.answer})


@dataclass
class ToolOutcome:
    """An MCP tool call's structured result and the progress it reported."""

    outcome: dict[str, Any]
    progress: list[str]
    questions: list[str]


async def call_tool(gateway: RunningGateway, tool: str, text: str, answer: str = "") -> ToolOutcome:
    """Call agent ``tool`` as an MCP tool over Streamable HTTP, answering any question with ``answer``."""
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    elicit = Elicitation(answer)
    async with McpClient(f"{gateway.url}/mcp", elicitation_callback=elicit, read_timeout_seconds=60) as client:
        with anyio.fail_after(WAIT_S):
            result = await client.call_tool(tool, {"text": text}, progress_callback=on_progress)
    assert not result.is_error, result.content
    return ToolOutcome(result.structured_content or {}, progress, elicit.questions)


def agent_file(folder: Path, name: str, kind: str, agent: str, **options: Any) -> Path:
    """Write the agent file of framework agent ``name`` (no auth: tests call it anonymously)."""
    runtime: dict[str, Any] = {"kind": kind, "agent": agent}
    if options:
        runtime["options"] = options
    return _write(folder, name, {"runtime": runtime})


def sequential_file(folder: Path, name: str, participants: list[str], **limits: Any) -> Path:
    """Write a sequential workflow over ``participants`` (``limits`` as the file's)."""
    runtime: dict[str, Any] = {"kind": "workflow", "pattern": "sequential", "participants": participants}
    if limits:
        runtime["limits"] = limits
    return _write(folder, name, {"runtime": runtime})


def with_echo(folder: Path) -> Path:
    """``folder`` with the bundled echo agent in it too (a workflow's second step)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "echo.yaml").write_text((bundled_agents_dir() / "echo.yaml").read_text())
    return folder


def _write(folder: Path, name: str, body: dict[str, Any]) -> Path:
    card = {"format": 1, "name": name, "description": f"The {name} test agent.", "security": "none"}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**card, "skills": [SKILL], **body}, sort_keys=False))
    return path


@asynccontextmanager
async def model_server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScriptedChatServer]:
    """The scripted model server, where the frameworks' OpenAI clients look for one (``OPENAI_BASE_URL``)."""
    async with scripted_chat_server() as chat:
        monkeypatch.setenv("OPENAI_BASE_URL", chat.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-framework")
        yield chat


@asynccontextmanager
async def serving(tmp_path: Path, agents: Path) -> AsyncIterator[RunningGateway]:
    """A gateway serving the files in ``agents``, every agent also an MCP tool."""
    async with running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["*"])) as gateway:
        yield gateway


@asynccontextmanager
async def framework_gateway(
    tmp_path: Path, agents: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunningGateway, ScriptedChatServer]]:
    """A gateway serving ``agents``, whose frameworks find the scripted model server in ``OPENAI_BASE_URL``."""
    async with model_server(monkeypatch) as chat, serving(tmp_path, agents) as gateway:
        yield gateway, chat


async def ask(gateway: RunningGateway, agent: str, binding: Binding, text: str, task_id: str = "") -> Conversation:
    """``converse`` with ``agent`` on a fresh client of ``binding``."""
    async with a2a_client(gateway.agent_url(agent), binding) as client:
        return await converse(client, text, task_id=task_id)


async def cancel_mid_run(
    gateway: RunningGateway, agent: str, binding: Binding, text: str, chat: ScriptedChatServer, requests: int = 1
) -> Task:
    """Start a task, wait until the framework's ``requests``-th model call is under way, cancel; the task then."""
    async with a2a_client(gateway.agent_url(agent), binding) as client, asyncio.timeout(WAIT_S):
        task = await start(client, text)
        await chat.requests(requests)
        await client.cancel_task(CancelTaskRequest(id=task.id))
        return await client.get_task(GetTaskRequest(id=task.id))
