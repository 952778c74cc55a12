"""MCP resources one caller cannot exhaust for all: sessions and subscriptions are counted per caller
and capped, idle sessions are reaped, subscriptions are owner-checked and freed with their session,
and ``tools/list`` shows a caller only the tools it may call.

Callers: alice (a token with ``notes:use``), bob (``notes:use``), carol (no scopes), and the ``ci``
API key (``notes:use vault:use``), against a real gateway with auth on.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import ApiKeys, JwksServer, Keys, auth_settings, mint

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


@asynccontextmanager
async def limited_gateway(
    tmp_path: Path, jwks: JwksServer, api_keys: ApiKeys, **limits: object
) -> AsyncIterator[RunningGateway]:
    async with running_gateway(auth_settings(tmp_path, jwks.url, api_keys, **limits)) as gateway:
        yield gateway


def leaf(error: BaseException) -> BaseException:
    """The one error inside nested exception groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return error


async def open_session(http: httpx.AsyncClient, headers: Mapping[str, str]) -> httpx.Response:
    return await http.post("/mcp", json=INITIALIZE, headers={**ACCEPT, **headers})


async def started_run(client: Client, agent: str = "notes") -> str:
    result = await client.call_tool("start_run", {"agent": agent, "text": LONG})
    assert not result.is_error, result.content
    return str((result.structured_content or {})["run_id"])


# --- sessions ----------------------------------------------------------------------------------


async def test_a_caller_at_its_session_cap_is_refused_and_others_still_initialize(
    tmp_path: Path, keys: Keys, jwks: JwksServer, api_keys: ApiKeys
) -> None:
    carol, alice = token_of(keys, "carol"), token_of(keys, "alice", "notes:use")
    async with limited_gateway(tmp_path, jwks, api_keys, mcp_max_sessions_per_caller=3) as gateway:
        with anyio.fail_after(WAIT_S):
            async with AsyncExitStack() as held, httpx.AsyncClient(base_url=gateway.url, timeout=WAIT_S) as http:
                for _ in range(3):
                    await held.enter_async_context(mcp_client(gateway, carol))
                with pytest.RaisesGroup(MCPError, flatten_subgroups=True) as refused_group:
                    await held.enter_async_context(mcp_client(gateway, carol))  # the client's task groups wrap it
                raw = await open_session(http, carol)
                async with mcp_client(gateway, alice) as client:
                    alice_tools = {t.name for t in (await client.list_tools()).tools}
    assert raw.status_code == 429
    assert raw.headers["retry-after"]
    body = raw.json()
    assert body["jsonrpc"] == "2.0" and body["id"] is None
    refused = leaf(refused_group.value)
    assert isinstance(refused, MCPError)
    assert body["error"]["code"] == refused.error.code == -32029
    assert "3 open MCP sessions" in body["error"]["message"] and "carol" in body["error"]["message"]
    assert refused.error.message == body["error"]["message"]
    assert "notes" in alice_tools


class SessionEnds:
    """Every MCP session that ends on ``gateway``, by id, as the session manager announces it."""

    def __init__(self, gateway: RunningGateway) -> None:
        self.ended: list[str] = []
        self._changed = anyio.Event()
        gateway.app.state.mcp.sessions.ended.append(self._on_end)

    def _on_end(self, session_id: str) -> None:
        self.ended.append(session_id)
        self._changed.set()

    async def wait(self, session_id: str = "") -> None:
        """Until ``session_id`` (any session, if empty) has ended; the caller bounds the wait."""
        while not (session_id in self.ended if session_id else self.ended):
            await self._changed.wait()
            self._changed = anyio.Event()


async def test_a_closed_session_frees_its_place_under_the_cap(
    tmp_path: Path, keys: Keys, jwks: JwksServer, api_keys: ApiKeys
) -> None:
    carol = token_of(keys, "carol")
    async with limited_gateway(tmp_path, jwks, api_keys, mcp_max_sessions_per_caller=1) as gateway:
        ends = SessionEnds(gateway)
        with anyio.fail_after(WAIT_S):
            async with httpx.AsyncClient(base_url=gateway.url, timeout=WAIT_S) as http:
                async with mcp_client(gateway, carol):
                    assert (await open_session(http, carol)).status_code == 429
                await ends.wait()  # the client's DELETE is answered before the session is discarded
                reopened = await open_session(http, carol)
    assert reopened.status_code == 200 and reopened.headers["mcp-session-id"]


async def test_an_idle_session_is_reaped_after_the_configured_timeout(
    tmp_path: Path, keys: Keys, jwks: JwksServer, api_keys: ApiKeys
) -> None:
    carol = token_of(keys, "carol")
    limits = {"mcp_max_sessions_per_caller": 1, "mcp_session_idle_s": 0.5}
    async with (
        limited_gateway(tmp_path, jwks, api_keys, **limits) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=WAIT_S) as http,
    ):
        ends = SessionEnds(gateway)
        first = await open_session(http, carol)
        session = first.headers["mcp-session-id"]
        refused = await open_session(http, carol)  # a refusal does not touch the idle session
        with anyio.fail_after(WAIT_S):  # the default idle timeout is 300 s
            await ends.wait(session)
        second = await open_session(http, carol)
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
        headers = {**ACCEPT, **carol, "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25"}
        stale = await http.post("/mcp", json=listing, headers=headers)
    assert first.status_code == 200 and refused.status_code == 429
    assert second.status_code == 200 and second.headers["mcp-session-id"] != session
    assert stale.status_code == 404


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


# --- subscriptions -----------------------------------------------------------------------------


@pytest.mark.filterwarnings(SUBSCRIBE_REMOVED)
async def test_a_caller_cannot_subscribe_to_another_callers_run(keys: Keys, gateway: RunningGateway) -> None:
    alice, bob = token_of(keys, "alice", "notes:use"), token_of(keys, "bob", "notes:use")
    async with mcp_client(gateway, alice) as alices:
        run_id = await started_run(alices)
        await alices.subscribe_resource(f"run://{run_id}")  # her own: fine
        errors: dict[str, MCPError] = {}
        async with mcp_client(gateway, bob) as bobs:
            for label, uri in (("alices", f"run://{run_id}"), ("unknown", "run://no-such-run")):
                with pytest.raises(MCPError) as caught:
                    await bobs.subscribe_resource(uri)
                errors[label] = caught.value
            with pytest.raises(MCPError) as read:
                await bobs.read_resource(f"run://{run_id}")
        async with mcp_client(gateway, bob, "2026-07-28") as modern:
            with pytest.raises(MCPError) as listened:
                async with modern.listen(resource_subscriptions=[f"run://{run_id}"]):
                    pass
        await alices.call_tool("cancel_run", {"run_id": run_id})
    stolen, unknown = errors["alices"], errors["unknown"]
    assert stolen.error.code == unknown.error.code == listened.value.error.code == INVALID_PARAMS
    assert stolen.error.message == unknown.error.message.replace("no-such-run", run_id)
    assert listened.value.error.message == stolen.error.message == read.value.error.message
    assert "started by another caller" in stolen.error.message


@pytest.mark.filterwarnings(SUBSCRIBE_REMOVED)
async def test_subscriptions_are_capped_per_caller(
    tmp_path: Path, keys: Keys, jwks: JwksServer, api_keys: ApiKeys
) -> None:
    alice, bob = token_of(keys, "alice", "notes:use"), token_of(keys, "bob", "notes:use")
    async with (
        limited_gateway(tmp_path, jwks, api_keys, mcp_max_subscriptions_per_caller=2) as gateway,
        mcp_client(gateway, alice) as alices,
        mcp_client(gateway, bob) as bobs,
    ):
        with anyio.fail_after(WAIT_S):
            runs = [await started_run(alices) for _ in range(3)]
            for run_id in runs[:2]:
                await alices.subscribe_resource(f"run://{run_id}")
            await alices.subscribe_resource(f"run://{runs[0]}")  # the same one again costs nothing
            with pytest.raises(MCPError) as refused:
                await alices.subscribe_resource(f"run://{runs[2]}")
            await alices.unsubscribe_resource(f"run://{runs[0]}")
            await alices.subscribe_resource(f"run://{runs[2]}")  # room again
            await bobs.subscribe_resource(f"run://{await started_run(bobs)}")  # bob is not alice
            async with mcp_client(gateway, alice, "2026-07-28") as modern:
                with pytest.raises(MCPError) as listen_refused:
                    async with modern.listen(resource_subscriptions=[f"run://{runs[1]}"]):
                        pass
            async with mcp_client(gateway, bob, "2026-07-28") as modern:
                with pytest.raises(MCPError) as too_many:  # counted before any of them is looked up
                    async with modern.listen(resource_subscriptions=[f"run://guess-{n}" for n in range(3)]):
                        pass
    assert "2 subscriptions" in refused.value.error.message and "alice" in refused.value.error.message
    assert refused.value.error.code == listen_refused.value.error.code == too_many.value.error.code == -32029


@pytest.mark.filterwarnings(SUBSCRIBE_REMOVED)
async def test_subscriptions_are_freed_when_their_session_ends(keys: Keys, gateway: RunningGateway) -> None:
    alice = token_of(keys, "alice", "notes:use")
    notifier = gateway.app.state.mcp.notifier
    ends = SessionEnds(gateway)
    async with mcp_client(gateway, alice) as client:
        runs = [await started_run(client) for _ in range(3)]
        for run_id in runs:
            await client.subscribe_resource(f"run://{run_id}")
        held = [weakref.ref(s) for s in notifier.sessions_of(f"run://{runs[0]}")]
        assert notifier.subscription_count() == 3 and held
    with anyio.fail_after(WAIT_S):
        await ends.wait()
    assert notifier.subscription_count() == 0
    gc.collect()
    assert all(ref() is None for ref in held), "a subscription still holds its ended session"
    assert notifier.sessions_of(f"run://{runs[0]}") == []
