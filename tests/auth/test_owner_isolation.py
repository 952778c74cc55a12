"""The caller is the task owner: on JSON-RPC, REST and gRPC another caller can neither get, list, cancel,
subscribe to, nor configure push for a task, while its owner can. Through a2a-sdk's client and its
``AuthInterceptor``, which sends each caller's credential the way the card asks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
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
from a2a.utils.errors import TaskNotFoundError

from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import WAIT_S, ApiKeys, JwksServer, Keys, api_key, auth_settings, authed_client, bearer, mint
from tests.bindings.a2a_clients import BINDINGS, Binding, start

UNARY = [b for b in BINDINGS if not b.streaming]  # jsonrpc, rest, grpc
HOOK = "http://127.0.0.1:9/hook"


@dataclass
class Callers:
    alice: Client
    bob: Client
    alice_streaming: Client
    bob_streaming: Client


@pytest.fixture(params=UNARY, ids=lambda b: b.id)
async def callers(
    request: pytest.FixtureRequest, gateway: RunningGateway, keys: Keys, api_keys: ApiKeys
) -> AsyncIterator[Callers]:
    binding: Binding = request.param
    url = gateway.agent_url("notes")
    alice = bearer(mint(keys.rsa, sub="alice", scopes=["notes:use"], expires_in=600))
    bob = api_key(api_keys.ci)  # another caller, another credential kind: apikey:ci
    async with AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(authed_client(url, replace(binding, streaming=streaming), who))
            for who, streaming in ((alice, False), (bob, False), (alice, True), (bob, True))
        ]
        yield Callers(*clients)


async def test_another_caller_cannot_get_list_cancel_or_subscribe(callers: Callers) -> None:
    task = await start(callers.alice, "wait: 30")
    with pytest.raises(TaskNotFoundError):
        await callers.bob.get_task(GetTaskRequest(id=task.id))
    listed = await callers.bob.list_tasks(ListTasksRequest())
    assert task.id not in [t.id for t in listed.tasks]
    with pytest.raises(TaskNotFoundError):
        await callers.bob.cancel_task(CancelTaskRequest(id=task.id))
    with pytest.raises(TaskNotFoundError):
        async with asyncio.timeout(WAIT_S):
            async for _ in callers.bob_streaming.subscribe(SubscribeToTaskRequest(id=task.id)):
                pass

    assert (await callers.alice.get_task(GetTaskRequest(id=task.id))).status.state == TaskState.TASK_STATE_WORKING
    assert task.id in [t.id for t in (await callers.alice.list_tasks(ListTasksRequest())).tasks]
    async with asyncio.timeout(WAIT_S):
        async for event in callers.alice_streaming.subscribe(SubscribeToTaskRequest(id=task.id)):
            if event.HasField("task") or event.HasField("status_update"):
                break  # the owner is following it
    canceled = await callers.alice.cancel_task(CancelTaskRequest(id=task.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED


async def test_another_caller_cannot_configure_push_for_a_task(callers: Callers) -> None:
    task = await start(callers.alice, "wait: 30")
    hook = TaskPushNotificationConfig(task_id=task.id, id="hook-1", url=HOOK, token="alice-secret")
    await callers.alice.create_task_push_notification_config(hook)

    with pytest.raises(TaskNotFoundError):
        await callers.bob.create_task_push_notification_config(
            TaskPushNotificationConfig(task_id=task.id, id="hook-2", url=HOOK)
        )
    with pytest.raises(TaskNotFoundError):
        await callers.bob.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
        )
    with pytest.raises(TaskNotFoundError):
        await callers.bob.list_task_push_notification_configs(ListTaskPushNotificationConfigsRequest(task_id=task.id))
    with pytest.raises(TaskNotFoundError):
        await callers.bob.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
        )

    mine = await callers.alice.list_task_push_notification_configs(
        ListTaskPushNotificationConfigsRequest(task_id=task.id)
    )
    assert [(c.id, c.token) for c in mine.configs] == [("hook-1", "alice-secret")]  # bob's delete did nothing
    got = await callers.alice.get_task_push_notification_config(
        GetTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
    )
    assert got.url == HOOK
    await callers.alice.delete_task_push_notification_config(
        DeleteTaskPushNotificationConfigRequest(task_id=task.id, id="hook-1")
    )
    await callers.alice.cancel_task(CancelTaskRequest(id=task.id))


async def test_a_token_whose_subject_holds_nul_is_refused_on_postgresql(
    tmp_path: Path, pg_dsn: str, jwks: JwksServer, api_keys: ApiKeys, keys: Keys
) -> None:
    """The subject names the owner of the caller's tasks, a text column PostgreSQL cannot hold NUL in: 401 saying so."""
    token = mint(keys.rsa, sub="al\x00ice", scopes=["notes:use"])
    message = {"role": "ROLE_USER", "messageId": "m-1", "parts": [{"text": "hi"}]}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
    headers = {"Authorization": f"Bearer {token}", "A2A-Version": "1.0"}
    settings = auth_settings(tmp_path, jwks.url, api_keys, database_url=pg_dsn)
    async with running_gateway(settings) as running, httpx.AsyncClient(base_url=running.url, timeout=WAIT_S) as http:
        rest = await http.get("/agents/notes/tasks", headers=headers)
        rpc = await http.post("/agents/notes", headers=headers, json=body)
    assert rest.status_code == 401, rest.text
    assert rpc.status_code == 401, rpc.text
    for answer in (rest, rpc):
        assert "NUL" in answer.text and "sub" in answer.text, answer.text
