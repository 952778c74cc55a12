"""Every client mistake gets the protocol's own client error, and the log one short line for it.

Invalid UTF-8, JSON nested past any sensible depth, a v0.3 gRPC part with no content, a message
with more parts than a request may carry, and ids of megabytes: each is a 4xx / -326xx /
INVALID_ARGUMENT, never a 500, -32603 or INTERNAL, and never a traceback in the log.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from a2a.compat.v0_3 import a2a_v0_3_pb2, a2a_v0_3_pb2_grpc
from a2a.types import a2a_pb2, a2a_pb2_grpc
from mcp.client import Client

from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings

V1 = {"A2A-Version": "1.0", "Content-Type": "application/json"}
ECHO = "/agents/echo"
MAX_PARTS = 8
LOG_LINE_LIMIT = 4096  # what one record may weigh, however large the input


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(tmp_path, grpc_default_agent="echo", max_message_parts=MAX_PARTS, mcp_tools=["echo"])
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        yield client


def _grpc_target(gateway: RunningGateway) -> str:
    card = gateway.app.state.gateway.agents["echo"].card.body
    return next(i["url"] for i in card["supportedInterfaces"] if i["protocolBinding"] == "GRPC")


def _quiet(caplog: pytest.LogCaptureFixture) -> None:
    """No traceback, nothing above WARNING, no huge record: a client's mistake is not the gateway's."""
    for record in caplog.records:
        assert record.exc_info is None, f"traceback logged for a client's mistake: {record.getMessage()[:300]}"
        assert record.levelno <= logging.WARNING, record.getMessage()[:300]
        assert len(record.getMessage()) <= LOG_LINE_LIMIT, record.getMessage()[:300]


def _rpc(method: Any, params: Any, id_: Any = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": id_, "method": method, "params": params}).encode()


def _message(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"role": "ROLE_USER", "parts": list(parts) or [{"text": "hi"}], "messageId": str(uuid.uuid4())}


INVALID_UTF8 = b'{"message": {"role": "ROLE_USER", "parts": [{"text": "\xff\xfe"}], "messageId": "m1"}}'
DEEP = b'{"message": ' + b"[" * 1000 + b"]" * 1000 + b"}"


@pytest.mark.parametrize(
    "body",
    [INVALID_UTF8, b"\xff\xfe", DEEP, INVALID_UTF8.replace(b"\xff\xfe", b"\\ud83d")],
    ids=["utf8-in-text", "utf8-only", "nested-1000", "lone-surrogate"],
)
async def test_undecodable_json_is_400_on_rest(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    response = await http.post(f"{ECHO}/message:send", content=body, headers=V1)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"
    _quiet(caplog)


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":' + INVALID_UTF8 + b"}",
        b"\xff\xfe",
        b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"jsonrpc":"2.0","id":1,"method":"SendMessage","params":' + b'{"a":' * 1000 + b"1" + b"}" * 1001,
        b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":{"id":"\\ud800"}}',
        b'[{"jsonrpc":"2.0","method":"CancelTask","params":"\\udc00"}]',
    ],
    ids=["utf8-in-text", "utf8-only", "nested-arrays", "nested-objects", "lone-surrogate", "lone-surrogate-batch"],
)
async def test_undecodable_json_is_a_parse_error_on_jsonrpc(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    response = await http.post(ECHO, content=body, headers=V1)
    error = response.json()["error"]
    assert error["code"] == -32700, error
    assert len(error["message"]) < 300
    _quiet(caplog)


async def test_a_body_in_utf_16_is_a_parse_error(http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    body = b"\x00" + _rpc("GetTask", {"id": "t1"})  # Python's JSON reader would take this for UTF-16
    assert (await http.post(ECHO, content=body, headers=V1)).json()["error"]["code"] == -32700
    assert (await http.post(f"{ECHO}/message:send", content=body, headers=V1)).status_code == 400
    _quiet(caplog)


@pytest.mark.parametrize("query", ["historyLength=x", "historyLength=2147483648", "pageSize=1e3", "pageSize="])
@pytest.mark.parametrize("path", ["/v1/tasks/t1", "/tasks/t1", "/tasks"], ids=["v0.3", "v1.0", "list"])
async def test_a_bad_integer_query_parameter_is_400(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, path: str, query: str
) -> None:
    version = {} if path.startswith("/v1") else V1
    response = await http.get(f"{ECHO}{path}?{query}", headers=version)
    assert response.status_code == 400, response.text
    _quiet(caplog)


async def test_subscribing_to_an_unknown_task_over_v0_3_rest_is_404(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for method in ("GET", "POST"):
        response = await http.request(method, f"{ECHO}/v1/tasks/no-such-task:subscribe")
        assert response.status_code == 404, response.text
    _quiet(caplog)


@pytest.mark.parametrize(
    "body",
    [
        _rpc({"a": 1}, {}),
        _rpc("SendMessage", {"message": {"parts": "nope"}}),
        _rpc("SendMessage", {"message": _message()}, id_={"an": "object"}),
    ],
    ids=["method-object", "params-unparsable", "id-object"],
)
async def test_a_malformed_jsonrpc_request_logs_no_traceback(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    response = await http.post(ECHO, content=body, headers=V1)
    assert response.json()["error"]["code"] in (-32600, -32602)
    _quiet(caplog)


async def test_a_huge_jsonrpc_id_is_clipped_in_the_log(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    huge = "x" * 1_000_000
    response = await http.post(ECHO, content=_rpc("DoMagic", {}, id_=huge), headers=V1)
    assert response.json()["error"]["code"] == -32601
    assert any("Request Error" in r.getMessage() for r in caplog.records)  # logged, and clipped
    _quiet(caplog)


async def test_a_v0_3_method_sent_as_1_0_is_a_version_error_not_internal(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    for method in ("agent/getAuthenticatedExtendedCard", "tasks/get"):
        response = await http.post(ECHO, content=_rpc(method, {"id": "t1"}), headers=V1)
        error = response.json()["error"]
        assert error["code"] == -32009 and "0.3" in error["message"], error
    _quiet(caplog)


async def test_an_operation_the_agent_does_not_offer_logs_no_error(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    response = await http.post(ECHO, content=_rpc("agent/getAuthenticatedExtendedCard", {}))
    assert response.json()["error"]["code"] in (-32004, -32007)  # unsupported operation, or not configured
    _quiet(caplog)


@pytest.mark.parametrize(
    "part",
    [a2a_v0_3_pb2.Part(), a2a_v0_3_pb2.Part(metadata={"only": "metadata"})],
    ids=["empty", "metadata-only"],
)
async def test_an_empty_part_on_v0_3_grpc_is_invalid_argument(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture, part: a2a_v0_3_pb2.Part
) -> None:
    message = a2a_v0_3_pb2.Message(message_id="m1", role=a2a_v0_3_pb2.ROLE_USER, content=[part])
    async with grpc.aio.insecure_channel(_grpc_target(gateway)) as channel:
        stub = a2a_v0_3_pb2_grpc.A2AServiceStub(channel)
        for call in (stub.SendMessage, stub.SendStreamingMessage):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                reply = call(a2a_v0_3_pb2.SendMessageRequest(request=message))
                if hasattr(reply, "__aiter__"):
                    async for _ in reply:
                        pass
                else:
                    await reply
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "part" in (refused.value.details() or "").lower()
    _quiet(caplog)


# -- per-request limits ---------------------------------------------------------------------------


def _files(count: int) -> list[dict[str, Any]]:
    return [{"raw": "eD0x", "filename": f"f{n}.py", "mediaType": "text/x-python"} for n in range(count)]


async def test_too_many_parts_is_invalid_params_on_http(
    http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    params = {"message": _message(*_files(MAX_PARTS + 1))}
    rpc = (await http.post(ECHO, content=_rpc("SendMessage", params), headers=V1)).json()["error"]
    assert rpc["code"] == -32602 and f"at most {MAX_PARTS}" in rpc["message"]
    rest = await http.post(f"{ECHO}/message:send", content=json.dumps(params).encode(), headers=V1)
    assert rest.status_code == 400 and f"at most {MAX_PARTS}" in rest.json()["error"]["message"]
    stream = await http.post(ECHO, content=_rpc("SendStreamingMessage", params), headers=V1)
    assert "-32602" in stream.text and f"at most {MAX_PARTS}" in stream.text
    listed = (await http.post(ECHO, content=_rpc("ListTasks", {}), headers=V1)).json()["result"]
    assert listed.get("tasks", []) == []  # nothing was started
    ok = await http.post(ECHO, content=_rpc("SendMessage", {"message": _message(*_files(MAX_PARTS))}), headers=V1)
    assert ok.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    _quiet(caplog)


async def test_too_many_parts_is_invalid_argument_on_grpc(gateway: RunningGateway) -> None:
    parts = [a2a_pb2.Part(text=str(n)) for n in range(MAX_PARTS + 1)]
    message = a2a_pb2.Message(message_id="m1", role=a2a_pb2.ROLE_USER, parts=parts)
    async with grpc.aio.insecure_channel(_grpc_target(gateway)) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SendMessage(
                a2a_pb2.SendMessageRequest(tenant="echo", message=message), metadata=(("a2a-version", "1.0"),)
            )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_PARTS}" in (refused.value.details() or "")


async def test_too_many_files_is_an_mcp_tool_error(gateway: RunningGateway) -> None:
    files = [{"name": f"f{n}.py", "content": "x = 1\n"} for n in range(MAX_PARTS + 1)]
    async with Client(f"{gateway.url}/mcp", mode="legacy", read_timeout_seconds=30) as client:
        result = await client.call_tool("start_run", {"agent": "echo", "files": files})
    assert result.is_error
    assert f"at most {MAX_PARTS}" in result.content[0].text  # type: ignore[union-attr]


async def test_a_huge_run_id_is_clipped(gateway: RunningGateway, caplog: pytest.LogCaptureFixture) -> None:
    huge = "r" * 2_000_000
    async with Client(f"{gateway.url}/mcp", mode="legacy", read_timeout_seconds=30) as client:
        result = await client.call_tool("get_run", {"run_id": huge})
    assert result.is_error
    assert len(result.content[0].text) < 1000  # type: ignore[union-attr]
    _quiet(caplog)
