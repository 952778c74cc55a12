"""MCP resources one caller cannot exhaust for all: sessions and subscriptions are counted per caller
and capped, idle sessions are reaped, subscriptions are owner-checked and freed with their session,
and ``tools/list`` shows a caller only the tools it may call.

Callers: alice (a token with ``notes:use``), bob (``notes:use``), carol (no scopes), and the ``ci``
API key (``notes:use vault:use``), against a real gateway with auth on.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from gateway.testing import RunningGateway
from tests.auth.conftest import ApiKeys, Keys, mint

WAIT_S = 20.0
LONG = "wait: 30"
ACCEPT = {"Accept": "application/json, text/event-stream"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
SUBSCRIBE_REMOVED = "ignore:resources/(un)?subscribe is removed"


def token_of(keys: Keys, name: str, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint(keys.rsa, sub=name, scopes=scopes, expires_in=600)}"}


@asynccontextmanager
async def mcp_client(
    gateway: RunningGateway, headers: Mapping[str, str], mode: str = "legacy"
) -> AsyncIterator[Client]:
    """MCP's client over Streamable HTTP, sending ``headers`` with every request."""
    async with create_mcp_http_client(headers=dict(headers)) as http:
        transport = streamable_http_client(f"{gateway.url}/mcp", http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=60) as client:
            yield client


# --- tools/list --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_tools_list_shows_a_caller_only_what_it_may_call(
    mode: str, keys: Keys, api_keys: ApiKeys, gateway: RunningGateway
) -> None:
    listed: dict[str, set[str]] = {}
    agents: dict[str, set[str]] = {}
    callers = {
        "carol": token_of(keys, "carol"),
        "bob": token_of(keys, "bob", "notes:use", "vault:use"),
        "ci": {"X-API-Key": api_keys.ci},
        "all": token_of(keys, "dave", "notes:use", "vault:use", "vault:reveal"),
    }
    for name, headers in callers.items():
        async with mcp_client(gateway, headers, mode) as client:
            listed[name] = {t.name for t in (await client.list_tools()).tools}
            summary = await client.call_tool("list_agents", {})
            agents[name] = {a["name"] for a in (summary.structured_content or {})["agents"]}
    runs = {"list_agents", "start_run", "get_run", "cancel_run"}
    assert listed["carol"] == runs | {"echo"}
    assert listed["bob"] == listed["ci"] == runs | {"echo", "notes"}  # vault's tool needs vault:reveal too
    assert listed["all"] == runs | {"echo", "notes", "vault"}
    assert agents["carol"] == {"echo"} and agents["bob"] == {"echo", "notes"}
    assert agents["all"] == {"echo", "notes", "vault"}
