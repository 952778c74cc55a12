"""An OpenAI Agents SDK agent behind the gateway: A2A on JSON-RPC and gRPC, MCP, approvals, cancel, a workflow step."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

pytest.importorskip("agents", reason="the openai-agents extra is not installed: pip install '.[openai-agents]'")

from a2a.types.a2a_pb2 import TaskState
from agents import Agent

from adapters.framework import MAX_WAITING, Prices
from adapters.openai_agents import OpenAIAgentsAdapter, OpenAIAgentsOptions
from gateway.runtime import AgentCall, Emitter, Turn
from gateway.testing import RecordingEmitter, RunningGateway
from tests.adapters.framework_harness import A2A_ARMS, call_tool, cancel_when, converse, framework_gateway
from tests.adapters.llm_server import (
    ScriptedChatServer,
    Status,
    Stream,
    finish_chunk,
    text_chunk,
    tool_chunk,
    usage_chunk,
)
from tests.bindings.a2a_clients import Binding, a2a_client
from tests.orchestration.run_client import run_workflow

Served = tuple[RunningGateway, ScriptedChatServer]
AGENTS = Path(__file__).parent / "frameworks" / "openai_agents"
SEND = {"city": "Oslo", "team": "ops"}
QUESTION = f"Approve running send_forecast({json.dumps(SEND)})? Answer yes or no."


def call(name: str, arguments: dict[str, str], call_id: str, tokens: tuple[int, int]) -> Stream:
    """A model turn that calls one tool (call ids must be unique within a run)."""
    chunk = tool_chunk(0, name=name, arguments=json.dumps(arguments), call_id=call_id)
    return Stream([chunk, finish_chunk("tool_calls"), usage_chunk(*tokens)])


def handoff_and_forecast(run: str = "a") -> list[Stream]:
    """Triage hands off to the forecaster, which calls the forecast tool."""
    return [
        call("transfer_to_forecaster", {}, f"{run}1", (5, 1)),
        call("forecast", {"city": "Oslo"}, f"{run}2", (10, 5)),
    ]


def says(*texts: str, tokens: tuple[int, int] = (20, 4)) -> Stream:
    return Stream([*(text_chunk(t) for t in texts), finish_chunk(), usage_chunk(*tokens)])


@pytest.fixture
async def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Served]:
    async with framework_gateway(tmp_path, AGENTS, monkeypatch) as pair:
        yield pair


@pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
async def test_the_agent_answers_streaming_its_handoff_and_tool_calls(served: Served, binding: Binding) -> None:
    gateway, chat = served
    chat.answer(*handoff_and_forecast(), says("Sunny ", "in Oslo."))
    async with a2a_client(gateway.agent_url("weather-agents"), binding) as client:
        seen = await converse(client, "Weather in Oslo?")
    assert seen.state == TaskState.TASK_STATE_COMPLETED, seen.text
    assert seen.text == "Sunny in Oslo." == seen.artifact_text()
    assert "".join(seen.chunks).startswith("Sunny in Oslo."), "model text streams into the result artifact"
    assert "weather-agents: forecaster is working" in seen.progress, "the handoff stayed inside the agent"
    assert 'weather-agents: calling forecast({"city": "Oslo"})' in seen.progress
    assert "weather-agents: forecast returned" in seen.progress
    assert seen.usage == {"input_tokens": 35, "output_tokens": 10, "cost": 0}


@pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
async def test_a_tool_needing_approval_asks_and_the_answer_runs_it(served: Served, binding: Binding) -> None:
    gateway, chat = served
    chat.answer(*handoff_and_forecast(), call("send_forecast", SEND, "a3", (12, 5)), says("Sent.", tokens=(20, 4)))
    async with a2a_client(gateway.agent_url("weather-agents"), binding) as client:
        asked = await converse(client, "Weather in Oslo? Send it to ops.")
        assert asked.state == TaskState.TASK_STATE_INPUT_REQUIRED, asked.text
        assert asked.text == QUESTION
        assert asked.usage["input_tokens"] == 27, "the first turn's usage"
        done = await converse(client, "yes", task_id=asked.task.id)
    assert done.task.id == asked.task.id and done.state == TaskState.TASK_STATE_COMPLETED, done.text
    assert done.text == "Sent."
    assert done.usage["input_tokens"] == 20, "the second turn counts only its own tokens"
    tool_output = chat.received[3].body["messages"][-1]
    assert tool_output["role"] == "tool" and tool_output["content"] == "Sent the Oslo forecast to ops."


async def test_a_refused_approval_does_not_run_the_tool(served: Served) -> None:
    gateway, chat = served
    chat.answer(*handoff_and_forecast(), call("send_forecast", SEND, "a3", (12, 5)), says("Not sent."))
    async with a2a_client(gateway.agent_url("weather-agents"), A2A_ARMS[0]) as client:
        asked = await converse(client, "Weather in Oslo? Send it to ops.")
        done = await converse(client, "no", task_id=asked.task.id)
    assert done.state == TaskState.TASK_STATE_COMPLETED and done.text == "Not sent."
    tool_output = chat.received[3].body["messages"][-1]
    assert tool_output["role"] == "tool" and "Sent the Oslo forecast" not in tool_output["content"]


async def test_the_agent_is_an_mcp_tool_whose_approval_is_elicited(served: Served) -> None:
    gateway, chat = served
    chat.answer(*handoff_and_forecast(), call("send_forecast", SEND, "a3", (12, 5)), says("Sent."))
    result = await call_tool(gateway, "weather_agents", "Weather in Oslo? Send it to ops.", answer="yes")
    assert result.questions == [QUESTION]
    assert result.outcome["state"] == "completed" and result.outcome["text"] == "Sent.", result.outcome
    assert any("calling send_forecast" in said for said in result.progress), result.progress


async def test_a_conversation_is_one_session(served: Served) -> None:
    gateway, chat = served
    chat.answer(*handoff_and_forecast("a"), says("Sunny in Oslo."), says("You asked about Oslo."))
    async with a2a_client(gateway.agent_url("weather-agents"), A2A_ARMS[0]) as client:
        first = await converse(client, "Weather in Oslo?")
        second = await converse(client, "Which city did I ask about?", context_id=first.task.context_id)
    assert second.text == "You asked about Oslo."
    contents = [m.get("content") for m in chat.received[-1].body["messages"]]
    assert "Weather in Oslo?" in contents and contents[-1] == "Which city did I ask about?", contents


async def test_the_sessions_database_is_closed_when_the_gateway_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    file = yaml.safe_load((AGENTS / "weather-agents.yaml").read_text())
    file["runtime"]["agent"] = "tests.adapters.frameworks.openai_agents.weather_agents:build"  # one module object
    file["runtime"]["options"]["session_db"] = "sessions.db"
    (agents / "weather-agents.yaml").write_text(yaml.safe_dump(file))
    wal = agents / "sessions.db-wal"  # SQLite's write-ahead log: there while a connection is open
    async with framework_gateway(tmp_path, agents, monkeypatch) as (gateway, chat):
        chat.answer(says("Hello."))
        async with a2a_client(gateway.agent_url("weather-agents"), A2A_ARMS[0]) as client:
            assert (await converse(client, "Hi")).text == "Hello."
        assert wal.exists()
    assert gateway.app.state.gateway.agents, "the gateway (and its adapter's sessions) is still referenced"
    assert not wal.exists(), "the stop closed the session's connections (the last one to close removes the log)"


async def test_cancel_mid_run_cancels_the_run(served: Served) -> None:
    gateway, chat = served
    chat.answer(
        call("transfer_to_forecaster", {}, "a1", (5, 1)), Stream([text_chunk("Thinking")], done=False, stall=True)
    )
    async with a2a_client(gateway.agent_url("weather-agents"), A2A_ARMS[1]) as client:
        task, progress = await cancel_when(client, "Weather in Oslo?", "forecaster is working")
    assert task.status.state == TaskState.TASK_STATE_CANCELED, progress


async def test_an_agent_that_raises_mid_stream_fails_with_the_reason(served: Served) -> None:
    gateway, chat = served
    chat.answer(call("transfer_to_forecaster", {}, "a1", (5, 1)), Status(400, "context too long"))
    async with a2a_client(gateway.agent_url("weather-agents"), A2A_ARMS[0]) as client:
        seen = await converse(client, "Weather in Oslo?")
    assert seen.state == TaskState.TASK_STATE_FAILED
    assert seen.text.startswith("weather-agents: the openai-agents agent raised BadRequestError"), seen.text
    assert "context too long" in seen.text


async def test_the_agent_is_a_step_of_a_sequential_workflow(served: Served) -> None:
    gateway, chat = served
    chat.answer(*handoff_and_forecast(), says("Sunny in Oslo."))
    run = await run_workflow(gateway, "weather-relay", "Weather in Oslo?")
    assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
    assert run.step("step-1-weather-agents").text == "Sunny in Oslo."
    assert run.text == "Sunny in Oslo."
    assert any("calling forecast" in said for said in run.progress), run.progress


async def test_an_approval_nothing_waits_for_fails_saying_to_send_the_request_again() -> None:
    adapter = OpenAIAgentsAdapter("weather", Agent(name="x"), OpenAIAgentsOptions(), Prices())
    sink: Emitter = RecordingEmitter()
    lost = AgentCall(text="yes", context_id="c", task_id="t", history=(Turn("user", "Send it."), Turn("agent", "?")))
    reply = await adapter(lost, sink)
    assert reply.state == "failed" and reply.text.endswith("send the request again"), reply.text


def test_sessions_past_the_limit_are_forgotten_without_warning_of_waiting_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter = OpenAIAgentsAdapter("weather", Agent(name="x"), OpenAIAgentsOptions(), Prices())
    paused = object()
    adapter.waiting.put("task-waiting", paused)
    with caplog.at_level(logging.WARNING, logger="adapters.framework"):
        for n in range(MAX_WAITING + 5):
            adapter._session(AgentCall(text="hi", context_id=f"c{n}", task_id=f"t{n}"))
    assert caplog.records == [], "a session forgotten is no waiting run forgotten"
    assert len(adapter.sessions) == MAX_WAITING and "task-waiting" in adapter.waiting

    with caplog.at_level(logging.WARNING, logger="adapters.framework"):
        for n in range(MAX_WAITING):
            adapter.waiting.put(f"task-{n}", paused)
    assert [r.getMessage() for r in caplog.records] == [
        f"forgot the waiting run of task task-waiting: more than {MAX_WAITING} runs wait for input"
    ]
