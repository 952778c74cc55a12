"""Fuzz MCP Streamable HTTP (/mcp), both eras: never a 5xx or -32603, no traceback logged."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, TIMEOUT_S, Target, Trouble
from tests.fuzz.shapes import IDS, JSON, OBJECTS, TEXT, mangled, maybe
from tests.fuzz.wire import READ_S, check, exchange

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ACCEPT = "application/json, text/event-stream"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "fuzz", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
TOOLS = ["echo", "start_run", "get_run", "cancel_run", "list_agents", "vault", "notes", "nope"]
FILES = st.lists(st.fixed_dictionaries({"name": maybe(TEXT), "content": maybe(TEXT)}), max_size=3)
TOOL_ARGUMENTS = st.fixed_dictionaries(
    {},
    optional={
        "text": maybe(TEXT),
        "agent": maybe(st.sampled_from(["echo", "vault", "notes", "nope", ""])),
        "run_id": maybe(IDS),
        "task_id": maybe(IDS),
        "files": maybe(FILES),
        "data": maybe(OBJECTS),
    },
)
PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "initialize": st.fixed_dictionaries(
        {"protocolVersion": maybe(st.sampled_from([LEGACY, MODERN, "1999-01-01"])), "capabilities": maybe(OBJECTS)},
        optional={"clientInfo": maybe(st.fixed_dictionaries({"name": TEXT, "version": TEXT}))},
    ),
    "ping": st.just({}),
    "tools/list": st.fixed_dictionaries({}, optional={"cursor": maybe(TEXT)}),
    "tools/call": st.fixed_dictionaries({"name": maybe(st.sampled_from(TOOLS)), "arguments": maybe(TOOL_ARGUMENTS)}),
    "resources/list": st.fixed_dictionaries({}, optional={"cursor": maybe(TEXT)}),
    "resources/templates/list": st.just({}),
    "resources/read": st.fixed_dictionaries({"uri": maybe(st.one_of(IDS.map(lambda i: f"run://{i}"), TEXT))}),
    "resources/subscribe": st.fixed_dictionaries({"uri": maybe(IDS.map(lambda i: f"run://{i}"))}),
    "resources/unsubscribe": st.fixed_dictionaries({"uri": maybe(IDS.map(lambda i: f"run://{i}"))}),
    "prompts/list": st.just({}),
    "prompts/get": st.fixed_dictionaries({"name": maybe(TEXT)}),
    "completion/complete": OBJECTS,
    "logging/setLevel": st.fixed_dictionaries({"level": maybe(st.sampled_from(["debug", "info", "loud"]))}),
    "subscriptions/listen": OBJECTS,
    "notifications/initialized": st.just({}),
    "notifications/cancelled": st.fixed_dictionaries({"requestId": maybe(IDS)}),
}


@st.composite
def mcp_request(draw: st.DrawFn, modern: bool) -> tuple[bytes, dict[str, str]]:
    """A body and the MCP headers it goes with (the era's, sometimes wrong)."""
    method = draw(st.sampled_from(sorted(PARAMS)))
    params = draw(maybe(PARAMS[method]))
    if modern and isinstance(params, dict) and draw(st.integers(0, 4)):
        params = {**params, "_meta": MODERN_META}
    body: dict[str, Any] = {"jsonrpc": "2.0", "method": draw(st.one_of(st.just(method), st.just(method), TEXT, JSON))}
    if not method.startswith("notifications/") or draw(st.booleans()):
        body["id"] = draw(st.one_of(st.integers(0, 10**6), st.uuids().map(str), JSON))
    body["params"] = params
    sent = {"Accept": draw(st.sampled_from([ACCEPT, ACCEPT, "application/json", "text/html"]))}
    sent["Content-Type"] = draw(st.sampled_from(["application/json", "application/json", "text/plain"]))
    if modern:
        sent["MCP-Protocol-Version"] = draw(st.sampled_from([MODERN, MODERN, LEGACY, "junk"]))
        sent["Mcp-Method"] = draw(st.sampled_from([method, "tools/call", "x"]))
        name = params.get("name") if isinstance(params, dict) else None
        if isinstance(name, str) and name and name.isascii() and name.isprintable() and name.strip() == name:
            sent["Mcp-Name"] = name
    return draw(mangled(json.dumps(body).encode())), sent


def legacy_session(client: httpx.Client, credentials: dict[str, str]) -> dict[str, str]:
    """Headers of a fresh 2025-11-25 session (opened as the SDK's client does), or none when refused."""
    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "fuzz", "version": "0"}}
    body = json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
    opened = client.post(
        "/mcp", content=body, headers={"Accept": ACCEPT, "Content-Type": "application/json", **credentials}
    )
    session = opened.headers.get("mcp-session-id")
    if opened.status_code != 200 or not session:
        return {}
    found = {"Mcp-Session-Id": session, "MCP-Protocol-Version": LEGACY}
    initialized = json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"})
    client.post(
        "/mcp",
        content=initialized,
        headers={"Accept": ACCEPT, "Content-Type": "application/json", **credentials, **found},
    )
    return found


@pytest.mark.fuzz
@pytest.mark.timeout(TIMEOUT_S)
@FUZZ
@given(data=st.data())
def test_mcp_fuzz(target: Target, trouble: Trouble, data: st.DataObject) -> None:
    # Every draw comes before any request, so a slow or failed request cannot change what is drawn.
    modern = data.draw(st.booleans())
    credentials = data.draw(st.sampled_from(target.credentials))
    body, sent = data.draw(mcp_request(modern))
    open_session = not modern and data.draw(st.integers(0, 3)) > 0
    forged = data.draw(st.text(alphabet="abcdef0123456789", max_size=40)) if not modern else None
    use_forged = forged is not None and data.draw(st.integers(0, 9)) == 0
    verb = data.draw(st.sampled_from(["POST"] * 8 + ["GET", "DELETE"]))
    trouble.take()
    with httpx.Client(base_url=target.gateway.url, timeout=READ_S) as client:
        opened = legacy_session(client, credentials) if open_session else {}
        sent.update({"Mcp-Session-Id": forged} if use_forged and forged is not None else opened)
        sent.update(credentials)
        try:
            status, text = exchange(client, verb, "/mcp", body, sent)
        except httpx.ReadTimeout:
            return  # a GET stream, or a subscription, stays open: not a failure
        finally:
            if opened:  # sessions are counted per caller: end this one, as a client would
                client.delete("/mcp", headers={**opened, **credentials})
    check(target, trouble, status, text, f"/mcp {sent} {body[:300]!r}")
