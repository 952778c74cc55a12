"""One answer wins: two answers to the same ``input-required`` task, sent at once, never both run.

The second gets the protocol's error for a message to a task that is not waiting for input
(A2A ``UnsupportedOperationError``, as for a message to a task in a terminal state), on every
binding, on the local path and over MCP; the stored task holds the winner's answer, and the
loser's message is not in its history.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, Task, TaskState
from a2a.utils.errors import UnsupportedOperationError
from mcp.client import Client

from gateway.hosting.local_tasks import LocalRunner
from gateway.settings import DEFAULT_MCP_TOOLS
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import Binding, a2a_client, artifact_texts, send
from tests.conftest import make_settings
from tests.mcp.conftest import task_once_ended

ANSWERS = ("red", "blue")
WAIT_S = 20.0


def answered(task: Task) -> str:
    """The answer the task was completed with."""
    (text,) = artifact_texts(task)
    return text.removeprefix("You answered: ")


def user_texts(task: Task) -> list[str]:
    return [p.text for m in task.history if m.role == Role.ROLE_USER for p in m.parts if p.text]


def one_won(results: list[Any]) -> tuple[Any, BaseException]:
    """The one result that won and the one error the other answer got."""
    errors = [r for r in results if isinstance(r, BaseException)]
    won = [r for r in results if not isinstance(r, BaseException)]
    assert len(won) == 1 and len(errors) == 1, results
    return won[0], errors[0]


def assert_only(task: Task, answer: str) -> None:
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    assert answered(task) == answer
    loser = next(a for a in ANSWERS if a != answer)
    assert answer in user_texts(task) and loser not in user_texts(task), user_texts(task)


async def test_two_answers_at_once_over_a2a_one_wins(gateway: RunningGateway, binding: Binding) -> None:
    async with a2a_client(gateway.agent_url("echo"), binding) as client:
        asked, _ = await send(client, "ask: which colour?")
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

        results = await asyncio.gather(*(send(client, a, task_id=asked.id) for a in ANSWERS), return_exceptions=True)

        (winner, _), refused = one_won(results)
        stored = await client.get_task(GetTaskRequest(id=asked.id))
    assert isinstance(refused, UnsupportedOperationError), repr(refused)
    assert "not waiting for input" in str(refused)
    assert_only(stored, answered(winner))


def message(text: str, task_id: str = "") -> Message:
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)], task_id=task_id)


async def test_two_answers_at_once_on_the_local_path_one_wins(gateway: RunningGateway) -> None:
    runner = gateway.app.state.gateway.local_runner("echo")
    assert isinstance(runner, LocalRunner)
    context = ServerCallContext()
    asked = await runner.run(message("ask: which colour?"), context)

    results = await asyncio.gather(
        *(runner.run(message(a, asked.id), context) for a in ANSWERS), return_exceptions=True
    )

    winner, refused = one_won(results)
    assert isinstance(refused, UnsupportedOperationError), repr(refused)
    stored = await gateway.app.state.gateway.handler("echo").on_get_task(GetTaskRequest(id=asked.id), context)
    assert_only(stored, answered(winner))


@pytest.fixture
async def echo_tool_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, mcp_tools=[*DEFAULT_MCP_TOOLS, "echo"])) as gateway:
        yield gateway


class HeldSave:
    """Holds the first save of the echo agent's store after ``arm`` (an answer's turn starting) until ``release``."""

    def __init__(self, gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch) -> None:
        store = gateway.app.state.gateway.handler("echo").task_store
        self._save = store.save
        self.holding, self._released = asyncio.Event(), asyncio.Event()
        self._armed = False
        monkeypatch.setattr(store, "save", self.save)

    def arm(self) -> None:
        self._armed = True

    def release(self) -> None:
        self._released.set()

    async def save(self, task: Task, context: ServerCallContext) -> None:
        if self._armed and not self.holding.is_set():
            self.holding.set()
            await asyncio.wait_for(self._released.wait(), WAIT_S)
        await self._save(task, context)


@pytest.mark.parametrize("tool", ["start_run", "echo"])
@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"], ids=["2025", "2026"])
async def test_an_mcp_answer_while_another_is_starting_is_refused(
    echo_tool_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch, mode: str, tool: str
) -> None:
    gateway = echo_tool_gateway
    held = HeldSave(gateway, monkeypatch)
    async with Client(f"{gateway.url}/mcp", mode=mode, read_timeout_seconds=30) as mcp:
        asked = (await mcp.call_tool("echo", {"text": "ask: which colour?"})).structured_content or {}
        assert asked["state"] == "input-required", asked
        agent = {"agent": "echo"} if tool == "start_run" else {}
        held.arm()
        red = asyncio.ensure_future(mcp.call_tool(tool, {**agent, "text": "red", "task_id": asked["task_id"]}))
        await asyncio.wait_for(held.holding.wait(), WAIT_S)  # red's turn is starting: its first save is held
        blue = await mcp.call_tool(tool, {**agent, "text": "blue", "task_id": asked["task_id"]})
        held.release()
        accepted = await asyncio.wait_for(red, WAIT_S)
    assert blue.is_error and "not waiting for input" in str(blue.content), blue.content
    assert not accepted.is_error, accepted.content
    assert_only(await task_once_ended(gateway, "echo", asked["task_id"]), "red")
