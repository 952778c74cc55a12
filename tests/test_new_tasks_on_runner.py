"""A2A messages that start a new task on a ``RuntimeExecutor`` agent run on its ``LocalRunner``.

Each test serves a real gateway with one extra ``python`` agent, ``held``, whose runtime waits on
a gate the test opens, and drives it with a2a-sdk's client on every binding: the task runs on
the runner (not the SDK's active-task machinery) with the SDK handler's semantics: the stream's
last event comes once the outcome is saved, a dropped stream leaves the task working, a bad
message is refused before any task exists, and what the runner does not take (a follow-up, an
early return) still goes through the SDK.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import yaml
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import (
    AgentCard,
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Role,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError
from google.protobuf.json_format import ParseDict

from gateway.app import Gateway
from gateway.auth.policy import RunOwner
from gateway.runtime import AgentCall, Emitter, Reply
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import WAIT_S, Binding, a2a_client, artifact_texts, start, user_message
from tests.conftest import make_settings

GATES: dict[str, asyncio.Event] = {}


async def held(call: AgentCall, emit: Emitter) -> Reply:
    """``KEY``: reports progress, waits for gate KEY (when the test made one), then answers; ``ask`` asks back."""
    await emit.progress(f"holding {call.text}")
    gate = GATES.get(call.text)
    if gate is not None:
        await gate.wait()
    if call.text == "ask":
        return Reply(text="what colour?", state="input-required")
    return Reply(text=f"done: {call.text} after {len(call.history)} turn(s)")


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    agents = tmp_path / "agents"
    agents.mkdir()
    spec = {
        "format": 1,
        "name": "held",
        "description": "waits for the test's gate",
        "skills": [{"id": "held", "name": "held", "description": "waits", "tags": ["test"]}],
        "runtime": {"kind": "python", "entrypoint": f"{__name__}:held"},
    }
    (agents / "held.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    async with running_gateway(make_settings(tmp_path, agents=agents)) as running:
        yield running
    GATES.clear()


@pytest.fixture
def host(gateway: RunningGateway) -> Gateway:
    return gateway.app.state.gateway  # type: ignore[no-any-return]


@pytest.fixture
async def client(gateway: RunningGateway, binding: Binding) -> AsyncIterator[Client]:
    async with a2a_client(gateway.agent_url("held"), binding) as c:
        yield c


def gate(key: str) -> asyncio.Event:
    GATES[key] = asyncio.Event()
    return GATES[key]


def task_id_of(event: StreamResponse) -> str:
    if event.HasField("task"):
        return event.task.id
    return event.status_update.task_id or event.artifact_update.task_id


def state_of(event: StreamResponse) -> TaskState.ValueType | None:
    if event.HasField("task"):
        return event.task.status.state
    return event.status_update.status.state if event.HasField("status_update") else None


def state_of_event(event: object) -> TaskState.ValueType | None:
    status = getattr(event, "status", None)
    return status.state if status is not None else None


async def test_a_new_task_runs_on_the_runner_and_its_last_event_comes_once_saved(
    host: Gateway, gateway: RunningGateway, binding: Binding
) -> None:
    opened = gate("slow")
    runner = host.local_runner("held")
    assert runner is not None
    events: list[StreamResponse] = []
    async with a2a_client(gateway.agent_url("held"), replace(binding, streaming=True)) as client:
        async with asyncio.timeout(WAIT_S):
            async for event in client.send_message(SendMessageRequest(message=user_message("slow"))):
                events.append(event)
                if len(events) == 1:
                    assert runner.is_running(task_id_of(event)), "the new task runs on the agent's runner"
                    opened.set()
        task_id = task_id_of(events[0])
        # The stream said completed: the store says so too, with the artifact.
        task = await client.get_task(GetTaskRequest(id=task_id))
    assert state_of(events[-1]) == TaskState.TASK_STATE_COMPLETED
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["done: slow after 0 turn(s)"]
    assert task.history[0].parts[0].text == "slow"
    said = [p.text for e in events if e.HasField("status_update") for p in e.status_update.status.message.parts]
    assert said[0] == "holding slow"
    assert any(e.HasField("artifact_update") for e in events)


async def test_a_dropped_stream_leaves_the_task_working(
    host: Gateway, gateway: RunningGateway, binding: Binding
) -> None:
    opened = gate("dropped")
    streaming = replace(binding, streaming=True)
    async with a2a_client(gateway.agent_url("held"), streaming) as client, asyncio.timeout(WAIT_S):
        stream = client.send_message(SendMessageRequest(message=user_message("dropped")))
        task_id = task_id_of(await anext(stream))
        await stream.aclose()  # the caller goes away

    runner = host.local_runner("held")
    assert runner is not None and runner.is_running(task_id)
    async with a2a_client(gateway.agent_url("held"), streaming) as client, asyncio.timeout(WAIT_S):
        states = []
        async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
            if event.HasField("task"):
                opened.set()  # subscribed: let the agent finish
            states.append(state_of(event))
        task = await client.get_task(GetTaskRequest(id=task_id))
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["done: dropped after 0 turn(s)"]


async def test_a_blocking_send_returns_the_saved_outcome_trimmed_to_history_length(client: Client) -> None:
    request = SendMessageRequest(message=user_message("quick"))
    request.configuration.history_length = 0
    async with asyncio.timeout(WAIT_S):
        events = [event async for event in client.send_message(request)]
        task_id = task_id_of(events[0])
        stored = await client.get_task(GetTaskRequest(id=task_id))
    last = events[-1]
    if last.HasField("task"):  # a blocking send answers with the task itself
        assert last.task.status.state == TaskState.TASK_STATE_COMPLETED
        assert len(last.task.history) == 0
    assert state_of(last) == TaskState.TASK_STATE_COMPLETED
    assert stored.status.state == TaskState.TASK_STATE_COMPLETED
    assert stored.history[0].parts[0].text == "quick"  # trimmed in the answer only


async def test_a_follow_up_and_an_early_return_still_go_through_the_sdk(host: Gateway, client: Client) -> None:
    async with asyncio.timeout(WAIT_S):
        events = [e async for e in client.send_message(SendMessageRequest(message=user_message("ask")))]
        asked = await client.get_task(GetTaskRequest(id=task_id_of(events[0])))
        assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

        answer = user_message("red", task_id=asked.id, context_id=asked.context_id)
        [e async for e in client.send_message(SendMessageRequest(message=answer))]
        answered = await client.get_task(GetTaskRequest(id=asked.id))
    assert answered.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(answered) == ["done: red after 2 turn(s)"]

    opened = gate("early")
    runner = host.local_runner("held")
    assert runner is not None
    async with asyncio.timeout(WAIT_S):
        task_id = (await start(client, "early")).id  # returnImmediately
        assert not runner.is_running(task_id), "an early return is the SDK's: the task runs on its machinery"
        events = host.handler("held").on_subscribe_to_task(SubscribeToTaskRequest(id=task_id), ServerCallContext())
        first_seen = await anext(events)
        opened.set()
        states = [state_of_event(event) async for event in events]
        finished = await client.get_task(GetTaskRequest(id=task_id))
    assert first_seen.id == task_id
    assert states[-1] == TaskState.TASK_STATE_COMPLETED
    assert finished.status.state == TaskState.TASK_STATE_COMPLETED


async def test_a_bad_message_is_refused_and_leaves_no_task(host: Gateway) -> None:
    handler = host.handler("held")
    context = ServerCallContext()
    partless = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()))
    with pytest.raises(InvalidParamsError):
        await handler.on_message_send(SendMessageRequest(message=partless), context)
    with pytest.raises(InvalidParamsError):
        async for _ in handler.on_message_send_stream(SendMessageRequest(message=partless), context):
            pass
    assert len((await handler.on_list_tasks(ListTasksRequest(), context)).tasks) == 0


async def test_closing_the_handler_leaves_a_running_task_canceled_not_working(host: Gateway) -> None:
    gate("never")
    handler = host.handler("held")
    context = ServerCallContext()
    stream = handler.on_message_send_stream(SendMessageRequest(message=user_message("never")), context)
    async with asyncio.timeout(WAIT_S):
        first = await anext(stream)
        await stream.aclose()
        task_id = first.id if hasattr(first, "history") else first.task_id
        await handler.aclose()
        task = await handler.on_get_task(GetTaskRequest(id=task_id), context)
    assert task is not None and task.status.state == TaskState.TASK_STATE_CANCELED


async def test_the_last_event_waits_for_the_outcome_to_be_saved(host: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    handler = host.handler("held")
    store = handler.task_store
    real_save = store.save
    saving, release = asyncio.Event(), asyncio.Event()

    async def held_final_save(task: Task, context: ServerCallContext) -> None:
        if task.status.state == TaskState.TASK_STATE_COMPLETED:
            saving.set()
            await release.wait()
        await real_save(task, context)

    monkeypatch.setattr(store, "save", held_final_save)
    stream = handler.on_message_send_stream(SendMessageRequest(message=user_message("saved")), ServerCallContext())
    async with asyncio.timeout(WAIT_S):
        seen = [await anext(stream)]
        while not isinstance(seen[-1], TaskArtifactUpdateEvent):
            seen.append(await anext(stream))
        last = asyncio.ensure_future(anext(stream))
        await saving.wait()
        for _ in range(20):  # loop passes enough for an event already applied to come through
            await asyncio.sleep(0)
        assert not last.done(), "the completed event came before the outcome was saved"
        release.set()
        ending = await last
    assert isinstance(ending, TaskStatusUpdateEvent) and ending.status.state == TaskState.TASK_STATE_COMPLETED


@pytest.mark.parametrize("streaming", [False, True], ids=["blocking", "streaming"])
@pytest.mark.parametrize("protocol", ["JSONRPC", "HTTP+JSON"])
async def test_a_v0_3_client_gets_the_same_task(gateway: RunningGateway, protocol: str, streaming: bool) -> None:
    url = gateway.agent_url("held")
    async with httpx.AsyncClient(timeout=30) as http:
        served = (await http.get(f"{url}/.well-known/agent-card.json")).json()
        card = ParseDict(served, AgentCard(), ignore_unknown_fields=True)
        del card.supported_interfaces[:]
        card.supported_interfaces.add(url=url, protocol_binding=protocol, protocol_version="0.3")
        config = ClientConfig(streaming=streaming, httpx_client=http, supported_protocol_bindings=[protocol])
        client = ClientFactory(config).create(card)
        async with asyncio.timeout(WAIT_S):
            events = [e async for e in client.send_message(SendMessageRequest(message=user_message("from 2025")))]
            task = await client.get_task(GetTaskRequest(id=task_id_of(events[0])))
        await client.close()
    assert state_of(events[-1]) == TaskState.TASK_STATE_COMPLETED
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["done: from 2025 after 0 turn(s)"]


async def test_another_caller_cannot_see_cancel_or_follow_the_task(host: Gateway) -> None:
    opened = gate("private")
    handler = host.handler("held")
    alice, mallory = ServerCallContext(user=RunOwner("alice")), ServerCallContext(user=RunOwner("mallory"))
    stream = handler.on_message_send_stream(SendMessageRequest(message=user_message("private")), alice)
    async with asyncio.timeout(WAIT_S):
        task_id = (await anext(stream)).id
        with pytest.raises(TaskNotFoundError):
            await handler.on_get_task(GetTaskRequest(id=task_id), mallory)
        with pytest.raises(TaskNotFoundError):
            await handler.on_cancel_task(CancelTaskRequest(id=task_id), mallory)
        with pytest.raises(TaskNotFoundError):
            await anext(handler.on_subscribe_to_task(SubscribeToTaskRequest(id=task_id), mallory))
        assert len((await handler.on_list_tasks(ListTasksRequest(), mallory)).tasks) == 0
        opened.set()
        rest = [event async for event in stream]
        mine = await handler.on_get_task(GetTaskRequest(id=task_id), alice)
    assert state_of_event(rest[-1]) == TaskState.TASK_STATE_COMPLETED
    assert mine is not None and mine.status.state == TaskState.TASK_STATE_COMPLETED
