"""A tool call inside a 2025-11-25 MCP session is counted, audited and logged as a call of the agent it ran.

A session's handlers run in a task its ``initialize`` request started. ``note_agent`` writes to the
request record in the handler's context, so each call's metrics, audit row and access line name its agent
only while the SDK runs each handler in the context of the HTTP request that carried it (mcp 2.3's
dispatcher does: ``ContextReceiveStream`` hands it each message's sender context). Without that, every
call of a session would be counted under ``-`` and its audit row name no agent.
"""

from __future__ import annotations

import logging
from pathlib import Path

import anyio
import pytest
from mcp.client import Client

from tests.telemetry.test_operating import _audit_rows, scrape, serving, value

CALL = {"binding": "mcp", "method": "tools/call"}


@pytest.mark.parametrize(("mode", "audit_required"), [("legacy", False), ("legacy", True), ("2026-07-28", False)])
async def test_each_tool_call_in_a_session_names_the_agent_it_ran(
    tmp_path: Path,
    mode: str,
    audit_required: bool,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="switchboard.access")
    async with serving(tmp_path, mcp_tools=["echo", "retrying"], audit_required=audit_required) as (gateway, http):
        before = await scrape(http)
        async with Client(f"{gateway.url}/mcp", mode=mode, read_timeout_seconds=30) as client:
            with anyio.fail_after(30):
                for text in ("one", "two"):
                    assert not (await client.call_tool("echo", {"text": text})).is_error
                assert not (await client.call_tool("retrying", {"text": "three"})).is_error
        await gateway.app.state.gateway.operating.audit.flush()
        after = await scrape(http)
        rows = await _audit_rows(tmp_path, capsys)

    def moved(**labels: str) -> float:
        name = "switchboard_requests_total"
        return value(after, name, **CALL, **labels) - value(before, name, **CALL, **labels)

    assert moved(agent="echo", outcome="ok") == 2
    assert moved(agent="retrying", outcome="ok") == 1
    assert moved(agent="-", outcome="ok") == 0, "no call is left unnamed"
    calls = [(r["agent"], r["outcome"]) for r in rows if r["method"] == "tools/call"]
    assert sorted(calls) == [("echo", "ok"), ("echo", "ok"), ("retrying", "ok")]
    logged = [r.fields["agent"] for r in caplog.records if getattr(r, "fields", {}).get("method") == "tools/call"]  # type: ignore[attr-defined]
    assert sorted(logged) == ["echo", "echo", "retrying"]
