"""Every A2A operation through a2a-sdk's own client, with the same assertions on every binding."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from a2a.client import Client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    DeleteTaskPushNotificationConfigRequest,
    GetTaskPushNotificationConfigRequest,
    GetTaskRequest,
    ListTaskPushNotificationConfigsRequest,
    ListTasksRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError

from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import WAIT_S, Binding, a2a_client, artifact_texts, send, start


@pytest.fixture
async def client(binding: Binding, gateway: RunningGateway) -> AsyncIterator[Client]:
    async with a2a_client(gateway.agent_url("echo"), binding) as c:
        yield c


async def test_send_message_completes_with_artifact(client: Client) -> None:
    task, _ = await send(client, "hello switchboard")
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["hello switchboard"]
    assert [p.text for p in task.status.message.parts] == ["hello switchboard"]
    assert task.history[0].parts[0].text == "hello switchboard"


async def test_streamed_progress_arrives_in_order(client: Client) -> None:
    task, events = await send(client, "wait: 0.5")
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["waited 0.5s"]
    if client._config.streaming:  # a streaming binding shows every step as it happens
        states = [e.status_update.status.state for e in events if e.HasField("status_update")]
        assert states[0] == TaskState.TASK_STATE_WORKING
        assert states[-1] == TaskState.TASK_STATE_COMPLETED
        assert any(e.HasField("artifact_update") for e in events)


async def test_get_and_list_tasks(client: Client) -> None:
    first, _ = await send(client, "one")
    second, _ = await send(client, "two", context_id=first.context_id)
    fetched = await client.get_task(GetTaskRequest(id=first.id))
    assert fetched.id == first.id and artifact_texts(fetched) == ["one"]
    page = await client.list_tasks(ListTasksRequest(context_id=first.context_id, include_artifacts=True))
    assert [t.id for t in page.tasks] == [second.id, first.id]
    assert page.total_size == 2
    one_page = await client.list_tasks(ListTasksRequest(context_id=first.context_id, page_size=1))
    assert [t.id for t in one_page.tasks] == [second.id] and one_page.next_page_token
    rest = await client.list_tasks(
        ListTasksRequest(context_id=first.context_id, page_size=1, page_token=one_page.next_page_token)
    )
    assert [t.id for t in rest.tasks] == [first.id]


async def test_cancel_reaches_a_running_task(client: Client) -> None:
    task = await start(client, "wait: 30")
    canceled = await client.cancel_task(CancelTaskRequest(id=task.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    again = await client.get_task(GetTaskRequest(id=task.id))
    assert again.status.state == TaskState.TASK_STATE_CANCELED


async def test_cancel_of_finished_task_is_refused(client: Client) -> None:
    task, _ = await send(client, "done")
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(CancelTaskRequest(id=task.id))


async def test_subscribe_follows_a_running_task_to_the_end(
    client: Client, binding: Binding, gateway: RunningGateway
) -> None:
    # The task works far longer than the test and is ended by the test once the subscription is in: a task that
    # ended before the subscription would be refused (A2A: no SubscribeToTask on a task in a terminal state).
    task = await start(client, "wait: 60")
    states = []
    # The SDK's client subscribes only when configured for streaming; same binding, streaming on.
    async with (
        a2a_client(gateway.agent_url("echo"), replace(binding, streaming=True)) as streaming,
        asyncio.timeout(WAIT_S),
    ):
        async for event in streaming.subscribe(SubscribeToTaskRequest(id=task.id)):
            if event.HasField("task"):  # the task as it stands: the subscription is in
                assert event.task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
                await client.cancel_task(CancelTaskRequest(id=task.id))
            if event.HasField("status_update"):
                states.append(event.status_update.status.state)
    assert states[-1] == TaskState.TASK_STATE_CANCELED
    final = await client.get_task(GetTaskRequest(id=task.id))
    assert final.status.state == TaskState.TASK_STATE_CANCELED


async def test_follow_up_message_continues_an_input_required_task(client: Client) -> None:
    asked, _ = await send(client, "ask: what is your name?")
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert asked.status.message.parts[0].text == "what is your name?"
    answered, _ = await send(client, "Ada", task_id=asked.id)
    assert answered.id == asked.id and answered.context_id == asked.context_id
    assert answered.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(answered) == ["You answered: Ada"]


async def test_push_notification_config_lifecycle(client: Client) -> None:
    task = await start(client, "wait: 30")
    created = await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=task.id, id="hook-1", url="http://127.0.0.1:9/hook", token="t0k")
    )
    assert created.id == "hook-1" and created.url == "http://127.0.0.1:9/hook"
    got = await client.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
    )
    assert got.token == "t0k"
    listed = await client.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task.id))
    assert [c.id for c in listed.configs] == ["hook-1"]
    await client.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
    )
    listed = await client.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task.id))
    assert list(listed.configs) == []
    await client.cancel_task(CancelTaskRequest(id=task.id))


async def test_unknown_task_is_not_found(client: Client) -> None:
    with pytest.raises(TaskNotFoundError):
        await client.get_task(GetTaskRequest(id="no-such-task"))


async def test_failed_agent_reports_the_reason(client: Client) -> None:
    task, _ = await send(client, "fail: the disk is full")
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert task.status.message.parts[0].text == "the disk is full"


async def test_tasks_of_one_agent_are_not_visible_through_another(
    client: Client, binding: Binding, gateway: RunningGateway
) -> None:
    task, _ = await send(client, "mine")
    async with a2a_client(gateway.agent_url("style-reviewer"), binding) as other:
        with pytest.raises(TaskNotFoundError):
            await other.get_task(GetTaskRequest(id=task.id))
