"""A Google ADK agent served by the gateway: A2A on JSON-RPC and gRPC, MCP, confirmations, cancel, workflows."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.types.a2a_pb2 import TaskState

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else LiteLLM fetches its price list at import
pytest.importorskip("google.adk", reason="Google ADK is not installed: pip install 'switchboard-gateway[adk]'")
pytest.importorskip("litellm", reason="LiteLLM (ADK's OpenAI-compatible model) is not installed")

from adapters.adk import AdkAdapter, AdkOptions
from adapters.framework import Prices
from gateway.runtime import AgentCall
from gateway.testing import RecordingEmitter
from tests.adapters import adk_agents
from tests.adapters.framework_harness import (
    A2A_ARMS,
    ARMS,
    WAIT_S,
    agent_file,
    ask,
    call_tool,
    cancel_mid_run,
    model_server,
    sequential_file,
    serving,
    with_echo,
)
from tests.adapters.llm_server import ScriptedChatServer, Stream, finish_chunk, text_chunk, tool_chunk, usage_chunk
from tests.bindings.a2a_clients import BINDINGS
from tests.orchestration.run_client import run_workflow

# LiteLLM's types trip a pydantic warning (ReadOnly TypedDict items) the first time a completion runs.
pytestmark = pytest.mark.filterwarnings("ignore:.* the .ReadOnly. qualifier:UserWarning")
AGENT = "release-assistant"
MODULE = "tests.adapters.adk_agents"


def lookup_then_answer(chat: ScriptedChatServer) -> None:
    """The model looks a topic up, then answers in two chunks."""
    chat.answer(
        Stream(
            [tool_chunk(0, name="lookup", arguments='{"topic": "2.0"}'), finish_chunk("tool_calls"), usage_chunk(7, 2)]
        ),
        Stream([text_chunk("2.0 is "), text_chunk("ready."), finish_chunk(), usage_chunk(11, 3)]),
    )


def deploy_then_answer(chat: ScriptedChatServer) -> None:
    """The model calls the tool that needs confirmation; once confirmed, it answers."""
    chat.answer(
        Stream([tool_chunk(0, name="deploy", arguments='{"version": "2.0"}'), finish_chunk("tool_calls")]),
        Stream([text_chunk("Deployed 2.0."), finish_chunk()]),
    )


@pytest.fixture
async def chat(monkeypatch: pytest.MonkeyPatch) -> Any:
    async with model_server(monkeypatch) as server:
        yield server


def agents(tmp_path: Path) -> Path:
    folder = with_echo(tmp_path / "agents")
    agent_file(folder, AGENT, "adk", f"{MODULE}:assistant")
    agent_file(folder, "broken", "adk", f"{MODULE}:broken")
    sequential_file(folder, "release-pipeline", [AGENT, "echo"])
    sequential_file(folder, "thrifty-pipeline", [AGENT, "echo"], max_tokens=10)
    return folder


@pytest.mark.parametrize("binding", ARMS, ids=lambda b: b.id)
async def test_answers_with_tool_progress_and_usage(chat: ScriptedChatServer, tmp_path: Path, binding: Any) -> None:
    lookup_then_answer(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        outcome = await ask(gateway, AGENT, binding, "Is 2.0 ready?")
    assert outcome.state == TaskState.TASK_STATE_COMPLETED, outcome.text
    assert outcome.artifact_text() == "2.0 is ready."
    assert outcome.usage == {"input_tokens": 18, "output_tokens": 5, "cost": 0}
    sent = chat.received[1].body["messages"]
    assert sent[-1]["role"] == "tool" and "notes on 2.0" in sent[-1]["content"], "the tool ran and the model saw it"
    if binding.streaming:
        assert f'{AGENT}: calling lookup({{"topic": "2.0"}})' in outcome.progress
        assert f"{AGENT}: lookup returned" in outcome.progress
        assert outcome.chunks[:2] == ["2.0 is ", "ready."], "the answer streamed in chunks"


@pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
async def test_a_confirmation_goes_input_required_and_the_answer_resumes(
    chat: ScriptedChatServer, tmp_path: Path, binding: Any
) -> None:
    deploy_then_answer(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        waiting = await ask(gateway, AGENT, binding, "Ship 2.0")
        assert waiting.state == TaskState.TASK_STATE_INPUT_REQUIRED, waiting.text
        assert waiting.text.startswith('Confirm deploy({"version": "2.0"})? Answer yes or no.')
        done = await ask(gateway, AGENT, binding, "yes", task_id=waiting.task.id)
    assert done.state == TaskState.TASK_STATE_COMPLETED, done.text
    assert done.task.id == waiting.task.id and done.artifact_text() == "Deployed 2.0."
    tool_message = chat.received[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "deployed 2.0" in tool_message["content"], "the confirmed tool ran"


async def test_a_refusal_reaches_the_model_and_the_tool_never_runs(chat: ScriptedChatServer, tmp_path: Path) -> None:
    chat.answer(
        Stream([tool_chunk(0, name="deploy", arguments='{"version": "2.0"}'), finish_chunk("tool_calls")]),
        Stream([text_chunk("Not deployed."), finish_chunk()]),
    )
    binding = next(b for b in BINDINGS if b.id == "jsonrpc")
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        waiting = await ask(gateway, AGENT, binding, "Ship 2.0")
        done = await ask(gateway, AGENT, binding, "no", task_id=waiting.task.id)
    assert done.state == TaskState.TASK_STATE_COMPLETED and done.artifact_text() == "Not deployed."
    tool_message = chat.received[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "rejected" in tool_message["content"]


async def test_as_an_mcp_tool_the_approval_is_an_elicitation(chat: ScriptedChatServer, tmp_path: Path) -> None:
    deploy_then_answer(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        called = await call_tool(gateway, AGENT.replace("-", "_"), "Ship 2.0", answer="yes")
    assert called.outcome["state"] == "completed", called.outcome
    assert called.questions and called.questions[0].startswith('Confirm deploy({"version": "2.0"})?')
    assert "Deployed 2.0." in " ".join(a.get("text") or "" for a in called.outcome["artifacts"])
    assert f"{AGENT}: deploy returned" in called.progress, "the tool's progress reached the MCP caller"


@pytest.mark.parametrize("binding", [b for b in ARMS if not b.streaming], ids=lambda b: b.id)
async def test_a_run_is_canceled_mid_model_call(chat: ScriptedChatServer, tmp_path: Path, binding: Any) -> None:
    chat.answer(Stream([text_chunk("Thinking about it")], stall=True), Stream([text_chunk("after"), finish_chunk()]))
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        task = await cancel_mid_run(gateway, AGENT, binding, "Think hard", chat)
        again = await ask(gateway, AGENT, binding, "still there?")
    assert task.status.state == TaskState.TASK_STATE_CANCELED
    assert again.state == TaskState.TASK_STATE_COMPLETED and again.artifact_text() == "after", "the agent serves on"


async def test_is_a_step_of_a_sequential_workflow(chat: ScriptedChatServer, tmp_path: Path) -> None:
    lookup_then_answer(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        run = await run_workflow(gateway, "release-pipeline", "Is 2.0 ready?")
    assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
    assert run.step(f"step-1-{AGENT}").text == "2.0 is ready."
    assert run.text == "2.0 is ready.", "echo repeated the ADK agent's answer"
    assert "step 1/2 · release-assistant: lookup returned" in run.progress, "the step's progress reached the run"


async def test_its_usage_counts_against_a_runs_token_budget(chat: ScriptedChatServer, tmp_path: Path) -> None:
    lookup_then_answer(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        run = await run_workflow(gateway, "thrifty-pipeline", "Is 2.0 ready?")
    assert run.task.status.state == TaskState.TASK_STATE_FAILED
    assert "23 tokens used of a 10-token budget" in run.text, run.text


async def test_an_agent_raising_mid_stream_fails_its_task_and_the_gateway_serves_on(
    chat: ScriptedChatServer, tmp_path: Path
) -> None:
    lookup_then_answer(chat)
    binding = next(b for b in BINDINGS if b.id == "grpc-stream")
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        failed = await ask(gateway, "broken", binding, "go")
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            health = await http.get("/healthz")
        fine = await ask(gateway, AGENT, binding, "Is 2.0 ready?")
    assert failed.state == TaskState.TASK_STATE_FAILED
    assert failed.text == "broken: the adk agent raised RuntimeError: the release database is unreachable"
    assert failed.chunks == ["starting"], "what streamed before the failure was kept"
    assert health.status_code == 200 and fine.state == TaskState.TASK_STATE_COMPLETED


async def test_a_data_part_answers_a_confirmation(chat: ScriptedChatServer) -> None:
    deploy_then_answer(chat)
    adapter = AdkAdapter("rel", adk_agents.assistant(), AdkOptions(), Prices())
    first = await adapter(AgentCall(text="Ship 2.0", task_id="t1"), RecordingEmitter())
    assert first.state == "input-required" and "t1" in adapter.waiting
    emit = RecordingEmitter()
    async with asyncio.timeout(WAIT_S):
        done = await adapter(AgentCall(text="", data=({"confirmed": True},), task_id="t1"), emit)
    assert done.state == "completed" and done.text == "Deployed 2.0."
    assert emit.progress_messages == ["rel: deploy returned"]
    runner = adapter.runner
    kept = await runner.session_service.get_session(app_name=runner.app_name, user_id="switchboard", session_id="t1")
    assert kept is None, "the task's session ended with it"


async def test_a_long_running_tool_waits_for_the_callers_answer_as_its_result(chat: ScriptedChatServer) -> None:
    chat.answer(
        Stream([tool_chunk(0, name="ask_manager", arguments='{"request": "ship 2.0"}'), finish_chunk("tool_calls")]),
        Stream([text_chunk("Asked the release manager."), finish_chunk()]),  # on the tool's first, pending answer
        Stream([text_chunk("Signed off."), finish_chunk()]),
    )
    adapter = AdkAdapter("signoff", adk_agents.signoff(), AdkOptions(), Prices())
    async with asyncio.timeout(WAIT_S):
        first = await adapter(AgentCall(text="Get 2.0 signed off", task_id="t1"), RecordingEmitter())
        done = await adapter(AgentCall(text="approved by Ada", task_id="t1"), RecordingEmitter())
    assert first.state == "input-required"
    assert first.text == 'ask_manager({"request": "ship 2.0"}) waits for your answer.'
    assert done.state == "completed" and done.text == "Signed off."
    tool_message = chat.received[-1].body["messages"][-1]
    assert tool_message["role"] == "tool" and "approved by Ada" in tool_message["content"], tool_message
