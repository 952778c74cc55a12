"""Credentials on every binding: bad ones get 401 / UNAUTHENTICATED saying why, good ones are admitted,
a caller without the agent's scope gets 403 / PERMISSION_DENIED, open agents and public documents stay open."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc
import httpx
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest

from gateway.testing import RunningGateway
from tests.auth.conftest import (
    ISSUER,
    V1,
    WAIT_S,
    ApiKeys,
    Keys,
    grpc_stub,
    hs256_relabelled,
    mint,
)

GET_TASK = {"jsonrpc": "2.0", "id": 7, "method": "GetTask", "params": {"id": "no-such-task"}}


@dataclass(frozen=True)
class Presented:
    """What a caller sends: an Authorization header and/or an API key."""

    authorization: str | None = None
    api_key: str | None = None

    def headers(self) -> dict[str, str]:
        found = {"Authorization": self.authorization} if self.authorization else {}
        return found | ({"X-API-Key": self.api_key} if self.api_key else {})

    def metadata(self) -> list[tuple[str, str]]:
        return [(k.lower(), v) for k, v in self.headers().items()]


def token(value: str) -> Presented:
    return Presented(authorization=f"Bearer {value}")


SCOPED = ["notes:use"]
BAD: dict[str, tuple[Callable[[Keys], Presented], str]] = {
    "missing": (lambda k: Presented(), "requires authentication"),
    "expired": (lambda k: token(mint(k.rsa, scopes=SCOPED, expires_in=-3600)), "expired"),
    "not yet valid": (lambda k: token(mint(k.rsa, scopes=SCOPED, not_before_in=3600)), "not valid yet"),
    "wrong audience": (lambda k: token(mint(k.rsa, scopes=SCOPED, aud="another-service")), "audience"),
    "unknown issuer": (lambda k: token(mint(k.rsa, scopes=SCOPED, iss="https://rogue.example.test")), "issuer"),
    "bad signature": (lambda k: token(mint(k.stranger, scopes=SCOPED)), "signature does not verify"),
    "HS256 relabelled": (lambda k: token(hs256_relabelled(k.rsa, scopes=SCOPED)), "'HS256' is not accepted"),
    "alg none": (lambda k: token(_unsigned(k)), "'none' is not accepted"),
    "not a JWT": (lambda k: token("not-a-token"), "not a JWT"),
    "basic auth": (lambda k: Presented(authorization="Basic YWxpY2U6cHc="), "Bearer"),
    "bad API key": (lambda k: Presented(api_key="sb_not-a-key-we-issued"), "API key is not valid"),
}


def _unsigned(keys: Keys) -> str:
    payload = mint(keys.rsa, scopes=SCOPED).split(".")[1]
    return f"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}."  # {"alg":"none","typ":"JWT"}


async def jsonrpc(http: httpx.AsyncClient, agent: str, presented: Presented) -> httpx.Response:
    return await http.post(f"/agents/{agent}", json=GET_TASK, headers={"A2A-Version": "1.0", **presented.headers()})


async def rest(http: httpx.AsyncClient, agent: str, presented: Presented) -> httpx.Response:
    return await http.get(f"/agents/{agent}/tasks/no-such-task", headers={"A2A-Version": "1.0", **presented.headers()})


async def grpc_get_task(gateway: RunningGateway, agent: str, presented: Presented) -> grpc.aio.AioRpcError | None:
    async with grpc_stub(gateway, agent) as stub:
        try:
            await stub.GetTask(
                GetTaskRequest(tenant=agent, id="no-such-task"), metadata=[V1, *presented.metadata()], timeout=WAIT_S
            )
        except grpc.aio.AioRpcError as error:
            return error
    return None


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_credentials_get_401_with_a_challenge_on_jsonrpc_and_rest(
    case: str, keys: Keys, http: httpx.AsyncClient
) -> None:
    make, reason = BAD[case]
    presented = make(keys)
    answer = await jsonrpc(http, "notes", presented)
    assert answer.status_code == 401, answer.text
    error = answer.json()["error"]
    assert answer.json()["jsonrpc"] == "2.0" and error["code"] == -32040
    assert reason in error["message"] and error["data"]["reason"] == "UNAUTHENTICATED"
    challenges = answer.headers.get_list("www-authenticate")
    assert challenges[0].startswith('Bearer realm="switchboard"')
    assert 'resource_metadata="http://127.0.0.1:' in challenges[0]
    assert ('error="invalid_token"' in challenges[0]) == (case != "missing")
    assert challenges[1] == 'ApiKey realm="switchboard", header="X-API-Key"'

    answer = await rest(http, "notes", presented)
    assert answer.status_code == 401, answer.text
    error = answer.json()["error"]
    assert error["code"] == 401 and error["status"] == "UNAUTHENTICATED" and reason in error["message"]
    assert error["details"][0]["reason"] == "UNAUTHENTICATED"
    assert answer.headers.get_list("www-authenticate") == challenges


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_credentials_are_unauthenticated_on_grpc(case: str, keys: Keys, gateway: RunningGateway) -> None:
    make, reason = BAD[case]
    error = await grpc_get_task(gateway, "notes", make(keys))
    assert error is not None and error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason in (error.details() or "")


@pytest.mark.parametrize("signer", ["rsa", "ec", "ed"])
async def test_valid_tokens_of_each_algorithm_are_admitted_on_every_binding(
    signer: str, keys: Keys, http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    presented = token(mint(getattr(keys, signer), scopes=SCOPED))
    answer = await jsonrpc(http, "notes", presented)
    assert answer.status_code == 200 and answer.json()["error"]["code"] == -32001  # admitted: task not found
    assert (await rest(http, "notes", presented)).status_code == 404
    error = await grpc_get_task(gateway, "notes", presented)
    assert error is not None and error.code() == grpc.StatusCode.NOT_FOUND


async def test_scp_claim_and_api_key_scopes_are_honoured(
    keys: Keys, api_keys: ApiKeys, http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    for presented in (token(mint(keys.ec, scopes=SCOPED, scope_claim="scp")), Presented(api_key=api_keys.ci)):
        assert (await rest(http, "notes", presented)).status_code == 404
        error = await grpc_get_task(gateway, "notes", presented)
        assert error is not None and error.code() == grpc.StatusCode.NOT_FOUND


async def test_a_caller_without_the_agents_scope_gets_403_and_permission_denied(
    keys: Keys, api_keys: ApiKeys, http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    for presented, who in (
        (token(mint(keys.rsa, sub="carol", scopes=["vault:use"])), f"{ISSUER}|carol"),
        (Presented(api_key=api_keys.bare), "apikey:bare"),
    ):
        answer = await jsonrpc(http, "notes", presented)
        assert answer.status_code == 403
        error = answer.json()["error"]
        assert error["code"] == -32043 and error["data"]["reason"] == "PERMISSION_DENIED"
        assert error["message"] == f"{who} lacks scope(s) notes:use required by agent 'notes'"
        bearer_challenge = answer.headers.get_list("www-authenticate")[0]
        assert 'error="insufficient_scope"' in bearer_challenge
        answer = await rest(http, "notes", presented)
        assert answer.status_code == 403 and answer.json()["error"]["status"] == "PERMISSION_DENIED"
        error = await grpc_get_task(gateway, "notes", presented)
        assert error is not None and error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "lacks scope(s) notes:use" in (error.details() or "")


async def test_open_agent_and_public_documents_need_no_credentials(
    http: httpx.AsyncClient, gateway: RunningGateway
) -> None:
    for path in (
        "/.well-known/agent-card.json",
        "/agents/notes/.well-known/agent-card.json",
        "/.well-known/jwks.json",
        "/.well-known/api-catalog",
        "/agents",
        "/healthz",
        "/readyz",
    ):
        assert (await http.get(path)).status_code == 200, path
    answer = await jsonrpc(http, "echo", Presented())
    assert answer.status_code == 200 and answer.json()["error"]["code"] == -32001
    assert (await rest(http, "echo", Presented())).status_code == 404
    error = await grpc_get_task(gateway, "echo", Presented())
    assert error is not None and error.code() == grpc.StatusCode.NOT_FOUND


async def test_refused_post_body_is_read_so_the_client_gets_the_answer(http: httpx.AsyncClient) -> None:
    big = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"padding": "x" * 500_000}}
    answer = await http.post("/agents/notes", json=big, headers={"A2A-Version": "1.0"})
    assert answer.status_code == 401
