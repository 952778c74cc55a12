"""A federation refusal reaches the caller with a client-side code and its reason, on JSON-RPC, REST and gRPC.

A loop across gateways, the hop limit, a peer out of service (its card does not verify) and a
peer that cannot be reached each get a code of their own, never this gateway's 500 / -32603 /
INTERNAL; the error's details say the reason and whether trying again may help. A peer that
answers with bytes that are not A2A is a clear peer error, not a raw ``UnicodeDecodeError``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from a2a.client.transports.jsonrpc import JsonRpcTransport
from a2a.client.transports.rest import _parse_rest_error
from a2a.server.request_handlers.response_helpers import build_error_response
from a2a.types import a2a_pb2_grpc
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest
from a2a.utils.error_handlers import build_rest_error_payload
from a2a.utils.grpc_status import status_from_call
from google.rpc import error_details_pb2

from gateway.errors import WIRE, PeerError, register_with_sdk
from gateway.federation.errors import translate
from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.federation.slow_peer import FakePeer
from tests.federation.support import V1, BackgroundLoop, agent_file, free_port, python_agent, rpc, write_yaml

ECHO = "gateway.agents.echo:EchoExecutor"
GATEWAY_ID = "gw-a"
HOP_LIMIT = {"switchboard": {"hops": 8, "via": ["gw-x"]}}
LOOP = {"switchboard": {"hops": 1, "via": [GATEWAY_ID]}}

# (agent, message metadata, JSON-RPC code, HTTP status, gRPC status, reason, retryable)
REFUSALS = [
    ("p-echo", LOOP, -32056, 409, "FAILED_PRECONDITION", "federation-loop", "false"),
    ("p-echo", HOP_LIMIT, -32057, 409, "FAILED_PRECONDITION", "hop-limit", "false"),
    ("forged", {}, -32054, 503, "FAILED_PRECONDITION", "peer-card-untrusted", "false"),
    ("down", {}, -32051, 503, "UNAVAILABLE", "peer-unavailable", "true"),
]
IDS = ["loop", "hop-limit", "out-of-service", "unreachable"]


@pytest.fixture(scope="module")
def peer() -> Iterator[FakePeer]:
    background = BackgroundLoop()
    fake = FakePeer(streaming=False)
    fake.url = background.serve(fake.app())
    fake.unreachable_url = f"http://127.0.0.1:{free_port()}/agents/down"
    try:
        yield fake
    finally:
        fake.stopped.set()
        background.close()


def settings_for(tmp_path: Path, peer: FakePeer) -> Any:
    agents = tmp_path / "agents"
    agents.mkdir()
    python_agent(agents, "echo", ECHO)
    for name in ("forged", "down"):
        card_url = f"{peer.url}/agents/{name}/.well-known/agent-card.json"
        runtime = {"kind": "a2a", "card_url": card_url, "trust": {"jwks": peer.jwks()}, "timeout_s": 5}
        agent_file(agents, name, runtime)
    peers = [{"name": "p", "base_url": peer.url, "trust": {"jwks": peer.jwks()}, "import": ["echo"], "timeout_s": 5}]
    write_yaml(tmp_path / "peers.yaml", {"format": 1, "peers": peers})
    return make_settings(
        tmp_path, agents=agents, peers=tmp_path / "peers.yaml", gateway_id=GATEWAY_ID, root_agent="echo"
    )


@pytest.fixture
async def gateway_a(tmp_path: Path, peer: FakePeer) -> AsyncIterator[RunningGateway]:
    async with running_gateway(settings_for(tmp_path, peer)) as running:
        yield running


def message(metadata: dict[str, Any]) -> dict[str, Any]:
    return {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": "hi"}], "metadata": metadata}


async def grpc_target(http: httpx.AsyncClient, gateway: RunningGateway) -> str:
    card = (await http.get(f"{gateway.agent_url('echo')}/.well-known/agent-card.json")).json()
    return next(i["url"] for i in card["supportedInterfaces"] if i["protocolBinding"] == "GRPC")


@pytest.mark.parametrize(
    ("agent", "metadata", "code", "status", "grpc_status", "reason", "retryable"), REFUSALS, ids=IDS
)
async def test_a_federation_refusal_has_its_own_code_and_reason_on_every_binding(
    gateway_a: RunningGateway,
    agent: str,
    metadata: dict[str, Any],
    code: int,
    status: int,
    grpc_status: str,
    reason: str,
    retryable: str,
) -> None:
    url = gateway_a.agent_url(agent)
    async with httpx.AsyncClient(timeout=20) as http:
        jsonrpc = await rpc(http, url, "SendMessage", {"message": message(metadata)})
        rest = await http.post(f"{url}/message:send", json={"message": message(metadata)}, headers=V1)
        target = await grpc_target(http, gateway_a)
    error = jsonrpc["error"]
    assert error["code"] == code, error
    assert error["data"][0]["metadata"]["reason"] == reason and error["data"][0]["metadata"]["retryable"] == retryable
    assert rest.status_code == status, rest.text
    details = rest.json()["error"]
    assert details["status"] == grpc_status and details["details"][0]["reason"] == reason.upper().replace("-", "_")
    request = SendMessageRequest(
        tenant=agent, message=Message(role=Role.ROLE_USER, message_id="m", parts=[Part(text="hi")])
    )
    request.message.metadata.update(metadata)
    async with grpc.aio.insecure_channel(target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await a2a_pb2_grpc.A2AServiceStub(channel).SendMessage(request, metadata=(("a2a-version", "1.0"),))
    assert caught.value.code().name == grpc_status, caught.value
    status_proto = status_from_call(caught.value)
    assert status_proto is not None
    info = error_details_pb2.ErrorInfo()
    assert status_proto.details[0].Unpack(info) and info.reason == reason.upper().replace("-", "_")
    assert info.metadata["retryable"] == retryable


async def test_a_peer_answering_garbage_is_a_clear_peer_error(gateway_a: RunningGateway, peer: FakePeer) -> None:
    peer.call_mode = "garbage"
    async with httpx.AsyncClient(timeout=20) as http:
        body = await rpc(http, gateway_a.agent_url("p-echo"), "SendMessage", {"message": message({})})
    error = body["error"]
    assert error["code"] == -32058, error
    assert error["data"][0]["metadata"]["reason"] == "peer-bad-response"
    assert "not valid A2A" in error["message"], error


@pytest.mark.parametrize("error_type", [t for t in WIRE if issubclass(t, PeerError)], ids=lambda t: t.reason)
def test_a_relaying_gateway_reads_a_peers_federation_error_back_as_the_same_error(error_type: type[PeerError]) -> None:
    register_with_sdk()
    sent = error_type("what the peer said", peer="c")
    wire = build_error_response(1, sent)["error"]
    assert wire["code"] == WIRE[error_type].jsonrpc_code
    for received in (
        JsonRpcTransport._create_jsonrpc_error(None, wire),
        _parse_rest_error(build_rest_error_payload(sent), ""),
    ):  # type: ignore[arg-type]
        again = translate(received, "b", "SendMessage")
        assert type(again) is error_type and again.retryable == error_type.retryable
        assert again.message == "what the peer said" and again.peer == "c"
