"""MCP with auth on: /mcp needs a credential (401 pointing at the RFC 9728 metadata), a tool that runs an
agent needs that agent's scopes (an ``isError`` result), and the caller owns the A2A tasks its calls start."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest
from a2a.utils.errors import TaskNotFoundError
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import ISSUER, ApiKeys, JwksServer, Keys, auth_settings, authed_client, bearer, mint
from tests.bindings.a2a_clients import BINDINGS

MODES = ["legacy", "2026-07-28"]
JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}


@asynccontextmanager
async def mcp_client(gateway: RunningGateway, mode: str, headers: Mapping[str, str]) -> AsyncIterator[Client]:
    """MCP's client over Streamable HTTP, sending ``headers`` with every request."""
    async with create_mcp_http_client(headers=dict(headers)) as http:
        transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=60) as client:
            yield client


async def test_mcp_without_credentials_is_401_pointing_at_the_metadata(http: httpx.AsyncClient) -> None:
    answer = await http.post("/mcp", json=INITIALIZE, headers={"Accept": "application/json, text/event-stream"})
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_token", "error_description": answer.json()["error_description"]}
    assert "requires authentication" in answer.json()["error_description"]
    bearer_challenge = answer.headers.get_list("www-authenticate")[0]
    metadata_url = f"{http.base_url}".rstrip("/") + "/.well-known/oauth-protected-resource/mcp"
    assert f'resource_metadata="{metadata_url}"' in bearer_challenge
    forged = await http.post("/mcp", json=INITIALIZE, headers={"Authorization": "Bearer x.y.z"})
    assert forged.status_code == 401 and "invalid_token" in forged.headers["www-authenticate"]


async def test_protected_resource_metadata_names_the_issuers(http: httpx.AsyncClient) -> None:
    base = f"{http.base_url}".rstrip("/")
    for path, resource in (
        ("/.well-known/oauth-protected-resource/mcp", f"{base}/mcp"),
        ("/.well-known/oauth-protected-resource", base),
    ):
        metadata = (await http.get(path)).json()
        assert metadata["resource"] == resource
        assert metadata["authorization_servers"] == [ISSUER]
        assert metadata["scopes_supported"] == ["notes:use", "vault:reveal", "vault:use"]
        assert metadata["bearer_methods_supported"] == ["header"]


async def test_no_metadata_without_an_issuer(tmp_path: Path, api_keys: ApiKeys) -> None:
    settings = auth_settings(tmp_path, "http://127.0.0.1:9/unused", api_keys, auth_issuers=[])
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/.well-known/oauth-protected-resource/mcp")).status_code == 404
        answer = await http.post("/mcp", json=INITIALIZE)
        assert answer.status_code == 401
        assert answer.headers.get_list("www-authenticate") == ['ApiKey realm="switchboard", header="X-API-Key"']


@pytest.mark.parametrize("mode", MODES)
async def test_a_token_holder_calls_agent_tools_and_owns_their_tasks(
    mode: str, keys: Keys, gateway: RunningGateway
) -> None:
    alice = mint(keys.rsa, sub="alice", scopes=["notes:use"], expires_in=600)
    async with mcp_client(gateway, mode, {"Authorization": f"Bearer {alice}"}) as client:
        assert "notes" in {t.name for t in (await client.list_tools()).tools}
        result = await client.call_tool("notes", {"text": "hello over mcp"})
    assert not result.is_error, result.content
    task_id = (result.structured_content or {})["task_id"]

    async with authed_client(gateway.agent_url("notes"), JSONRPC, bearer(alice)) as owner:
        assert (await owner.get_task(GetTaskRequest(id=task_id))).id == task_id
    someone_else = bearer(mint(keys.ec, sub="bob", scopes=["notes:use"]))
    async with authed_client(gateway.agent_url("notes"), JSONRPC, someone_else) as other:
        with pytest.raises(TaskNotFoundError):
            await other.get_task(GetTaskRequest(id=task_id))


@pytest.mark.parametrize("mode", MODES)
async def test_a_tool_call_without_the_agents_scopes_is_an_error_result(
    mode: str, keys: Keys, gateway: RunningGateway
) -> None:
    token = mint(keys.rsa, sub="carol", scopes=["vault:use"])
    async with mcp_client(gateway, mode, {"Authorization": f"Bearer {token}"}) as client:
        notes = await client.call_tool("notes", {"text": "hi"})
        started = await client.call_tool("start_run", {"agent": "notes", "text": "hi"})
        vault = await client.call_tool("vault", {"text": "hi"})  # a tool call names no skill: needs vault:reveal too
        listed = await client.call_tool("list_agents", {})
        echoed = await client.call_tool("echo", {"text": "open to all"})
    expected = f"{ISSUER}|carol lacks scope(s) notes:use required by agent 'notes'"
    assert notes.is_error and notes.content[0].text == expected  # type: ignore[union-attr]
    assert started.is_error and started.content[0].text == expected  # type: ignore[union-attr]
    assert vault.is_error and "vault:reveal" in vault.content[0].text  # type: ignore[union-attr]
    assert not listed.is_error and not echoed.is_error


async def test_api_keys_work_on_mcp_and_runs_stay_with_their_owner(
    keys: Keys, api_keys: ApiKeys, gateway: RunningGateway
) -> None:
    async with mcp_client(gateway, "legacy", {"X-API-Key": api_keys.ci}) as client:
        started = await client.call_tool("start_run", {"agent": "notes", "text": "wait: 30"})
        run_id = (started.structured_content or {})["run_id"]
        assert not started.is_error
    stranger = mint(keys.ec, sub="bob", scopes=["notes:use"])
    async with mcp_client(gateway, "legacy", {"Authorization": f"Bearer {stranger}"}) as client:
        peek = await client.call_tool("get_run", {"run_id": run_id})
        stop = await client.call_tool("cancel_run", {"run_id": run_id})
    assert peek.is_error and stop.is_error
    async with mcp_client(gateway, "legacy", {"X-API-Key": api_keys.ci}) as client:
        canceled = await client.call_tool("cancel_run", {"run_id": run_id})
    assert (canceled.structured_content or {})["state"] == "canceled"


async def test_a_session_cannot_be_used_with_another_credential(
    keys: Keys, api_keys: ApiKeys, jwks: JwksServer, http: httpx.AsyncClient
) -> None:
    accept = {"Accept": "application/json, text/event-stream"}
    opened = await http.post("/mcp", json=INITIALIZE, headers={**accept, "X-API-Key": api_keys.ci})
    assert opened.status_code == 200
    session = opened.headers["mcp-session-id"]
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    other = {"Authorization": f"Bearer {mint(keys.rsa, scopes=['notes:use'])}", "Mcp-Session-Id": session}
    hijack = await http.post("/mcp", json=listing, headers={**accept, **other, "MCP-Protocol-Version": "2025-11-25"})
    assert hijack.status_code == 404  # MCP's session binding, fed the caller this gateway authenticated
