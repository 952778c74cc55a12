"""Per-skill scopes: a message naming a skill in ``metadata.skill`` needs that skill's scopes; one naming
none (or a skill the agent lacks) needs every skill's. Same answers on JSON-RPC (1.0 and 0.3), REST and gRPC;
the cards advertise the same requirements."""

from __future__ import annotations

import uuid
from typing import Any

import grpc
import httpx
import pytest
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest
from google.protobuf.struct_pb2 import Struct

from gateway.auth.api_keys import ApiKeyTable
from gateway.auth.jwt import JwtVerifier
from gateway.auth.policy import AuthPolicy
from gateway.settings import IssuerSettings
from gateway.spec import AgentSpec
from gateway.testing import RunningGateway
from tests.auth.conftest import ISSUER, V1, WAIT_S, ApiKeys, Keys, grpc_stub, mint

USE_ONLY = ["vault:use"]
BOTH = ["vault:use", "vault:reveal"]


def message_json(skill: str | None) -> dict[str, Any]:
    message: dict[str, Any] = {"messageId": str(uuid.uuid4()), "role": "ROLE_USER", "parts": [{"text": "hello"}]}
    if skill is not None:
        message["metadata"] = {"skill": skill}
    return message


async def send_jsonrpc(http: httpx.AsyncClient, headers: dict[str, str], skill: str | None) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message_json(skill)}}
    return await http.post("/agents/vault", json=body, headers={"A2A-Version": "1.0", **headers})


async def send_rest(http: httpx.AsyncClient, headers: dict[str, str], skill: str | None) -> httpx.Response:
    body = {"message": message_json(skill)}
    return await http.post("/agents/vault/message:send", json=body, headers={"A2A-Version": "1.0", **headers})


async def send_grpc(gateway: RunningGateway, headers: dict[str, str], skill: str | None) -> grpc.StatusCode:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="hello")])
    if skill is not None:
        metadata = Struct()
        metadata.update({"skill": skill})
        message.metadata.CopyFrom(metadata)
    metadata_pairs = [V1, *((k.lower(), v) for k, v in headers.items())]
    async with grpc_stub(gateway, "vault") as stub:
        try:
            await stub.SendMessage(
                SendMessageRequest(tenant="vault", message=message), metadata=metadata_pairs, timeout=WAIT_S
            )
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


CASES = [  # scopes held, skill named, admitted?
    (USE_ONLY, "read", True),
    (USE_ONLY, None, False),
    (USE_ONLY, "reveal", False),
    (USE_ONLY, "no-such-skill", False),
    (BOTH, None, True),
    (BOTH, "reveal", True),
    (["vault:reveal"], "reveal", False),
]


@pytest.mark.parametrize(("held", "skill", "admitted"), CASES)
async def test_message_needs_the_named_skills_scopes_or_every_skills(
    held: list[str], skill: str | None, admitted: bool, keys: Keys, http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    headers = {"Authorization": f"Bearer {mint(keys.ec, sub='dana', scopes=held)}"}
    for send in (send_jsonrpc, send_rest):
        answer = await send(http, headers, skill)
        assert answer.status_code == (200 if admitted else 403), (send.__name__, answer.text)
        if admitted:
            assert "error" not in answer.json(), answer.text
        else:
            message = answer.json()["error"]["message"]
            assert message.startswith(f"{ISSUER}|dana lacks scope(s) vault:")
    status = await send_grpc(gateway, headers, skill)
    assert status == (grpc.StatusCode.OK if admitted else grpc.StatusCode.PERMISSION_DENIED)


async def test_refusal_says_which_skill_or_that_none_was_named(keys: Keys, http: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {mint(keys.ec, sub='dana', scopes=USE_ONLY)}"}
    named = (await send_jsonrpc(http, headers, "reveal")).json()["error"]["message"]
    assert named == f"{ISSUER}|dana lacks scope(s) vault:reveal required by skill 'reveal' of agent 'vault'"
    unnamed = (await send_rest(http, headers, None)).json()["error"]["message"]
    assert "a message naming no skill of it in metadata.skill needs every skill's scopes" in unnamed


async def test_v03_jsonrpc_messages_are_checked_the_same_way(keys: Keys, http: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {mint(keys.rsa, scopes=USE_ONLY)}"}

    def v03(skill: str | None) -> dict[str, Any]:
        message: dict[str, Any] = {
            "kind": "message",
            "messageId": str(uuid.uuid4()),
            "role": "user",
            "parts": [{"kind": "text", "text": "hi"}],
        }
        if skill:
            message["metadata"] = {"skill": skill}
        return {"jsonrpc": "2.0", "id": 3, "method": "message/send", "params": {"message": message}}

    assert (await http.post("/agents/vault", json=v03(None), headers=headers)).status_code == 403
    answer = await http.post("/agents/vault/", json=v03("read"), headers=headers)
    assert answer.status_code == 200 and "result" in answer.json(), answer.text


async def test_reading_tasks_needs_only_the_agents_scope(keys: Keys, http: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {mint(keys.rsa, scopes=USE_ONLY)}", "A2A-Version": "1.0"}
    sent = await send_jsonrpc(http, headers, "read")
    task_id = sent.json()["result"]["task"]["id"]
    answer = await http.get(f"/agents/vault/tasks/{task_id}", headers=headers)
    assert answer.status_code == 200 and answer.json()["id"] == task_id
    listed = await http.post(
        "/agents/vault", json={"jsonrpc": "2.0", "id": 2, "method": "ListTasks", "params": {}}, headers=headers
    )
    assert [t["id"] for t in listed.json()["result"]["tasks"]] == [task_id]


async def test_api_key_scopes_gate_skills_too(api_keys: ApiKeys, http: httpx.AsyncClient) -> None:
    headers = {"X-API-Key": api_keys.ci}  # ci holds vault:use, not vault:reveal
    assert (await send_rest(http, headers, "read")).status_code == 200
    assert (await send_rest(http, headers, "reveal")).status_code == 403


async def test_cards_advertise_schemes_and_requirements(http: httpx.AsyncClient) -> None:
    vault = (await http.get("/agents/vault/.well-known/agent-card.json")).json()
    schemes = vault["securitySchemes"]
    assert schemes["apiKey"]["apiKeySecurityScheme"] == {
        "location": "header",
        "name": "X-API-Key",
        "description": "a gateway API key",
    }
    assert set(schemes["apiKey"]) == {"apiKeySecurityScheme"}, "a pure 1.0 card: no 0.3 members merged in"
    assert schemes["oauth2"]["httpAuthSecurityScheme"]["scheme"] == "Bearer"
    assert ISSUER in schemes["oauth2"]["httpAuthSecurityScheme"]["description"]
    assert vault["securityRequirements"] == [
        {"schemes": {"apiKey": {"list": ["vault:use"]}}},
        {"schemes": {"oauth2": {"list": ["vault:use"]}}},
    ]
    assert "security" not in vault
    skills = {s["id"]: s for s in vault["skills"]}
    assert "securityRequirements" not in skills["read"]
    assert skills["reveal"]["securityRequirements"] == [
        {"schemes": {"apiKey": {"list": ["vault:reveal", "vault:use"]}}},
        {"schemes": {"oauth2": {"list": ["vault:reveal", "vault:use"]}}},
    ]
    echo = (await http.get("/agents/echo/.well-known/agent-card.json")).json()
    assert "securitySchemes" not in echo and "securityRequirements" not in echo


def test_an_issuer_with_a_token_url_is_advertised_as_an_oauth2_client_credentials_flow() -> None:
    issuer = IssuerSettings(
        issuer=ISSUER,
        audience="a",
        jwks={"keys": []},
        scheme="corp-sso",
        token_url="https://id.example.test/oauth2/token",
    )
    spec = AgentSpec.model_validate(
        {
            "format": 1,
            "name": "vault",
            "description": "d",
            "scopes": ["vault:use"],
            "skills": [{"id": "reveal", "name": "R", "description": "d", "tags": ["t"], "scopes": ["vault:reveal"]}],
            "runtime": {"kind": "python", "entrypoint": "gateway.agents.echo:EchoExecutor"},
        }
    )
    security = AuthPolicy(ApiKeyTable([]), JwtVerifier([]), [issuer]).card_security(spec)
    assert security is not None and list(security.schemes) == ["corp-sso"]
    flow = security.schemes["corp-sso"].oauth2_security_scheme.flows.client_credentials
    assert flow.token_url == "https://id.example.test/oauth2/token"
    assert dict(flow.scopes) == {"vault:reveal": "vault:reveal", "vault:use": "vault:use"}
    assert [dict(r.schemes)["corp-sso"].list for r in security.requirements] == [["vault:use"]]
