"""Agent tools over MCP: listing, a real review with progress and a structured result, and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from tests.mcp.conftest import McpTarget

PLANTED = Path(__file__).resolve().parents[1] / "samples" / "planted.py"
RUN_TOOLS = {"list_agents", "start_run", "get_run", "cancel_run"}
TIMEOUT_S = 60


async def test_tools_are_listed_with_typed_schemas(mcp: McpTarget) -> None:
    async with mcp.client() as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert {"security_reviewer", "complexity_reviewer", "style_reviewer", "review_lead", "echo"} <= tools.keys()
    assert tools.keys() >= RUN_TOOLS
    lead = tools["review_lead"]
    assert "Skill Code review report" in (lead.description or "")
    props = lead.input_schema["properties"]
    assert {"text", "files", "data", "task_id"} <= props.keys()
    assert "text" not in lead.input_schema.get("required", []), "the lead can be sent files alone"
    assert lead.output_schema is not None
    assert {"state", "task_id", "text", "artifacts"} <= lead.output_schema["properties"].keys()
    assert "files" not in tools["echo"].input_schema["properties"], "echo takes text and JSON, not files"


async def test_review_lead_reports_progress_and_a_structured_result(mcp: McpTarget) -> None:
    progress: list[tuple[float, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append((value, message))

    files = [{"name": "planted.py", "content": PLANTED.read_text(encoding="utf-8")}]
    async with mcp.client() as client:
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("review_lead", {"files": files}, progress_callback=on_progress)
    assert not result.is_error, result.content
    outcome: dict[str, Any] = result.structured_content or {}
    assert outcome["state"] == "completed" and outcome["agent"] == "review-lead" and outcome["task_id"]
    report = next(a["data"] for a in outcome["artifacts"] if a.get("data"))
    rules = {f["rule"].split()[0] for f in report["findings"]}
    assert {"SEC001", "CPX001", "F401"} <= rules
    # integers stay integers through the data part's protobuf Value (every number a double there)
    assert type(report["summary"]["total"]) is int and all(type(f["line"]) is int for f in report["findings"])
    assert progress, "at least one progress notification"
    assert [v for v, _ in progress] == sorted({v for v, _ in progress}), "progress strictly increases"
    assert all(m and m.startswith("review-lead") for _, m in progress), progress
    assert any(outcome["task_id"] in (m or "") for _, m in progress), "the first update names the task"


async def test_unknown_tool_is_a_protocol_error(mcp: McpTarget) -> None:
    async with mcp.client() as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("no_such_agent", {"text": "hi"})
    assert caught.value.error.code == INVALID_PARAMS
    assert "no_such_agent" in caught.value.error.message


async def test_bad_arguments_and_unknown_agents_are_tool_errors(mcp_http: McpTarget) -> None:
    async with mcp_http.client() as client:
        wrong_type = await client.call_tool("review_lead", {"files": "not a list"})
        nothing = await client.call_tool("review_lead", {})
        unknown = await client.call_tool("start_run", {"agent": "no-such-agent", "text": "hi"})
    assert wrong_type.is_error and "files" in wrong_type.content[0].text
    assert nothing.is_error and "nothing to send" in nothing.content[0].text
    assert unknown.is_error and "list_agents" in unknown.content[0].text


async def test_list_agents_summarises_every_hosted_card(mcp_http: McpTarget) -> None:
    async with mcp_http.client() as client:
        result = await client.call_tool("list_agents", {})
    agents = {a["name"]: a for a in (result.structured_content or {})["agents"]}
    assert {"echo", "review-lead", "security-reviewer"} <= agents.keys()
    assert agents["security-reviewer"]["tool"] == "security_reviewer"
    assert agents["echo"]["card_url"].endswith("/agents/echo/.well-known/agent-card.json")
    assert agents["review-lead"]["skills"] and agents["review-lead"]["kind"] == "python"


async def test_the_code_review_workflow_reports_every_step(mcp_http: McpTarget) -> None:
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    files = [{"name": "planted.py", "content": PLANTED.read_text(encoding="utf-8")}]
    async with mcp_http.client() as client:
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("code_review", {"files": files}, progress_callback=on_progress)
    outcome: dict[str, Any] = result.structured_content or {}
    assert not result.is_error and outcome["state"] == "completed", outcome
    assert all(rule in outcome["text"] for rule in ("SEC001", "CPX001", "F401")), outcome["text"]
    for reviewer in ("security-reviewer", "complexity-reviewer", "style-reviewer", "review-lead"):
        assert any(reviewer in m for m in progress), f"no progress names {reviewer}"
