"""A2A over gRPC: a2a-sdk's own client against the real gateway, and raw stubs for bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from email.utils import formatdate
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.compat.v0_3 import a2a_v0_3_pb2, a2a_v0_3_pb2_grpc
from a2a.types import a2a_pb2_grpc
from a2a.types.a2a_pb2 import (
    AgentCard,
    AgentInterface,
    GetTaskRequest,
    Message,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, TransportProtocol
from a2a.utils.errors import InvalidParamsError
from a2a.utils.grpc_status import status_from_call
from google.protobuf.json_format import ParseDict
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gateway.bindings.a2a_grpc import A2A_SERVICE, A2A_V03_SERVICE, start_grpc_server
from gateway.errors import UnknownAgentError
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import artifact_texts, send, user_message
from tests.conftest import make_settings

WAIT_S = 20.0
V1 = (("a2a-version", "1.0"),)


# --- clients ------------------------------------------------------------------------------------


@asynccontextmanager
async def grpc_client(agent_url: str, *, streaming: bool) -> AsyncIterator[Client]:
    """a2a-sdk's client for the agent at ``agent_url``, over the GRPC interface its card lists."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT_S)) as http:
        config = ClientConfig(
            streaming=streaming,
            httpx_client=http,
            supported_protocol_bindings=[TransportProtocol.GRPC.value],
            use_client_preference=True,
            grpc_channel_factory=grpc.aio.insecure_channel,
        )
        client = await ClientFactory(config).create_from_url(agent_url)
        try:
            yield client
        finally:
            await client.close()


async def card_of(gateway: RunningGateway, agent: str = "echo") -> httpx.Response:
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        return await http.get(f"{gateway.agent_url(agent)}/.well-known/agent-card.json")


async def grpc_target(gateway: RunningGateway) -> str:
    """The ``host:port`` the cards say gRPC is at."""
    interfaces = (await card_of(gateway)).json()["supportedInterfaces"]
    return next(i["url"] for i in interfaces if i["protocolBinding"] == TransportProtocol.GRPC.value)


@asynccontextmanager
async def raw_channel(gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(await grpc_target(gateway)) as channel:
        yield channel


@pytest.fixture
async def channel(gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with raw_channel(gateway) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> a2a_pb2_grpc.A2AServiceStub:
    return a2a_pb2_grpc.A2AServiceStub(channel)


async def rpc_error(call: Any) -> grpc.aio.AioRpcError:
    """The error a call ends with (it must end with one, within the bound)."""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async with asyncio.timeout(WAIT_S):
            result = call()
            if hasattr(result, "__aiter__"):
                async for _ in result:
                    pass
            else:
                await result
    return caught.value


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = status_from_call(error)
    assert status is not None, f"no status details in {error!r}"
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    raise AssertionError(f"no ErrorInfo in {status}")


def bad_request(error: grpc.aio.AioRpcError) -> error_details_pb2.BadRequest:
    status = status_from_call(error)
    assert status is not None
    for detail in status.details:
        found = error_details_pb2.BadRequest()
        if detail.Unpack(found):
            return found
    raise AssertionError(f"no BadRequest in {status}")


def send_request(text: str = "hi", tenant: str = "echo") -> SendMessageRequest:
    return SendMessageRequest(tenant=tenant, message=user_message(text))


# --- the card -----------------------------------------------------------------------------------


async def test_card_lists_all_three_bindings_with_the_bound_grpc_port(gateway: RunningGateway) -> None:
    response = await card_of(gateway)
    card = response.json()
    by_binding = {i["protocolBinding"]: i for i in card["supportedInterfaces"]}
    assert set(by_binding) == {"JSONRPC", "HTTP+JSON", "GRPC"}
    grpc_iface = by_binding["GRPC"]
    host, _, port = grpc_iface["url"].rpartition(":")
    assert host == "127.0.0.1" and int(port) > 0  # settings said 0: the card names the port it got
    assert grpc_iface["tenant"] == "echo" and grpc_iface["protocolVersion"] == "1.0"
    started = gateway.app.state.gateway.started
    assert response.headers["last-modified"] == formatdate(started, usegmt=True)
    if gateway.settings.sign_cards:
        assert card["signatures"], "re-rendering the card for gRPC must keep it signed"


async def test_every_agent_is_served_on_the_one_grpc_port(gateway: RunningGateway) -> None:
    agents = gateway.app.state.gateway.agents
    interfaces = []
    for name in agents:
        card = (await card_of(gateway, name)).json()
        interfaces += [i for i in card["supportedInterfaces"] if i["protocolBinding"] == "GRPC"]
    assert len({i["url"] for i in interfaces}) == 1
    assert sorted(i["tenant"] for i in interfaces) == sorted(agents)


# --- the task lifecycle through a2a-sdk's client --------------------------------------------------


# --- bad input: proper status codes with A2A error details ---------------------------------------


async def test_unknown_task_is_not_found_with_error_info(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    error = await rpc_error(lambda: stub.GetTask(GetTaskRequest(tenant="echo", id="nope"), metadata=V1))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    info = error_info(error)
    assert (info.reason, info.domain) == ("TASK_NOT_FOUND", "a2a-protocol.org")


async def test_subscribe_to_unknown_task_is_not_found(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    error = await rpc_error(lambda: stub.SubscribeToTask(SubscribeToTaskRequest(tenant="echo", id="nope"), metadata=V1))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert error_info(error).reason == "TASK_NOT_FOUND"


@pytest.mark.parametrize(
    ("metadata", "shown"),
    [((), "'0.3'"), ((("a2a-version", "99.0"),), "'99.0'"), ((("a2a-version", "0.3"),), "'0.3'")],
    ids=["missing", "future", "old"],
)
async def test_unsupported_version_is_unimplemented(
    stub: a2a_pb2_grpc.A2AServiceStub, metadata: Sequence[tuple[str, str]], shown: str
) -> None:
    error = await rpc_error(lambda: stub.SendMessage(send_request(), metadata=metadata))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED  # the spec's mapping (5.4), as the TCK checks
    assert shown in (error.details() or "")
    assert error_info(error).reason == "VERSION_NOT_SUPPORTED"


async def test_streaming_call_checks_the_version_too(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    error = await rpc_error(lambda: stub.SendStreamingMessage(send_request(), metadata=()))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "a2a-version" in (error.details() or "")


async def test_patch_version_does_not_matter(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    response = await stub.SendMessage(send_request("patch"), metadata=(("a2a-version", "1.0.7"),), timeout=WAIT_S)
    assert response.task.status.state == TaskState.TASK_STATE_COMPLETED


async def test_unknown_agent_is_not_found_and_named(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    error = await rpc_error(lambda: stub.GetTask(GetTaskRequest(tenant="ghost", id="t"), metadata=V1))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "'ghost'" in (error.details() or "")
    assert (error_info(error).reason, error_info(error).domain) == ("UNKNOWN_AGENT", "switchboard")


async def test_missing_tenant_without_default_agent_is_invalid_argument(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    error = await rpc_error(lambda: stub.SendMessage(send_request(tenant=""), metadata=V1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tenant" in (error.details() or "") and "echo" in (error.details() or "")
    assert error_info(error).reason == "INVALID_PARAMS"


async def test_undecodable_request_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary(f"/{A2A_SERVICE.full_name}/GetTask")
    error = await rpc_error(lambda: raw(b"\xff\xff\xff", metadata=V1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lf.a2a.v1.GetTaskRequest" in (error.details() or "")
    assert error_info(error).reason == "INVALID_REQUEST"


async def test_undecodable_streaming_request_is_invalid_argument(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_stream(f"/{A2A_SERVICE.full_name}/SendStreamingMessage")
    error = await rpc_error(lambda: raw(b"\x0a\x05ab", metadata=V1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_message_without_required_fields_names_them(stub: a2a_pb2_grpc.A2AServiceStub) -> None:
    request = SendMessageRequest(tenant="echo", message=Message(message_id="m-1"))
    error = await rpc_error(lambda: stub.SendMessage(request, metadata=V1))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_info(error).reason == "INVALID_PARAMS"
    fields = {v.field for v in bad_request(error).field_violations}
    assert {"message.role", "message.parts"} <= fields
    assert "message.parts" in (error.details() or "")


async def test_client_sees_invalid_params_for_a_bad_message(gateway: RunningGateway) -> None:
    async with grpc_client(gateway.agent_url("echo"), streaming=False) as client:
        with pytest.raises(InvalidParamsError):
            async for _ in client.send_message(SendMessageRequest(message=Message(message_id="m-2"))):
                pass


async def test_unknown_method_is_unimplemented(channel: grpc.aio.Channel) -> None:
    raw = channel.unary_unary(f"/{A2A_SERVICE.full_name}/DropAllTables")
    error = await rpc_error(lambda: raw(b"", metadata=V1))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_bug_is_internal_without_its_text(
    gateway: RunningGateway, stub: a2a_pb2_grpc.A2AServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> Task:
        raise RuntimeError("secret-internal-detail")

    monkeypatch.setattr(gateway.app.state.gateway.agents["echo"].handler, "on_get_task", broken)
    error = await rpc_error(lambda: stub.GetTask(GetTaskRequest(tenant="echo", id="t"), metadata=V1))
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "secret-internal-detail" not in (error.details() or "")
    assert error_info(error).reason == "INTERNAL_ERROR"


# --- health and reflection ---------------------------------------------------------------------


async def test_health_reports_each_service_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", A2A_SERVICE.full_name, A2A_V03_SERVICE.full_name):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=WAIT_S)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, service
    error = await rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(service="no.Such")))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def test_reflection_lists_the_services(channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    async with asyncio.timeout(WAIT_S):
        responses = [r async for r in reflection.ServerReflectionInfo(iter([request]))]
    names = {s.name for s in responses[0].list_services_response.service}
    assert {A2A_SERVICE.full_name, A2A_V03_SERVICE.full_name, "grpc.health.v1.Health"} <= names


# --- calls without a tenant: the TCK's way, and v0.3 clients -------------------------------------


@pytest.fixture
async def defaulted(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway whose tenant-less gRPC calls go to ``echo``."""
    async with running_gateway(make_settings(tmp_path, grpc_default_agent="echo")) as running:
        yield running


async def test_tck_style_call_without_tenant_reaches_the_default_agent(defaulted: RunningGateway) -> None:
    # As the TCK's GrpcClient does: dial the interface URL, send a2a-version only, no tenant.
    message = {"role": "ROLE_USER", "parts": [{"text": "from the tck"}], "messageId": "tck-complete-task-1"}
    request = ParseDict({"message": message}, SendMessageRequest())
    async with raw_channel(defaulted) as channel:
        response = await a2a_pb2_grpc.A2AServiceStub(channel).SendMessage(request, metadata=V1, timeout=WAIT_S)
    assert response.task.status.state == TaskState.TASK_STATE_COMPLETED


async def test_tenant_still_wins_over_the_default_agent(defaulted: RunningGateway) -> None:
    async with raw_channel(defaulted) as channel:
        stub = a2a_pb2_grpc.A2AServiceStub(channel)
        error = await rpc_error(lambda: stub.GetTask(GetTaskRequest(tenant="ghost", id="t"), metadata=V1))
    assert error.code() == grpc.StatusCode.NOT_FOUND


async def v03_client(gateway: RunningGateway) -> Client:
    """a2a-sdk's client speaking v0.3 gRPC, from a card that offers only that."""
    interface = AgentInterface(
        url=await grpc_target(gateway),
        protocol_binding=TransportProtocol.GRPC.value,
        protocol_version=PROTOCOL_VERSION_0_3,
    )
    card = AgentCard(name="echo", supported_interfaces=[interface])
    config = ClientConfig(
        streaming=False,
        supported_protocol_bindings=[TransportProtocol.GRPC.value],
        grpc_channel_factory=grpc.aio.insecure_channel,
    )
    return ClientFactory(config).create(card)


async def test_v03_client_reaches_the_default_agent(defaulted: RunningGateway) -> None:
    client = await v03_client(defaulted)
    try:
        task, _ = await send(client, "old but gold")
    finally:
        await client.close()
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["old but gold"]


async def test_v03_call_without_default_agent_says_why(channel: grpc.aio.Channel) -> None:
    stub = a2a_v0_3_pb2_grpc.A2AServiceStub(channel)
    request = a2a_v0_3_pb2.GetTaskRequest(name="tasks/t")
    error = await rpc_error(lambda: stub.GetTask(request, metadata=(("a2a-version", "0.3"),)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (error.details() or "").startswith("InvalidParamsError: ")  # the form v0.3 clients parse


async def test_v03_service_refuses_a_v1_version(channel: grpc.aio.Channel) -> None:
    stub = a2a_v0_3_pb2_grpc.A2AServiceStub(channel)
    error = await rpc_error(lambda: stub.GetTask(a2a_v0_3_pb2.GetTaskRequest(name="tasks/t"), metadata=V1))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    assert (error.details() or "").startswith("VersionNotSupportedError: ")


# --- the server's lifecycle ----------------------------------------------------------------------


async def test_grpc_port_closes_with_the_gateway(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as running:
        target = await grpc_target(running)
    async with grpc.aio.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        error = await rpc_error(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=WAIT_S))
    assert error.code() == grpc.StatusCode.UNAVAILABLE


async def test_port_in_use_fails_to_start_clearly(gateway: RunningGateway) -> None:
    taken = int((await grpc_target(gateway)).rpartition(":")[2])
    with pytest.raises(OSError, match=f"127.0.0.1:{taken}"):
        await start_grpc_server({}, host="127.0.0.1", port=taken)


async def test_unknown_default_agent_fails_to_start() -> None:
    with pytest.raises(UnknownAgentError, match="ghost"):
        await start_grpc_server({}, host="127.0.0.1", port=0, default_agent="ghost")
