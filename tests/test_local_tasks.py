"""The local path (``gateway.hosting.local_tasks``): the bundled ``echo`` agent's executor run without the
SDK's handler.

Each test runs a real gateway (SQLite, bundled agents) and drives ``echo``'s ``LocalRunner``
directly, then looks at the task through the agent's A2A request handler, as a client would.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace

import anyio
import pytest
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import EventQueue
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import TaskNotFoundError, UnsupportedOperationError

from gateway.app import Gateway
from gateway.auth.policy import RunOwner
from gateway.hosting import local_tasks
from gateway.hosting.local_tasks import LocalRunner
from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import Binding, a2a_client

WAIT_S = 10.0


def message(text: str, *, task_id: str = "", message_id: str = "") -> Message:
    return Message(
        role=Role.ROLE_USER, message_id=message_id or str(uuid.uuid4()), parts=[Part(text=text)], task_id=task_id
    )


@pytest.fixture
async def host(gateway: RunningGateway) -> AsyncIterator[Gateway]:
    yield gateway.app.state.gateway


@pytest.fixture
def echo(host: Gateway) -> LocalRunner:
    runner = host.local_runner("echo")
    assert runner is not None, "echo (runtime python) runs in-process"
    return runner


def texts(task: Task) -> list[str]:
    return [p.text for m in task.history for p in m.parts if p.text]


async def stored(host: Gateway, task_id: str, context: ServerCallContext | None = None) -> Task:
    return await host.handler("echo").on_get_task(GetTaskRequest(id=task_id), context or ServerCallContext())


async def test_a_local_task_is_an_ordinary_task_of_the_agent(host: Gateway, echo: LocalRunner) -> None:
    task = await echo.run(message("hello there"), ServerCallContext())

    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [p.text for a in task.artifacts for p in a.parts] == ["hello there"]
    assert task.status.message.parts[0].text == "hello there"
    saved = await stored(host, task.id)
    assert saved.status.state == TaskState.TASK_STATE_COMPLETED
    assert saved.history[0].parts[0].text == "hello there"
    assert saved.history[0].task_id == task.id and saved.history[0].context_id == task.context_id


async def test_another_caller_cannot_see_or_continue_it(host: Gateway, echo: LocalRunner) -> None:
    alice, mallory = ServerCallContext(user=RunOwner("alice")), ServerCallContext(user=RunOwner("mallory"))
    task = await echo.run(message("ask: colour?"), alice)
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

    with pytest.raises(TaskNotFoundError):
        await stored(host, task.id, mallory)
    with pytest.raises(TaskNotFoundError):
        await echo.run(message("blue", task_id=task.id), mallory)
    assert (await stored(host, task.id, alice)).status.state == TaskState.TASK_STATE_INPUT_REQUIRED


async def test_an_answer_continues_the_same_task(host: Gateway, echo: LocalRunner) -> None:
    context = ServerCallContext()
    asked = await echo.run(message("ask: colour?"), context)
    assert asked.status.message.parts[0].text == "colour?"

    answered = await echo.run(message("blue", task_id=asked.id), context)

    assert answered.id == asked.id and answered.context_id == asked.context_id
    assert answered.status.state == TaskState.TASK_STATE_COMPLETED
    assert [p.text for a in answered.artifacts for p in a.parts] == ["You answered: blue"]
    assert texts(answered) == ["ask: colour?", "colour?", "blue"]
    with pytest.raises(UnsupportedOperationError, match="not waiting for input"):
        await echo.run(message("again", task_id=asked.id), context)
    with pytest.raises(TaskNotFoundError):
        await echo.run(message("hello", task_id=str(uuid.uuid4())), context)


async def test_progress_reaches_the_caller_and_the_task_is_saved_working(host: Gateway, echo: LocalRunner) -> None:
    seen: list[str] = []
    states: list[int] = []

    first = message("wait: 0.01")

    async def progress(text: str) -> None:
        seen.append(text)
        states.append((await stored(host, first.task_id)).status.state)  # the runner names the task on the message

    task = await asyncio.wait_for(echo.run(first, ServerCallContext(), progress), WAIT_S)

    assert seen == ["waiting: step 1 of 1"]
    assert states == [TaskState.TASK_STATE_WORKING]
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "waiting: step 1 of 1" in texts(task)


async def test_a_failing_agent_fails_its_task_with_the_reason(host: Gateway, echo: LocalRunner) -> None:
    task = await echo.run(message("fail: the disk is full"), ServerCallContext())

    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert (await stored(host, task.id)).status.message.parts[0].text == "the disk is full"


async def test_a_message_reply_completes_the_task(host: Gateway, echo: LocalRunner) -> None:
    task = await echo.run(message("hi", message_id=f"tck-message-response-{uuid.uuid4()}"), ServerCallContext())

    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.status.message.parts[0].text == "Direct message response"
    assert (await stored(host, task.id)).status.state == TaskState.TASK_STATE_COMPLETED


async def _started(echo: LocalRunner, context: ServerCallContext) -> tuple[asyncio.Task[Task], str]:
    working = asyncio.Event()

    async def progress(text: str) -> None:
        working.set()

    first = message("wait: 60")
    runner_task = asyncio.ensure_future(echo.run(first, context, progress))
    await asyncio.wait_for(working.wait(), WAIT_S)
    return runner_task, first.task_id


async def test_cancel_task_on_the_agent_stops_a_running_local_task(host: Gateway, echo: LocalRunner) -> None:
    context = ServerCallContext()
    runner_task, task_id = await _started(echo, context)
    assert echo.is_running(task_id)

    canceled = await host.handler("echo").on_cancel_task(CancelTaskRequest(id=task_id), context)

    assert canceled is not None and canceled.status.state == TaskState.TASK_STATE_CANCELED
    result = await asyncio.wait_for(runner_task, WAIT_S)
    assert result.status.state == TaskState.TASK_STATE_CANCELED
    assert result.status.message.parts[0].text == "echo: canceled on request"  # the agent's own cancel
    assert (await stored(host, task_id)).status.state == TaskState.TASK_STATE_CANCELED
    assert not echo.is_running(task_id)


async def test_cancel_task_from_another_caller_is_not_found(host: Gateway, echo: LocalRunner) -> None:
    alice, mallory = ServerCallContext(user=RunOwner("alice")), ServerCallContext(user=RunOwner("mallory"))
    runner_task, task_id = await _started(echo, alice)

    with pytest.raises(TaskNotFoundError):
        await host.handler("echo").on_cancel_task(CancelTaskRequest(id=task_id), mallory)

    assert echo.is_running(task_id)
    assert await echo.cancel(task_id)
    assert (await asyncio.wait_for(runner_task, WAIT_S)).status.state == TaskState.TASK_STATE_CANCELED


async def test_a_canceled_caller_leaves_the_task_canceled(host: Gateway, echo: LocalRunner) -> None:
    runner_task, task_id = await _started(echo, ServerCallContext())

    runner_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner_task, WAIT_S)

    assert (await stored(host, task_id)).status.state == TaskState.TASK_STATE_CANCELED
    assert not echo.is_running(task_id)


async def test_agents_that_do_not_run_in_process_have_no_runner(host: Gateway) -> None:
    assert host.local_runner("code-review") is None  # a workflow keeps the handler path
    assert host.local_runner("security-reviewer") is not None


async def test_a_client_subscribes_to_a_running_local_task(
    gateway: RunningGateway, echo: LocalRunner, binding: Binding
) -> None:
    runner_task, task_id = await _started(echo, ServerCallContext())
    states = []
    async with (
        a2a_client(gateway.agent_url("echo"), replace(binding, streaming=True)) as client,
        asyncio.timeout(WAIT_S),
    ):
        events = client.subscribe(SubscribeToTaskRequest(id=task_id))
        async for event in events:
            if event.HasField("task"):
                assert event.task.id == task_id and event.task.status.state == TaskState.TASK_STATE_WORKING
                await client.cancel_task(CancelTaskRequest(id=task_id))
            if event.HasField("status_update"):
                states.append(event.status_update.status.state)
    assert states[-1] == TaskState.TASK_STATE_CANCELED
    assert (await asyncio.wait_for(runner_task, WAIT_S)).status.state == TaskState.TASK_STATE_CANCELED


async def test_a_caller_canceled_during_the_first_save_leaves_the_task_canceled(
    host: Gateway, echo: LocalRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = host.handler("echo").task_store
    real_save = store.save
    entered, release = asyncio.Event(), asyncio.Event()

    async def held_save(task: Task, context: ServerCallContext) -> None:
        if not entered.is_set():
            entered.set()
            await release.wait()
        await real_save(task, context)

    monkeypatch.setattr(store, "save", held_save)
    first = message("hello")
    runner_task = asyncio.ensure_future(echo.run(first, ServerCallContext()))
    await asyncio.wait_for(entered.wait(), WAIT_S)
    runner_task.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(runner_task, WAIT_S)

    assert (await stored(host, first.task_id)).status.state == TaskState.TASK_STATE_CANCELED


class PeerLikeExecutor(AgentExecutor):
    """Works until stopped; its cancel takes a few loop passes, as a relay's cancel at its peer does."""

    def __init__(self) -> None:
        self.working = asyncio.Event()
        self.canceled_at_peer = asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.start_work(updater.new_agent_message([Part(text="working")]))
        self.working.set()
        await asyncio.Event().wait()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        for _ in range(5):
            await asyncio.sleep(0)  # a round trip to the peer
        self.canceled_at_peer.set()
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(updater.new_agent_message([Part(text="canceled at the peer")]))


async def _cancel_mid_run(runner: LocalRunner, executor: PeerLikeExecutor, how: str) -> str:
    """Run a task on ``runner`` and cancel its caller once it works: asyncio's one cancel, or an anyio scope's."""
    first = message("work")
    if how == "asyncio":
        caller = asyncio.ensure_future(runner.run(first, ServerCallContext()))
        await asyncio.wait_for(executor.working.wait(), WAIT_S)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(caller, WAIT_S)
        return first.task_id
    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(runner.run, first, ServerCallContext())
            await executor.working.wait()
            group.cancel_scope.cancel()  # re-delivered on every loop pass until the call ends
    return first.task_id


@pytest.mark.parametrize("how", ["asyncio", "anyio"])
async def test_a_canceled_caller_cancels_at_the_peer_and_saves_the_task_canceled(how: str) -> None:
    store, executor = InMemoryTaskStore(), PeerLikeExecutor()
    runner = LocalRunner("relay", executor, store)

    task_id = await _cancel_mid_run(runner, executor, how)

    assert executor.canceled_at_peer.is_set(), "the relay's cancel at its peer ran to its end"
    saved = await store.get(task_id, ServerCallContext())
    assert saved is not None and saved.status.state == TaskState.TASK_STATE_CANCELED, saved
    assert saved.status.message.parts[0].text == "canceled at the peer"
    assert not runner.is_running(task_id)


async def test_a_failing_started_callback_cancels_the_task_at_the_peer_too() -> None:
    store, executor = InMemoryTaskStore(), PeerLikeExecutor()
    runner = LocalRunner("relay", executor, store)
    first = message("work")

    async def started(task: Task) -> None:
        await asyncio.wait_for(executor.working.wait(), WAIT_S)  # the relay has reached its peer
        raise ConnectionError("the caller could not be told")

    task = await asyncio.wait_for(runner.run(first, ServerCallContext(), started=started), WAIT_S)

    assert task.status.state == TaskState.TASK_STATE_CANCELED, task.status
    assert executor.canceled_at_peer.is_set(), "the work the agent began elsewhere is canceled too"
    saved = await store.get(first.task_id, ServerCallContext())
    assert saved is not None and saved.status.state == TaskState.TASK_STATE_CANCELED


class ChattyExecutor(AgentExecutor):
    """Waits for ``go``, then sends ``count`` progress updates as fast as it can and completes."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.working, self.go = asyncio.Event(), asyncio.Event()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.start_work()
        self.working.set()
        await self.go.wait()
        for n in range(self.count):
            await updater.update_status(TaskState.TASK_STATE_WORKING, updater.new_agent_message([Part(text=f"{n}")]))
        await updater.complete()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        raise NotImplementedError


async def test_a_subscriber_that_falls_behind_is_dropped_and_the_run_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_tasks, "SUBSCRIBER_BUFFER", 3, raising=False)
    store, executor = InMemoryTaskStore(), ChattyExecutor(count=10)
    runner = LocalRunner("chatty", executor, store)
    first = message("talk")
    run = asyncio.ensure_future(runner.run(first, ServerCallContext()))
    await asyncio.wait_for(executor.working.wait(), WAIT_S)
    slow = runner.subscribe(first.task_id)
    assert slow is not None
    assert isinstance(await anext(slow), Task)  # the snapshot; then it stops reading

    executor.go.set()
    task = await asyncio.wait_for(run, WAIT_S)

    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    seen = [event async for event in slow]  # what it had when it was dropped: its stream has ended
    assert len(seen) < executor.count, seen
