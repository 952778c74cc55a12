"""A NUL character in a request's ids, filters or metadata is invalid params on every binding, on PostgreSQL.

PostgreSQL text cannot hold NUL: without the check such a request reached the database and came back
as -32603 / 500 / INTERNAL carrying PostgreSQL's own message. A part's text with NUL is stored
faithfully (inside the task's protobuf bytes). Through a2a-sdk's client on JSON-RPC, REST and gRPC.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

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
    SendMessageRequest,
    SubscribeToTaskRequest,
    TaskPushNotificationConfig,
)
from a2a.utils.constants import TransportProtocol
from a2a.utils.errors import InvalidParamsError

from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import BINDINGS, WAIT_S, Binding, a2a_client, send, user_message
from tests.conftest import make_settings

UNARY = [b for b in BINDINGS if not b.streaming]
NUL = "\x00"
LEAKS = ("PostgreSQL", "0x00", "asyncpg", "UntranslatableCharacter", "invalid byte sequence")


@pytest.fixture
async def pg_gateway(tmp_path: Path, pg_dsn: str) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, database_url=pg_dsn)) as running:
        yield running


def message_with(**fields: Any) -> SendMessageRequest:
    message = user_message("hi")
    for name, value in fields.items():
        if name == "reference_task_ids":
            message.reference_task_ids.append(value)
        elif name == "metadata":
            message.metadata.update(value)
        else:
            setattr(message, name, value)
    return SendMessageRequest(message=message)


async def drain(stream: Any) -> None:
    async for _ in stream:
        pass


def calls(client: Client, task_id: str, streaming: bool) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every operation that takes an id or text stored in a text column, each with NUL in it.

    SubscribeToTask only on a streaming client (the SDK's client refuses it otherwise); SendMessage
    goes as ``SendMessage`` on a unary client, as ``SendStreamingMessage`` on a streaming one.
    """
    bad = f"x{NUL}"
    config = TaskPushNotificationConfig(task_id=task_id, id=f"c{NUL}", url="http://127.0.0.1:9/hook")
    subscribe: dict[str, Callable[[], Awaitable[Any]]] = {
        "SubscribeToTask": lambda: drain(client.subscribe(SubscribeToTaskRequest(id=bad))),
    }
    return {
        **(subscribe if streaming else {}),
        "GetTask": lambda: client.get_task(GetTaskRequest(id=bad)),
        "CancelTask": lambda: client.cancel_task(CancelTaskRequest(id=bad)),
        "ListTasks contextId": lambda: client.list_tasks(ListTasksRequest(context_id=bad)),
        "GetPushConfig task": lambda: client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=bad, id="c")
        ),
        "GetPushConfig id": lambda: client.get_task_push_notification_config(
            GetTaskPushNotificationConfigRequest(task_id=task_id, id=bad)
        ),
        "ListPushConfigs": lambda: client.list_task_push_notification_configs(
            ListTaskPushNotificationConfigsRequest(task_id=bad)
        ),
        "DeletePushConfig task": lambda: client.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=bad, id="c")
        ),
        "DeletePushConfig id": lambda: client.delete_task_push_notification_config(
            DeleteTaskPushNotificationConfigRequest(task_id=task_id, id=bad)
        ),
        "CreatePushConfig id": lambda: client.create_task_push_notification_config(config),
        "SendMessage taskId": lambda: drain(client.send_message(message_with(task_id=bad))),
        "SendMessage contextId": lambda: drain(client.send_message(message_with(context_id=bad))),
        "SendMessage messageId": lambda: drain(client.send_message(message_with(message_id=bad))),
        "SendMessage referenceTaskIds": lambda: drain(client.send_message(message_with(reference_task_ids=bad))),
        "SendMessage metadata key": lambda: drain(client.send_message(message_with(metadata={bad: "v"}))),
        "SendMessage metadata value": lambda: drain(client.send_message(message_with(metadata={"k": bad}))),
        "SendMessage nested metadata": lambda: drain(client.send_message(message_with(metadata={"k": {"j": [bad]}}))),
    }


async def test_nul_in_an_id_filter_or_metadata_is_invalid_params(pg_gateway: RunningGateway, binding: Binding) -> None:
    async with a2a_client(pg_gateway.agent_url("echo"), binding) as client:
        task, _ = await send(client, "hello")
        for name, call in calls(client, task.id, binding.streaming).items():
            with pytest.raises((InvalidParamsError, httpx.InvalidURL)) as caught:
                async with asyncio.timeout(WAIT_S):
                    await call()
            if isinstance(caught.value, httpx.InvalidURL):  # an id in a REST path: httpx will not send it
                assert binding.protocol == TransportProtocol.HTTP_JSON.value, (name, caught.value)
                continue  # sent percent-encoded in test_raw_nul_requests_get_no_internal_error
            text = str(caught.value)
            assert "NUL" in text, (name, text)
            assert not any(leak in text for leak in LEAKS), (name, text)
        again = await client.get_task(GetTaskRequest(id=task.id))  # nothing broke
        assert again.id == task.id


@pytest.mark.parametrize("binding", UNARY, ids=lambda b: b.id)
async def test_nul_in_a_parts_text_is_stored_faithfully(pg_gateway: RunningGateway, binding: Binding) -> None:
    async with a2a_client(pg_gateway.agent_url("echo"), binding) as client:
        task, _ = await send(client, f"a{NUL}b")
        stored = await client.get_task(GetTaskRequest(id=task.id))
    assert any(part.text == f"a{NUL}b" for message in stored.history for part in message.parts), stored


REST_PATHS: list[tuple[str, str, Any]] = [
    ("GET", "x%00", None),
    ("POST", "x%00:cancel", {}),
    ("GET", "x%00:subscribe", None),
    ("GET", "x%00/pushNotificationConfigs", None),
    ("GET", "x%00/pushNotificationConfigs/c", None),
    ("GET", "x/pushNotificationConfigs/c%00", None),
    ("DELETE", "x%00/pushNotificationConfigs/c", None),
    ("DELETE", "x/pushNotificationConfigs/c%00", None),
    ("POST", "x%00/pushNotificationConfigs", {"url": "http://127.0.0.1:9/hook"}),
]
"""Every REST operation with an id in its path, the id holding NUL (percent-encoded, as httpx will not send it raw)."""


async def test_raw_nul_requests_get_no_internal_error(pg_gateway: RunningGateway) -> None:
    """The requests of the report: REST with a task or config id holding NUL, JSON-RPC GetTask and SendMessage."""
    headers = {"A2A-Version": "1.0"}
    async with httpx.AsyncClient(base_url=pg_gateway.url, timeout=WAIT_S) as http:
        rest = [
            await http.request(method, f"/agents/echo/tasks/{path}", headers=headers, json=body)
            for method, path, body in REST_PATHS
        ]
        rpc = await http.post(
            "/agents/echo",
            headers=headers,
            json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": f"x{NUL}"}},
        )
        sent = await http.post(
            "/agents/echo",
            headers=headers,
            json={
                "jsonrpc": "2.0",
                "id": 2,
                "method": "SendMessage",
                "params": {
                    "message": {
                        "role": "ROLE_USER",
                        "messageId": str(uuid.uuid4()),
                        "contextId": f"c{NUL}",
                        "parts": [{"text": "hi"}],
                    }
                },
            },
        )
    for (method, path, _), answer in zip(REST_PATHS, rest, strict=True):
        assert answer.status_code == 400, (method, path, answer.text)
        assert "NUL" in answer.text and not any(leak in answer.text for leak in LEAKS), (method, path, answer.text)
    for answer in (rpc, sent):
        error = answer.json()["error"]
        assert error["code"] == -32602, error
        assert "NUL" in error["message"] and not any(leak in str(error) for leak in LEAKS), error
