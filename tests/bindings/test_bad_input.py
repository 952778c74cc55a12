"""Bad input gets the protocol's own error with a message that says what was wrong, and nothing breaks."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.testing import RunningGateway

V1 = {"A2A-Version": "1.0"}
ECHO = "/agents/echo"


def send_params(text: str = "hi") -> dict[str, Any]:
    return {"message": {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}}


def rpc(method: str, params: Any = None, **extra: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params if params is not None else {}, **extra}


def error_of(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert "error" in body, body
    return body["error"]  # type: ignore[no-any-return]


@pytest.fixture
async def small_gateway(tmp_path: Any) -> AsyncIterator[RunningGateway]:
    from gateway.testing import running_gateway
    from tests.conftest import make_settings

    async with running_gateway(make_settings(tmp_path, max_body_bytes=2048)) as running:
        yield running


async def test_malformed_json_is_a_parse_error(http: httpx.AsyncClient) -> None:
    response = await http.post(ECHO, content=b'{"jsonrpc": "2.0", "id": 1, "method":', headers=V1)
    assert error_of(response)["code"] == -32700


async def test_unknown_method_is_method_not_found(http: httpx.AsyncClient) -> None:
    response = await http.post(ECHO, json=rpc("DoMagic"), headers=V1)
    error = error_of(response)
    assert error["code"] == -32601 and error["message"]


@pytest.mark.parametrize("params", [{"message": "not-an-object"}, {"message": {"role": "ROLE_USER", "parts": 3}}])
async def test_invalid_params(http: httpx.AsyncClient, params: dict[str, Any]) -> None:
    response = await http.post(ECHO, json=rpc("SendMessage", params), headers=V1)
    assert error_of(response)["code"] == -32602


async def test_unsupported_version_is_named(http: httpx.AsyncClient) -> None:
    response = await http.post(ECHO, json=rpc("SendMessage", send_params()), headers={"A2A-Version": "9.9"})
    error = error_of(response)
    assert error["code"] == -32009 and "9.9" in error["message"]


async def test_missing_version_means_0_3_and_a_1_0_method_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(ECHO, json=rpc("SendStreamingMessage", send_params()))
    error = error_of(response)
    assert error["code"] == -32009 and "0.3" in error["message"]


async def test_v0_3_client_is_served(http: httpx.AsyncClient) -> None:
    message = {"role": "user", "parts": [{"kind": "text", "text": "old client"}], "messageId": str(uuid.uuid4())}
    response = await http.post(ECHO, json=rpc("message/send", {"message": message}))
    result = response.json()["result"]
    assert result["status"]["state"] == "completed"
    assert result["artifacts"][0]["parts"][0]["text"] == "old client"


async def test_unknown_agent_is_404_naming_it(http: httpx.AsyncClient) -> None:
    for response in (
        await http.post("/agents/nobody", json=rpc("SendMessage", send_params()), headers=V1),
        await http.get("/agents/nobody/.well-known/agent-card.json"),
    ):
        assert response.status_code == 404
        assert "'nobody'" in response.json()["error"]["message"]


async def test_unknown_task(http: httpx.AsyncClient) -> None:
    response = await http.post(ECHO, json=rpc("GetTask", {"id": "missing-task"}), headers=V1)
    assert error_of(response)["code"] == -32001
    rest = await http.get(f"{ECHO}/tasks/missing-task", headers=V1)
    assert rest.status_code == 404


async def test_wrong_content_type_on_each_binding(http: httpx.AsyncClient) -> None:
    headers = {**V1, "Content-Type": "text/plain"}
    jsonrpc = await http.post(ECHO, content=b'{"jsonrpc":"2.0"}', headers=headers)
    assert error_of(jsonrpc)["code"] == -32005 and "text/plain" in error_of(jsonrpc)["message"]
    rest = await http.post(f"{ECHO}/message:send", content=b"{}", headers=headers)
    assert rest.status_code == 415


async def test_oversized_body_is_refused_before_it_is_read(small_gateway: RunningGateway) -> None:
    big = rpc("SendMessage", send_params("x" * 10_000))
    async with httpx.AsyncClient(base_url=small_gateway.url) as http:
        declared = await http.post(ECHO, json=big, headers=V1)
        assert declared.status_code == 413 and "2048" in error_of(declared)["message"]

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(10):
                yield b"x" * 1024

        streamed = await http.post(f"{ECHO}/message:send", content=chunks(), headers=V1)
        assert streamed.status_code == 413
        still_fine = await http.post(ECHO, json=rpc("SendMessage", send_params("small")), headers=V1)
        assert still_fine.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_bad_input_leaves_no_task_running(http: httpx.AsyncClient) -> None:
    for body in (b"{", b"[]", b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":{"message":{}}}'):
        await http.post(ECHO, content=body, headers={**V1, "Content-Type": "application/json"})
    listed = await http.post(ECHO, json=rpc("ListTasks", {}), headers=V1)
    states = {t["status"]["state"] for t in listed.json()["result"]["tasks"]}
    assert states <= {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_REJECTED"}
    health = await http.get("/readyz")
    assert health.status_code == 200
