"""Steps on in-process participants (``python`` runtimes) run on the agent's ``LocalRunner``, not its handler.

The child is still an ordinary task of the participant, linked to the run and owned by its caller:
found by GetTask on the participant, canceled with the run or by a CancelTask of its own, left
canceled by a timeout, failed with the reason when the agent breaks, and continued (the same task)
when it asked for input and the caller answers. Runs here are sent to the workflow's request
handler in-process, as ``bench_orchestration.py`` does.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)

from gateway.app import Gateway, create_app
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import meta, output_names, step_output, text_of

QUICK = {"retries": 0, "step_timeout_s": 10}
WAIT_S = 10.0


@asynccontextmanager
async def hosting(tmp_path: Path, *files: Mapping[str, Any], bundled: tuple[str, ...] = ()) -> AsyncIterator[Gateway]:
    app = create_app(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files, bundled=bundled)))
    async with app.router.lifespan_context(app):
        gateway = app.state.gateway
        assert isinstance(gateway, Gateway)
        yield gateway


def message(text: str, task_id: str = "") -> Message:
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)], task_id=task_id)


async def send(gateway: Gateway, agent: str, text: str, task_id: str = "") -> Task:
    async with asyncio.timeout(WAIT_S):
        result = await gateway.handler(agent).on_message_send(
            SendMessageRequest(message=message(text, task_id)), ServerCallContext()
        )
    assert isinstance(result, Task)
    return result


async def get(gateway: Gateway, agent: str, task_id: str) -> Task:
    task = await gateway.handler(agent).on_get_task(GetTaskRequest(id=task_id), ServerCallContext())
    assert task is not None
    return task


async def children(gateway: Gateway, agent: str) -> list[Task]:
    listed = await gateway.handler(agent).on_list_tasks(ListTasksRequest(), ServerCallContext())
    return list(listed.tasks)


class Following:
    """A run streamed in the background: its task id, and an event set once a progress line shows."""

    def __init__(self, gateway: Gateway, agent: str, text: str, until: str) -> None:
        self.gateway, self.agent, self.task_id = gateway, agent, ""
        self.seen = asyncio.Event()
        self.states: list[int] = []
        """The states the stream's task and status events gave, in order."""
        self._until = until
        request = SendMessageRequest(message=message(text))
        self.consumer = asyncio.create_task(
            self._follow(gateway.handler(agent).on_message_send_stream(request, ServerCallContext()))
        )

    async def _follow(self, stream: AsyncIterator[Any]) -> None:
        async for event in stream:
            if isinstance(event, Task):
                self.task_id = event.id
            status = getattr(event, "status", None)
            if status is not None:
                self.states.append(status.state)
            if status is not None and any(p.text.endswith(self._until) for p in status.message.parts):
                self.seen.set()

    async def started(self) -> None:
        """Wait until the progress line shows (bounded); fails if the run ended first."""
        seen = asyncio.ensure_future(self.seen.wait())
        async with asyncio.timeout(WAIT_S):
            await asyncio.wait({seen, self.consumer}, return_when=asyncio.FIRST_COMPLETED)
        seen.cancel()
        assert self.seen.is_set(), "the run ended before its step showed progress"

    async def ended(self) -> Task:
        """Wait for the run's stream to end (bounded); the run's task."""
        async with asyncio.timeout(WAIT_S):
            await self.consumer
        return await get(self.gateway, self.agent, self.task_id)


def sloth_run(tmp_path: Path, **limits: Any) -> tuple[Mapping[str, Any], ...]:
    return (python_agent("sloth", "hang"), workflow("pipe", "sequential", ["sloth"], limits={**QUICK, **limits}))


def refuse_handler(gateway: Gateway, agent: str) -> None:
    """Make ``agent``'s request handler fail any message: a step must not go through it."""

    async def refused(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a step on {agent} went through its request handler")

    handler = gateway.handler(agent)
    handler.on_message_send = refused  # type: ignore[method-assign]
    handler.on_message_send_stream = refused  # type: ignore[method-assign]


async def test_a_python_step_runs_without_the_handler_and_leaves_a_linked_child_task(tmp_path: Path) -> None:
    files = (
        python_agent("counter", "counter", log=str(tmp_path / "calls.txt")),
        workflow("pipe", "sequential", ["counter"]),
    )
    async with hosting(tmp_path, *files) as gateway:
        assert gateway.local_runner("counter") is not None and gateway.local_runner("pipe") is None
        refuse_handler(gateway, "counter")
        run = await send(gateway, "pipe", "hello")
        (step,) = meta(run)["steps"]
        child = await get(gateway, "counter", step["task_id"])

    assert run.status.state == TaskState.TASK_STATE_COMPLETED, text_of(run)
    assert child.status.state == TaskState.TASK_STATE_COMPLETED and text_of(child) == "hello"
    sent = child.history[0]
    assert list(sent.reference_task_ids) == [run.id]
    assert meta(sent) == {
        "parent_task_id": run.id,
        "run_id": meta(run)["run_id"],
        "step": 1.0,
        "hops": 1.0,
        "max_hops": 8.0,
    }
    assert [p.text for p in child.history[1].parts] == ["counted call 1"], "the child's progress is in its history"
    assert output_names(run.artifacts) == ["step-1-counter", "result"]
    assert step_output(run, "step-1-counter").task_id == step["task_id"]
    assert any(p.text == "step 1/1 · counter: counted call 1" for m in run.history for p in m.parts)


async def test_canceling_the_run_cancels_its_running_local_child(tmp_path: Path) -> None:
    async with hosting(tmp_path, *sloth_run(tmp_path)) as gateway:
        run = Following(gateway, "pipe", "go", "sloth: working on it")
        await run.started()
        (child,) = await children(gateway, "sloth")
        assert gateway.local_runner("sloth").is_running(child.id)  # type: ignore[union-attr]
        canceled = await gateway.handler("pipe").on_cancel_task(CancelTaskRequest(id=run.task_id), ServerCallContext())
        await run.ended()
        child = await get(gateway, "sloth", child.id)

    assert canceled is not None and canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert "1 unfinished step canceled" in text_of(canceled)
    assert child.status.state == TaskState.TASK_STATE_CANCELED
    assert not gateway.local_runner("sloth").is_running(child.id)  # type: ignore[union-attr]


async def test_the_runs_own_stream_ends_with_the_canceled_state(tmp_path: Path) -> None:
    async with hosting(tmp_path, *sloth_run(tmp_path)) as gateway:
        run = Following(gateway, "pipe", "go", "sloth: working on it")
        await run.started()
        await gateway.handler("pipe").on_cancel_task(CancelTaskRequest(id=run.task_id), ServerCallContext())
        await run.ended()

    assert run.states[-1] == TaskState.TASK_STATE_CANCELED, "the stream is told the run's end"


async def test_a_cancel_task_on_the_participant_cancels_its_local_child_and_the_step_says_so(tmp_path: Path) -> None:
    async with hosting(tmp_path, *sloth_run(tmp_path)) as gateway:
        run = Following(gateway, "pipe", "go", "sloth: working on it")
        await run.started()
        (child,) = await children(gateway, "sloth")
        canceled = await gateway.handler("sloth").on_cancel_task(CancelTaskRequest(id=child.id), ServerCallContext())
        ended = await run.ended()
        child = await get(gateway, "sloth", child.id)

    assert canceled is not None and canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert child.status.state == TaskState.TASK_STATE_CANCELED
    assert ended.status.state == TaskState.TASK_STATE_FAILED, text_of(ended)
    assert "sloth" in text_of(ended) and "canceled" in text_of(ended)
    assert meta(ended)["steps"] == [{"step": 1.0, "agent": "sloth", "state": "canceled", "task_id": child.id}]
    assert any(p.text.startswith("step 1/1 · sloth: canceled") for m in ended.history for p in m.parts)


async def test_a_hanging_local_child_times_out_and_is_left_canceled(tmp_path: Path) -> None:
    async with hosting(tmp_path, *sloth_run(tmp_path, step_timeout_s=0.2)) as gateway:
        run = await send(gateway, "pipe", "go")
        (child,) = await children(gateway, "sloth")

    assert run.status.state == TaskState.TASK_STATE_FAILED
    assert "sloth did not finish within 0.2s" in text_of(run)
    assert child.status.state == TaskState.TASK_STATE_CANCELED
    assert not gateway.local_runner("sloth").is_running(child.id)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("entrypoint", "options", "reason"),
    [
        ("flaky", {"failures": 1}, "boom failed: FlakyError: attempt 1 of the flaky agent"),
        ("tests.orchestration.fixture_agents:ExplodingExecutor", {}, "boom failed: RuntimeError: the fuse was lit"),
    ],
    ids=["runtime-raises", "executor-raises"],
)
async def test_an_exception_in_the_agent_fails_its_local_child_with_the_reason(
    tmp_path: Path, entrypoint: str, options: dict[str, Any], reason: str
) -> None:
    if entrypoint == "flaky":
        options = {**options, "log": str(tmp_path / "flaky.txt")}
    files = (python_agent("boom", entrypoint, **options), workflow("pipe", "sequential", ["boom"], limits=QUICK))
    async with hosting(tmp_path, *files) as gateway:
        run = await send(gateway, "pipe", "go")
        (child,) = await children(gateway, "boom")

    assert child.status.state == TaskState.TASK_STATE_FAILED and text_of(child) == reason
    assert run.status.state == TaskState.TASK_STATE_FAILED and reason in text_of(run), text_of(run)


async def test_an_answer_to_a_local_child_that_asked_for_input_continues_the_same_child(tmp_path: Path) -> None:
    async with hosting(tmp_path, workflow("asker", "sequential", ["echo"]), bundled=("echo",)) as gateway:
        paused = await send(gateway, "asker", "ask: your name?")
        (asking,) = await children(gateway, "echo")
        answered = await send(gateway, "asker", "Ada", task_id=paused.id)
        (child,) = await children(gateway, "echo")

    assert paused.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, text_of(paused)
    assert asking.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert answered.status.state == TaskState.TASK_STATE_COMPLETED, text_of(answered)
    assert child.id == asking.id and child.status.state == TaskState.TASK_STATE_COMPLETED
    user_turns = [m for m in child.history if m.role == Role.ROLE_USER]
    assert [p.text for m in user_turns for p in m.parts] == ["ask: your name?", "Ada"]
    assert all(list(m.reference_task_ids) == [paused.id] for m in user_turns)
    assert meta(answered)["steps"][0]["task_id"] == child.id
