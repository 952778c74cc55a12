"""Numbers from the wire that reach the database are bounded where they enter: invalid params, never INTERNAL."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import Client
from a2a.types import a2a_pb2, a2a_pb2_grpc
from a2a.types.a2a_pb2 import ListTasksRequest, Message, Part, Role, SendMessageRequest
from a2a.utils.errors import InvalidParamsError

from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, send
from tests.bindings.test_grpc_binding import grpc_target

V1 = {"A2A-Version": "1.0"}
V1_GRPC = (("a2a-version", "1.0"),)
GRPC = next(b for b in BINDINGS if b.id == "grpc")
YEAR_9999 = 253370764800  # 9999-01-01T00:00:00Z: a valid protobuf Timestamp, past int64 nanoseconds (2262)


@pytest.fixture
async def client(gateway: RunningGateway, binding: Binding) -> AsyncIterator[Client]:
    async with a2a_client(gateway.agent_url("code-review"), binding) as c:
        yield c


def with_hops(hops: Any) -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="def f():\n    return 1\n")])
    message.metadata.update({"switchboard": {"hops": hops}})
    return SendMessageRequest(message=message)


def cursor(ts: int, task_id: str = "x") -> str:
    raw = json.dumps({"ts": ts, "id": task_id}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def test_a_hop_count_no_gateway_sends_is_invalid_params_and_leaves_no_task(client: Client) -> None:
    """1e19 to a workflow once wedged the SQLite writer (its checkpoint's hops column is 64-bit)."""
    with pytest.raises(InvalidParamsError, match="hops"):
        async for _ in client.send_message(with_hops(1e19)):
            pass
    assert len((await client.list_tasks(ListTasksRequest())).tasks) == 0
    task, _ = await send(client, "def g():\n    return 2\n")  # and the store still commits
    assert task.status.state == a2a_pb2.TaskState.TASK_STATE_COMPLETED


async def test_a_hop_count_in_range_is_accepted(client: Client) -> None:
    async for event in client.send_message(with_hops(3)):
        last = event
    assert last.task.status.state == a2a_pb2.TaskState.TASK_STATE_COMPLETED or last.HasField("status_update")


async def test_list_tasks_after_year_2262_is_invalid_params(client: Client) -> None:
    request = ListTasksRequest()
    request.status_timestamp_after.seconds = YEAR_9999
    with pytest.raises(InvalidParamsError, match="statusTimestampAfter"):
        await client.list_tasks(request)


@pytest.mark.parametrize("token", [cursor(10**30), cursor(1, "\ud800")], ids=["time-past-int64", "bad-id"])
async def test_a_forged_page_token_is_invalid_params(client: Client, token: str) -> None:
    with pytest.raises(InvalidParamsError, match="page token"):
        await client.list_tasks(ListTasksRequest(page_token=token))


async def test_rest_and_jsonrpc_answer_a_time_past_2262_with_their_invalid_params_error(
    http: httpx.AsyncClient,
) -> None:
    rest = await http.get("/agents/echo/tasks", params={"statusTimestampAfter": "9999-01-01T00:00:00Z"}, headers=V1)
    assert rest.status_code == 400, rest.text
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "ListTasks",
        "params": {"statusTimestampAfter": "2300-01-01T00:00:00Z"},
    }
    jsonrpc = (await http.post("/agents/echo", json=body, headers=V1)).json()
    assert jsonrpc["error"]["code"] == -32602, jsonrpc


async def test_grpc_refuses_a_timestamp_no_json_client_could_send(gateway: RunningGateway) -> None:
    """Binary protobuf carries what the JSON wire cannot: nanos out of range, a year past 9999."""
    async with grpc.aio.insecure_channel(await grpc_target(gateway)) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        for seconds, nanos in ((1, 2_000_000_000), (1, -5), (10**12, 0)):
            request = ListTasksRequest(tenant="echo")
            request.status_timestamp_after.seconds = seconds
            request.status_timestamp_after.nanos = nanos
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.ListTasks(request, metadata=V1_GRPC)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (seconds, nanos)
            assert "statusTimestampAfter" in (refused.value.details() or "")


@pytest.mark.parametrize("where", ["data part", "message metadata", "part metadata"])
async def test_a_number_json_cannot_carry_is_invalid_params_and_leaves_no_task(
    http: httpx.AsyncClient, gateway: RunningGateway, where: str
) -> None:
    """1e400 parses as infinity (and NaN as itself); stored in a task, no JSON answer could carry that task again."""
    part = '{"data": {"x": 1e400}}' if where == "data part" else '{"text": "hi"}'
    if where == "part metadata":
        part = '{"text": "hi", "metadata": {"x": NaN}}'
    meta = ', "metadata": {"x": -1e400}' if where == "message metadata" else ""
    message = f'{{"role": "ROLE_USER", "messageId": "{uuid.uuid4()}", "parts": [{part}]{meta}}}'
    headers = {**V1, "content-type": "application/json"}
    body = f'{{"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {{"message": {message}}}}}'
    answer = (await http.post("/agents/echo", content=body, headers=headers)).json()
    assert answer["error"]["code"] == -32602 and "finite" in answer["error"]["message"], answer
    rest = await http.post("/agents/echo/message:send", content=f'{{"message": {message}}}', headers=headers)
    assert rest.status_code == 400 and "finite" in rest.text, rest.text
    async with a2a_client(gateway.agent_url("echo"), GRPC) as client:
        request = SendMessageRequest(message=Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4())))
        request.message.parts.add(text="hi")
        request.message.metadata.update({"x": float("inf")})
        with pytest.raises(InvalidParamsError, match="finite"):
            await client.send_message(request).__anext__()
        assert len((await client.list_tasks(ListTasksRequest())).tasks) == 0
