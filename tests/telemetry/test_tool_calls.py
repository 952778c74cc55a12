"""Tool calls are measured (gateway/telemetry/tool_calls.py): an ``llm`` agent's MCP tools and the ``mcp``
runtime count each call by agent, server, tool and outcome, time it, and trace it, against real MCP servers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from gateway.hosting.mcp_clients import McpClientPool
from gateway.telemetry import metrics, tracing
from gateway.testing import running_gateway
from tests.adapters.llm_server import ScriptedChatServer
from tests.adapters.mcp_servers import RAW_SERVER, stdio_server
from tests.adapters.test_llm_tools import answer, ask, calls, chat, evidence_dir, pool, runtime_with_tools
from tests.adapters.test_mcp_runtime import data_message, mcp_agent, run, write_agents
from tests.bindings.a2a_clients import BINDINGS
from tests.conftest import make_settings
from tests.telemetry.test_operating import samples, value

__all__ = ["chat", "evidence_dir", "pool"]  # fixtures, used by name
JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")


def counted(agent: str, server: str, tool: str, outcome: str) -> float:
    labels = {"agent": agent, "server": server, "tool": tool, "outcome": outcome}
    return metrics.REGISTRY.get_sample_value("switchboard_tool_calls_total", labels) or 0.0


def timed(agent: str, server: str, tool: str) -> float:
    labels = {"agent": agent, "server": server, "tool": tool}
    return metrics.REGISTRY.get_sample_value("switchboard_tool_call_duration_seconds_count", labels) or 0.0


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The gateway's tracer for one test, exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    before, tracing.TRACER = tracing.TRACER, provider.get_tracer("test")
    try:
        yield exporter
    finally:
        tracing.TRACER = before
        provider.shutdown()


async def test_an_llm_agents_mcp_tool_calls_are_counted_timed_and_traced_by_outcome(
    chat: ScriptedChatServer, pool: McpClientPool, spans: InMemorySpanExporter
) -> None:
    servers = [
        stdio_server(tools=["add", "refuse", "countdown"], timeout_s=0.5),
        {"name": "raw", "command": [sys.executable, str(RAW_SERVER)], "tools": ["broken"]},
    ]
    outcomes = [("tools", "add", "ok"), ("tools", "refuse", "error"), ("tools", "countdown", "failed")]
    outcomes.append(("raw", "broken", "failed"))
    before = {key: counted("helper", *key) for key in outcomes}
    durations = timed("helper", "tools", "add")
    chat.answer(
        calls(("add", {"a": 1, "b": 2}), ("refuse", {"reason": "no"}), ("countdown", {"steps": 0})),
        calls(("broken", {}), ("not_allowed", {})),
        answer("done"),
    )
    reply, _ = await ask(runtime_with_tools(chat, pool, mcp_servers=servers))
    assert reply.state == "completed", reply.text
    assert {key: counted("helper", *key) - before[key] for key in outcomes} == dict.fromkeys(outcomes, 1.0)
    assert timed("helper", "tools", "add") - durations == 1
    assert counted("helper", "tools", "not_allowed", "failed") == 0, "a name the model made up is no series"
    traced = {span.name: dict(span.attributes or {}) for span in spans.get_finished_spans()}
    assert traced["tool add"] == {"a2a.agent": "helper", "mcp.server": "tools", "mcp.tool": "add", "mcp.outcome": "ok"}
    assert traced["tool countdown"]["mcp.outcome"] == "failed"


async def test_the_mcp_runtimes_calls_show_on_metrics_by_agent_tool_and_outcome(
    tmp_path: Path, evidence_dir: Path
) -> None:
    agents = write_agents(tmp_path / "agents", mcp_agent("adder", "add"), mcp_agent("refuser", "refuse"))
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway, httpx.AsyncClient() as http:
        before = samples((await http.get(f"{gateway.url}/metrics")).text)
        sends = [("adder", {"a": 2, "b": 3}), ("adder", {"a": 1, "b": 1}), ("refuser", {"reason": "x"})]
        for agent, arguments in sends:
            await run(gateway, agent, JSONRPC, data_message(arguments))
        after = samples((await http.get(f"{gateway.url}/metrics")).text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    calls_total = "switchboard_tool_calls_total"
    assert moved(calls_total, agent="adder", server="tools", tool="add", outcome="ok") == 2
    assert moved(calls_total, agent="refuser", server="tools", tool="refuse", outcome="error") == 1
    assert moved("switchboard_tool_call_duration_seconds_count", agent="adder", server="tools", tool="add") == 2
