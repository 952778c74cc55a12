"""A LangGraph graph served by the gateway: A2A on JSON-RPC and gRPC, MCP, interrupts, cancel, a workflow step."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("langgraph", reason="the langgraph extra is not installed: pip install '.[langgraph]'")
pytest.importorskip("langchain_openai", reason="the test graph's model needs langchain-openai")

from typing import Annotated, Any, TypedDict

from a2a.types.a2a_pb2 import TaskState
from google.protobuf.json_format import MessageToDict
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph, add_messages

from adapters.framework import Prices
from adapters.langgraph import LangGraphAdapter, LangGraphOptions
from gateway.runtime import AgentCall, Emitter, Turn
from gateway.testing import RecordingEmitter, RunningGateway
from tests.adapters.framework_harness import (
    A2A_ARMS,
    call_tool,
    cancel_when,
    converse,
    framework_gateway,
)
from tests.adapters.llm_server import (
    ScriptedChatServer,
    Status,
    Stream,
    finish_chunk,
    scripted_chat_server,
    text_chunk,
    tool_chunk,
    usage_chunk,
)
from tests.bindings.a2a_clients import Binding, a2a_client
from tests.orchestration.run_client import run_workflow

Served = tuple[RunningGateway, ScriptedChatServer]
AGENTS = Path(__file__).parent / "frameworks" / "langgraph"
OSLO = '{"city": "Oslo"}'
QUESTION = "Send this forecast to the team? (yes/no)"


def forecast_answers() -> list[Stream]:
    """The model calls the forecast tool, then answers with what it returned."""
    return [
        Stream(
            [
                tool_chunk(0, name="forecast", arguments='{"city": "Oslo"}'),
                finish_chunk("tool_calls"),
                usage_chunk(10, 5),
            ]
        ),
        Stream([text_chunk("Sunny "), text_chunk("in Oslo."), finish_chunk(), usage_chunk(20, 4)]),
    ]


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[RunningGateway, ScriptedChatServer]]:
    async with framework_gateway(tmp_path, AGENTS, monkeypatch) as pair:
        yield pair


@pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
async def test_the_graph_answers_streaming_its_tool_call_and_tokens(served: Served, binding: Binding) -> None:
    gateway, chat = served
    chat.answer(*forecast_answers())
    async with a2a_client(gateway.agent_url("weather-graph"), binding) as client:
        seen = await converse(client, "Weather in Oslo?")
    assert seen.state == TaskState.TASK_STATE_COMPLETED, seen.text
    assert seen.text == "Sunny in Oslo." == seen.artifact_text()
    assert "".join(seen.chunks).startswith("Sunny in Oslo."), "model tokens stream into the result artifact"
    assert 'weather-graph: calling forecast({"city": "Oslo"})' in seen.progress
    assert "weather-graph: forecast returned" in seen.progress
    assert "weather-graph: asking the model" in seen.progress, "get_stream_writer() shows as progress"
    assert seen.usage == {"input_tokens": 30, "output_tokens": 9, "cost": 0}
    sent = chat.received[1].body["messages"]
    assert sent[0] == {"role": "user", "content": "Weather in Oslo?"} and sent[-1]["content"] == "Sunny in Oslo, 21 C"


@pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
async def test_an_interrupt_asks_for_input_and_the_answer_resumes_the_graph(served: Served, binding: Binding) -> None:
    gateway, chat = served
    chat.answer(*forecast_answers())
    async with a2a_client(gateway.agent_url("weather-graph"), binding) as client:
        asked = await converse(client, "Weather in Oslo? Send it.")
        assert asked.state == TaskState.TASK_STATE_INPUT_REQUIRED, asked.text
        assert asked.text == QUESTION
        done = await converse(client, "yes", task_id=asked.task.id)
    assert done.task.id == asked.task.id and done.state == TaskState.TASK_STATE_COMPLETED, done.text
    assert done.text == "Sent to the team."
    assert len(chat.received) == 2, "the resumed graph did not call the model again"


async def test_the_graph_is_an_mcp_tool_whose_question_is_elicited(
    served: Served,
) -> None:
    gateway, chat = served
    chat.answer(*forecast_answers())
    result = await call_tool(gateway, "weather_graph", "Weather in Oslo? Send it.", answer="no")
    assert result.questions == [QUESTION]
    assert result.outcome["state"] == "completed" and result.outcome["text"] == "Not sent.", result.outcome
    assert any("calling forecast" in said for said in result.progress), result.progress


async def test_a_thread_is_the_a2a_context(served: Served) -> None:
    gateway, chat = served
    chat.answer(*forecast_answers(), Stream([text_chunk("You asked about Oslo."), finish_chunk()]))
    async with a2a_client(gateway.agent_url("weather-graph"), A2A_ARMS[0]) as client:
        first = await converse(client, "Weather in Oslo?")
        second = await converse(client, "Which city did I ask about?", context_id=first.task.context_id)
    assert second.text == "You asked about Oslo."
    history = [m.get("content") for m in chat.received[2].body["messages"]]
    assert history[0] == "Weather in Oslo?" and history[-1] == "Which city did I ask about?", history


async def test_cancel_mid_run_cancels_the_graph(served: Served) -> None:
    gateway, chat = served
    chat.answer(Stream([text_chunk("Thinking")], done=False, stall=True))
    async with a2a_client(gateway.agent_url("weather-graph"), A2A_ARMS[1]) as client:
        task, progress = await cancel_when(client, "Weather in Oslo?", "asking the model")
    assert task.status.state == TaskState.TASK_STATE_CANCELED
    assert "weather-graph: asking the model" in progress


async def test_a_graph_that_raises_mid_stream_fails_with_the_reason(
    served: Served,
) -> None:
    gateway, chat = served
    chat.answer(Status(400, "context too long"))
    async with a2a_client(gateway.agent_url("weather-graph"), A2A_ARMS[0]) as client:
        seen = await converse(client, "Weather in Oslo?")
    assert seen.state == TaskState.TASK_STATE_FAILED
    assert seen.text.startswith("weather-graph: the langgraph agent raised "), seen.text
    # openai 3.3 (held there by crewai's jiter pin when both extras share a venv) quotes the whole error body
    assert "Error code: 400 - " in seen.text and "context too long" in seen.text, seen.text


async def test_an_overloaded_model_fails_the_step_as_retryable(served: Served) -> None:
    gateway, chat = served
    chat.answer(Status(503, "overloaded"), Status(503, "overloaded"), Status(503, "overloaded"))
    async with a2a_client(gateway.agent_url("weather-graph"), A2A_ARMS[0]) as client:
        seen = await converse(client, "Weather in Oslo?")
    assert seen.state == TaskState.TASK_STATE_FAILED and "503" in seen.text, seen.text
    meta = MessageToDict(seen.task.status.message.metadata)["switchboard"]
    assert meta["retryable"] is True and meta["reason"] == "model-unavailable"


async def test_the_graph_is_a_step_of_a_sequential_workflow(served: Served) -> None:
    gateway, chat = served
    chat.answer(*forecast_answers())
    run = await run_workflow(gateway, "weather-pipeline", "Weather in Oslo?")
    assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
    assert run.step("step-1-weather-graph").text == "Sunny in Oslo."
    assert run.text == "SUNNY IN OSLO."
    assert any("calling forecast" in said for said in run.progress), run.progress


class Counted(TypedDict):
    text: str
    report: dict[str, int]


def counting_graph() -> StateGraph[Counted]:
    """A graph of one node and no model: the words of its input, as a report."""

    def count(state: Counted) -> dict[str, Any]:
        return {"report": {"words": len(state["text"].split())}}

    graph = StateGraph(Counted)
    graph.add_node("count", count)
    graph.add_edge(START, "count")
    graph.add_edge("count", END)
    return graph


async def test_an_uncompiled_graph_answers_with_its_output_key_from_a_data_message() -> None:
    adapter = LangGraphAdapter("counter", counting_graph(), LangGraphOptions(output_key="report"), Prices())
    emit = RecordingEmitter()
    sink: Emitter = emit
    reply = await adapter(AgentCall(text="", data=({"text": "one two three"},), context_id="c1"), sink)
    assert reply.state == "completed" and reply.data == {"words": 3}
    assert emit.progress_messages == ["counter: count done"]


async def test_a_breakpoint_asks_to_go_on_and_any_answer_continues() -> None:
    graph = counting_graph().compile(interrupt_before=["count"], checkpointer=InMemorySaver())
    adapter = LangGraphAdapter("counter", graph, LangGraphOptions(output_key="report"), Prices())
    sink: Emitter = RecordingEmitter()
    first = AgentCall(text="", data=({"text": "a b"},), context_id="c2", task_id="t2")
    paused = await adapter(first, sink)
    assert paused.state == "input-required"
    assert paused.text == "The graph paused before count; send any message to go on."
    answer = AgentCall(text="go", context_id="c2", task_id="t2", history=(Turn("user", ""), Turn("agent", paused.text)))
    done = await adapter(answer, sink)
    assert done.state == "completed" and done.data == {"words": 2}


async def test_the_graphs_usage_counts_against_the_runs_token_budget(served: Served) -> None:
    gateway, chat = served
    chat.answer(*forecast_answers())  # 39 tokens, over the workflow's 20
    run = await run_workflow(gateway, "weather-budget", "Weather in Oslo?")
    assert run.task.status.state == TaskState.TASK_STATE_FAILED, run.text
    assert "token" in run.text.lower() and "20" in run.text, run.text
    assert run.step("step-1-weather-graph").text == "Sunny in Oslo.", "the step itself completed"
    assert all(not name.startswith("step-2") for name in run.artifacts), "shout never ran"


async def test_an_answer_nothing_waits_for_fails_saying_to_send_the_request_again() -> None:
    adapter = LangGraphAdapter("counter", counting_graph(), LangGraphOptions(output_key="report"), Prices())
    sink: Emitter = RecordingEmitter()
    lost = AgentCall(text="yes", context_id="c3", task_id="t3", history=(Turn("user", "a b"), Turn("agent", "Go?")))
    reply = await adapter(lost, sink)
    assert reply.state == "failed" and reply.text.endswith("send the request again"), reply.text


async def test_without_token_streaming_the_answer_comes_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    async with scripted_chat_server() as chat:
        monkeypatch.setenv("OPENAI_BASE_URL", chat.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        from tests.adapters.frameworks.langgraph.weather_graph import build

        chat.answer(*forecast_answers())
        adapter = LangGraphAdapter("weather", build(), LangGraphOptions(stream_tokens=False), Prices())
        emit = RecordingEmitter()
        sink: Emitter = emit
        reply = await adapter(AgentCall(text="Weather in Oslo?", context_id="c4", task_id="t4"), sink)
    assert reply.state == "completed" and reply.text == "Sunny in Oslo."
    assert emit.artifacts == [], "no token chunks"
    assert 'weather: calling forecast({"city": "Oslo"})' in emit.progress_messages


class Chat(TypedDict):
    chat: Annotated[list[Any], add_messages]


async def test_usage_is_counted_under_the_files_messages_key() -> None:
    def reply(state: Chat) -> dict[str, Any]:
        usage = {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}
        return {"chat": [AIMessage(content="hi", usage_metadata=usage)]}

    graph = StateGraph(Chat)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    graph.add_edge("reply", END)
    options = LangGraphOptions(messages_key="chat", stream_tokens=False)
    adapter = LangGraphAdapter("chatty", graph, options, Prices())
    sink: Emitter = RecordingEmitter()
    done = await adapter(AgentCall(text="hello", context_id="c5", task_id="t5"), sink)
    assert done.state == "completed" and done.text == "hi"
    assert done.usage is not None and (done.usage.input_tokens, done.usage.output_tokens) == (3, 2)


async def test_another_owner_naming_the_same_context_gets_a_thread_of_its_own() -> None:
    seen: list[int] = []

    def reply(state: Chat) -> dict[str, Any]:
        seen.append(len(state["chat"]))  # the messages the thread holds, this one included
        return {"chat": [AIMessage(content="noted")]}

    graph = StateGraph(Chat)
    graph.add_node("reply", reply)
    graph.add_edge(START, "reply")
    graph.add_edge("reply", END)
    adapter = LangGraphAdapter("chatty", graph, LangGraphOptions(messages_key="chat", stream_tokens=False), Prices())
    sink: Emitter = RecordingEmitter()
    await adapter(AgentCall(text="my secret", context_id="shared", task_id="t1", owner="alice"), sink)
    await adapter(AgentCall(text="what was said?", context_id="shared", task_id="t2", owner="bob"), sink)
    await adapter(AgentCall(text="and now?", context_id="shared", task_id="t3", owner="alice"), sink)

    assert seen == [1, 1, 3], "bob's thread is empty; alice's holds her first turn and its answer"
