"""A tool call on an in-process agent is one A2A task of that agent, run on its ``LocalRunner``.

Seen from the A2A side: the task belongs to the MCP caller, a cancel leaves it canceled, and an
elicited answer continues the same task. A workflow's call still goes through its handler, and
cancelling it cancels its running children.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import anyio
import pytest
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import GetTaskRequest, Role, Task, TaskState
from a2a.utils.errors import TaskNotFoundError
from mcp.client import Client

from gateway.app import Gateway, create_app
from gateway.auth.policy import RunOwner
from gateway.bindings.mcp_server import create_mcp_binding
from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.mcp.conftest import HTTP_ARMS, Arm, McpTarget, task_once_ended
from tests.mcp.test_mcp_cancel import TASK_IN_PROGRESS, cancel_mid_call
from tests.mcp.test_mcp_elicitation import Answers
from tests.mcp.test_mcp_runs import user_from_meta
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import list_tasks

TIMEOUT_S = 30


def user_texts(task: Task) -> list[str]:
    return [p.text for m in task.history if m.role == Role.ROLE_USER for p in m.parts if p.text]


@asynccontextmanager
async def in_process(tmp_path: Path, mode: str) -> AsyncIterator[tuple[Gateway, Client]]:
    """The bundled agents behind an MCP server whose identity seam reads ``_meta``, connected in-process."""
    app = create_app(make_settings(tmp_path, mcp_tools=["echo"]))
    async with app.router.lifespan_context(app):
        gateway: Gateway = app.state.gateway
        binding = create_mcp_binding(gateway, identify=user_from_meta)
        async with binding.running(), Client(binding.server, mode=mode) as client:
            yield gateway, client


@pytest.mark.parametrize("arm", HTTP_ARMS, ids=lambda arm: arm.id)
async def test_an_agent_tool_call_is_a_task_of_the_agent_owned_by_the_caller(tmp_path: Path, arm: Arm) -> None:
    async with in_process(tmp_path, arm.mode) as (gateway, client):
        assert gateway.local_runner("echo") is not None, "echo runs in-process"
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("echo", {"text": "hello there"}, meta={"test/user": "alice"})
        outcome = result.structured_content or {}
        handler = gateway.handler("echo")
        request = GetTaskRequest(id=outcome["task_id"])
        task = await handler.on_get_task(request, ServerCallContext(user=RunOwner("alice")))
        with pytest.raises(TaskNotFoundError):
            await handler.on_get_task(request, ServerCallContext(user=RunOwner("mallory")))

    assert outcome["state"] == "completed" and outcome["artifacts"][0]["text"] == "hello there"
    assert task is not None and task.status.state == TaskState.TASK_STATE_COMPLETED
    assert user_texts(task) == ["hello there"]
    assert [p.text for a in task.artifacts for p in a.parts] == ["hello there"]


async def test_a_cancelled_call_leaves_the_local_task_canceled_by_the_agent(mcp_http: McpTarget) -> None:
    assert mcp_http.gateway is not None
    async with mcp_http.client() as client:
        task_id = await cancel_mid_call(client)
    task = await task_once_ended(mcp_http.gateway, "echo", task_id)

    assert task.status.state == TaskState.TASK_STATE_CANCELED
    assert task.status.message.parts[0].text == "echo: canceled on request"
    assert user_texts(task) == ["wait: 30"]


async def test_an_elicited_answer_continues_the_same_task(mcp_http: McpTarget) -> None:
    assert mcp_http.gateway is not None
    async with mcp_http.client(elicitation_callback=Answers("Ada")) as client:
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("echo", {"text": "ask: name?"})
    outcome = result.structured_content or {}
    task = await task_once_ended(mcp_http.gateway, "echo", outcome["task_id"])
    every = await list_tasks(mcp_http.gateway, "echo")

    assert outcome["state"] == "completed"
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert user_texts(task) == ["ask: name?", "Ada"]
    assert [t.id for t in every] == [task.id], "the answer went to the task that asked"


class StepsRunning:
    """A progress callback: the workflow's task id, and an event once ``steps`` slow steps are working."""

    def __init__(self, steps: int) -> None:
        self.task_id = ""
        self.steps = steps
        self.working = 0
        self.ready = anyio.Event()

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        found = TASK_IN_PROGRESS.search(message or "")
        if found and not self.task_id:
            self.task_id = found.group(1)
        if "working on it" in (message or ""):
            self.working += 1
        if self.task_id and self.working >= self.steps:
            self.ready.set()


@pytest.mark.parametrize("arm", HTTP_ARMS, ids=lambda arm: arm.id)
async def test_cancelling_a_workflow_call_cancels_its_running_children(tmp_path: Path, arm: Arm) -> None:
    files = (
        python_agent("sloth-a", "hang"),
        python_agent("sloth-b", "hang"),
        workflow("fan", "concurrent", ["sloth-a", "sloth-b"], limits={"retries": 0, "step_timeout_s": 20}),
    )
    agents = agents_folder(tmp_path / "agents", files)
    progress = StepsRunning(1)
    async with running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["fan"])) as gateway:
        assert gateway.app.state.gateway.local_runner("fan") is None, "a workflow runs through its handler"
        async with Client(f"{gateway.url}/mcp", mode=arm.mode, read_timeout_seconds=60) as client:
            with anyio.fail_after(TIMEOUT_S):
                async with anyio.create_task_group() as group:
                    group.start_soon(partial(client.call_tool, "fan", {"text": "go"}, progress_callback=progress))
                    await progress.ready.wait()
                    group.cancel_scope.cancel()
        parent = await task_once_ended(gateway, "fan", progress.task_id)
        children = [task for name in ("sloth-a", "sloth-b") for task in await list_tasks(gateway, name)]

    assert parent.status.state == TaskState.TASK_STATE_CANCELED
    assert children, "a step was working when the call was cancelled"
    assert [c.status.state for c in children] == [TaskState.TASK_STATE_CANCELED] * len(children)
