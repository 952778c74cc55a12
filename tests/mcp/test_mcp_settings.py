"""MCP settings: the curated tool list, the DNS-rebinding allowlist, extra modules."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.bindings.mcp_server import McpSetupError, select_agents, transport_security
from gateway.hosting.registry import Registry
from gateway.settings import Settings, bundled_agents_dir
from gateway.testing import running_gateway
from tests.conftest import make_settings

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def test_the_default_tool_list_is_the_review_team_and_the_workflows() -> None:
    registry = Registry.load(bundled_agents_dir())
    chosen = {s.name for s in select_agents(registry, Settings().mcp_tools)}
    workflows = {s.name for s in registry if s.runtime.kind == "workflow"}
    assert {"security-reviewer", "complexity-reviewer", "style-reviewer", "review-lead"} | workflows == chosen
    assert "echo" not in chosen
    assert len(chosen) + 4 <= 20, "assistants degrade past ~20 tools"
    assert {s.name for s in select_agents(registry, ["*"])} == {s.name for s in registry}


def test_the_tool_list_setting_reads_a_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_MCP_TOOLS", "echo, review-lead")
    assert Settings().mcp_tools == ["echo", "review-lead"]


def test_the_allowlist_follows_the_public_url() -> None:
    security = transport_security(Settings(public_url="https://gw.example.com"))
    assert security.enable_dns_rebinding_protection
    assert {"gw.example.com", "127.0.0.1:*", "localhost:*"} <= set(security.allowed_hosts)
    assert "https://gw.example.com" in security.allowed_origins
    assert not transport_security(Settings(mcp_allowed_hosts=["*"])).enable_dns_rebinding_protection


async def test_mcp_answers_the_public_host_and_refuses_others(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, public_url="https://gw.example.com")
    async with running_gateway(settings) as gateway:
        loopback_url = f"http://127.0.0.1:{gateway.settings.port}"  # the public URL is not resolvable here
        async with httpx.AsyncClient(base_url=loopback_url) as http:
            public = await http.post("/mcp", json=INITIALIZE, headers={**HEADERS, "Host": "gw.example.com"})
            loopback = await http.post("/mcp", json=INITIALIZE, headers=HEADERS)
            rebound = await http.post("/mcp", json=INITIALIZE, headers={**HEADERS, "Host": "evil.example.com"})
    assert public.status_code == 200 and loopback.status_code == 200
    assert rebound.status_code == 421


def test_an_extra_module_that_does_not_load_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(McpSetupError, match="no_such_module"):
        create_app(make_settings(tmp_path, mcp_extra_modules=["tests.mcp.no_such_module"]))


async def test_with_auth_off_sessions_are_counted_per_client_address(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, mcp_max_sessions_per_caller=1)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        first = await http.post("/mcp", json=INITIALIZE, headers=HEADERS)
        second = await http.post("/mcp", json=INITIALIZE, headers=HEADERS)
        await http.delete("/mcp", headers={**HEADERS, "Mcp-Session-Id": first.headers["mcp-session-id"]})
    assert first.status_code == 200
    assert second.status_code == 429
    assert "anonymous@127.0.0.1 holds 1 of the 1 open MCP sessions" in second.json()["error"]["message"]


def test_the_mcp_limits_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SWITCHBOARD_MCP_SESSION_IDLE_S", "90")
    monkeypatch.setenv("SWITCHBOARD_MCP_MAX_SESSIONS_PER_CALLER", "4")
    monkeypatch.setenv("SWITCHBOARD_MCP_MAX_SUBSCRIPTIONS_PER_CALLER", "8")
    settings = Settings()
    assert (settings.mcp_session_idle_s, settings.mcp_max_sessions_per_caller) == (90.0, 4)
    assert settings.mcp_max_subscriptions_per_caller == 8 and settings.mcp_max_sessions == 4096
    app = create_app(settings.model_copy(update={"data_dir": tmp_path}))
    manager = app.state.mcp.sessions
    assert manager.session_idle_timeout == 90.0 and manager.sessions.cap == 4 and manager.max_sessions == 4096
