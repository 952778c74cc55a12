"""A CrewAI crew served by the gateway: A2A on JSON-RPC and gRPC, MCP, human feedback, cancel, workflows."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.types.a2a_pb2 import CancelTaskRequest, TaskState
from mcp.client import Client as McpClient
from mcp.client.stdio import StdioServerParameters

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else LiteLLM (beside CrewAI) fetches prices at import
os.environ.setdefault("CREWAI_DISABLE_TELEMETRY", "true")  # no network here for CrewAI's anonymous telemetry
pytest.importorskip("crewai", reason="CrewAI is not installed: pip install 'switchboard-gateway[crewai]'")

from adapters.crewai import CrewAiAdapter, CrewAiOptions
from adapters.framework import Prices
from gateway.runtime import AgentCall
from gateway.testing import RecordingEmitter
from tests.adapters import crewai_agents
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
from tests.adapters.llm_server import ScriptedChatServer, Stream, finish_chunk, text_chunk, usage_chunk
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.orchestration.run_client import run_workflow

pytestmark = pytest.mark.filterwarnings("ignore:.* the .ReadOnly. qualifier:UserWarning")
CREW = "release-crew"
MODULE = "tests.adapters.crewai_agents"
REPO_ROOT = Path(__file__).resolve().parents[2]


def said(text: str, usage: tuple[int, int] | None = None) -> Stream:
    """One model answer in CrewAI's ReAct format."""
    tail = [usage_chunk(*usage)] if usage else []
    return Stream([text_chunk(text), finish_chunk(), *tail])


def research_then_write(chat: ScriptedChatServer) -> None:
    """The researcher uses its tool and reports; the writer writes."""
    chat.answer(
        said('Thought: look it up\nAction: lookup\nAction Input: {"topic": "2.0"}', (10, 5)),
        said("Thought: I know now.\nFinal Answer: notes on 2.0", (12, 5)),
        said("Thought: easy.\nFinal Answer: 2.0 is ready.", (20, 6)),
    )


def tagline_then_revision(chat: ScriptedChatServer) -> None:
    chat.answer(said("Thought: ok\nFinal Answer: Ship it."), said("Thought: ok\nFinal Answer: Ship it, safely."))


@pytest.fixture
async def chat(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScriptedChatServer]:
    async with model_server(monkeypatch) as server:
        yield server


def agents(tmp_path: Path) -> Path:
    folder = with_echo(tmp_path / "agents")
    agent_file(folder, CREW, "crewai", f"{MODULE}:release_crew")
    agent_file(folder, "tagline-crew", "crewai", f"{MODULE}:reviewed_crew", input_key="request")
    agent_file(folder, "broken-crew", "crewai", f"{MODULE}:broken_crew")
    sequential_file(folder, "release-pipeline", [CREW, "echo"])
    sequential_file(folder, "thrifty-pipeline", [CREW, "echo"], max_tokens=10)
    return folder


@pytest.mark.parametrize("binding", ARMS, ids=lambda b: b.id)
async def test_a_crew_answers_with_per_task_progress_and_usage(
    chat: ScriptedChatServer, tmp_path: Path, binding: Any
) -> None:
    research_then_write(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        outcome = await ask(gateway, CREW, binding, "2.0")
    assert outcome.state == TaskState.TASK_STATE_COMPLETED, outcome.text
    assert outcome.text == "2.0 is ready."
    names = [a.name for a in outcome.task.artifacts]
    assert names == ["task-1", "task-2", "result"], "each task's output is an artifact"
    assert outcome.usage == {"input_tokens": 42, "output_tokens": 16, "cost": 0}
    assert "notes on 2.0" in chat.received[1].body["messages"][-1]["content"], "the tool ran, the model saw it"
    if binding.streaming:
        assert outcome.progress[:6] == [
            f"{CREW}: task 1/2 · Researcher: Research 2.0",
            f'{CREW}: calling lookup({{"topic": "2.0"}})',
            f"{CREW}: lookup returned",
            f"{CREW}: task 1/2 · Researcher: done",
            f"{CREW}: task 2/2 · Writer: Write one sentence about 2.0",
            f"{CREW}: task 2/2 · Writer: done",
        ]


@pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
async def test_human_feedback_goes_input_required_until_accepted(
    chat: ScriptedChatServer, tmp_path: Path, binding: Any
) -> None:
    tagline_then_revision(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        first = await ask(gateway, "tagline-crew", binding, "2.0")
        revised = await ask(gateway, "tagline-crew", binding, "mention safety", task_id=first.task.id)
        done = await ask(gateway, "tagline-crew", binding, "ok", task_id=first.task.id)
    assert first.state == revised.state == TaskState.TASK_STATE_INPUT_REQUIRED, first.text
    assert "Ship it." in first.text and first.text.endswith("Reply ok to accept it, or say what to change.")
    assert "Ship it, safely." in revised.text
    assert "mention safety" in chat.received[1].body["messages"][-1]["content"], "the feedback reached the agent"
    assert done.state == TaskState.TASK_STATE_COMPLETED and done.text == "Ship it, safely."
    assert len(chat.received) == 2, "accepting asked the model nothing more"


async def test_as_an_mcp_tool_the_feedback_is_an_elicitation(chat: ScriptedChatServer, tmp_path: Path) -> None:
    tagline_then_revision(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        called = await call_tool(gateway, "tagline_crew", "2.0", answer="ok")
    assert called.outcome["state"] == "completed", called.outcome
    assert len(called.questions) == 1 and "Ship it." in called.questions[0]
    assert called.outcome["text"] == "Ship it."
    assert "tagline-crew: task 1/1 · Writer: done" in called.progress, "the crew's progress reached the MCP caller"


@pytest.mark.parametrize("binding", [b for b in ARMS if not b.streaming], ids=lambda b: b.id)
async def test_a_crew_is_canceled_mid_model_call(chat: ScriptedChatServer, tmp_path: Path, binding: Any) -> None:
    chat.answer(Stream([text_chunk("Thought: hmm")], stall=True))
    research_then_write(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        task = await cancel_mid_run(gateway, CREW, binding, "2.0", chat)
        again = await ask(gateway, CREW, binding, "2.0")
    assert task.status.state == TaskState.TASK_STATE_CANCELED
    assert again.state == TaskState.TASK_STATE_COMPLETED and again.text == "2.0 is ready.", "the crew serves on"


async def test_a_crew_waiting_for_feedback_is_canceled(chat: ScriptedChatServer, tmp_path: Path) -> None:
    tagline_then_revision(chat)
    binding = next(b for b in BINDINGS if b.id == "grpc")
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        waiting = await ask(gateway, "tagline-crew", binding, "2.0")
        async with a2a_client(gateway.agent_url("tagline-crew"), binding) as client:
            canceled = await client.cancel_task(CancelTaskRequest(id=waiting.task.id))
        assert await asyncio.to_thread(_crew_threads_end), "the crew's thread let go of its question"
    assert waiting.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED


def _crew_threads_end() -> bool:
    for thread in [t for t in threading.enumerate() if t.name == "crewai-run"]:
        thread.join(WAIT_S)
    return not any(t.name == "crewai-run" for t in threading.enumerate())


async def test_a_canceled_crew_makes_no_further_model_call(chat: ScriptedChatServer) -> None:
    chat.answer(Stream([text_chunk("Thought: hmm")], stall=True), *[said("Final Answer: never")] * 3)
    adapter = CrewAiAdapter("crew", crewai_agents.release_crew(), CrewAiOptions(), Prices())
    call = asyncio.ensure_future(adapter(AgentCall(text="2.0", task_id="t1"), RecordingEmitter()))
    async with asyncio.timeout(WAIT_S):
        await chat.requests(1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        chat.release()  # the model call under way ends; the next one is refused
        assert await asyncio.to_thread(_crew_threads_end)
    assert len(chat.received) == 1


async def test_a_crew_is_a_step_of_a_sequential_workflow(chat: ScriptedChatServer, tmp_path: Path) -> None:
    research_then_write(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        run = await run_workflow(gateway, "release-pipeline", "2.0")
    assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
    assert run.text == "2.0 is ready.", "echo repeated the crew's answer"
    assert f"step 1/2 · {CREW}: task 2/2 · Writer: done" in run.progress, "the crew's progress reached the run"


async def test_a_crews_usage_counts_against_a_runs_token_budget(chat: ScriptedChatServer, tmp_path: Path) -> None:
    research_then_write(chat)
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        run = await run_workflow(gateway, "thrifty-pipeline", "2.0")
    assert run.task.status.state == TaskState.TASK_STATE_FAILED
    assert "58 tokens used of a 10-token budget" in run.text, run.text


async def test_a_crew_raising_mid_run_fails_its_task_and_the_gateway_serves_on(
    chat: ScriptedChatServer, tmp_path: Path
) -> None:
    chat.answer(said("Final Answer: notes on 2.0"))
    research_then_write(chat)
    binding = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
    async with serving(tmp_path, agents(tmp_path)) as gateway:
        failed = await ask(gateway, "broken-crew", binding, "2.0")
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            health = await http.get("/healthz")
        fine = await ask(gateway, CREW, binding, "2.0")
    assert failed.state == TaskState.TASK_STATE_FAILED
    assert failed.text == "broken-crew: the crewai agent raised RuntimeError: the release database is unreachable"
    assert "broken-crew: task 1/2 · Researcher: Research 2.0" in failed.progress
    assert health.status_code == 200 and fine.state == TaskState.TASK_STATE_COMPLETED


async def test_a_crew_on_mcp_stdio_on_its_first_run_keeps_stdout_clean(
    chat: ScriptedChatServer, tmp_path: Path
) -> None:
    # A fresh home is CrewAI's first run, whose tracing question goes to the terminal: on stdio, into the protocol.
    research_then_write(chat)
    folder = tmp_path / "stdio-agents"
    agent_file(folder, CREW, "crewai", f"{MODULE}:release_crew")
    env = {
        **os.environ,
        "HOME": str(tmp_path / "home"),
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_AGENTS": str(folder),
        "SWITCHBOARD_MCP_TOOLS": CREW,
        "PYTHONPATH": str(REPO_ROOT),
    }
    env.pop("XDG_DATA_HOME", None)
    server = StdioServerParameters(command=sys.executable, args=["-m", "gateway", "mcp"], env=env, cwd=str(tmp_path))
    async with McpClient(server, read_timeout_seconds=60) as client:
        with anyio.fail_after(60):
            result = await client.call_tool(CREW.replace("-", "_"), {"text": "2.0"})
    outcome = result.structured_content or {}
    assert not result.is_error and outcome["state"] == "completed", outcome
    assert outcome["text"] == "2.0 is ready."


def test_crewais_first_run_question_is_answered_no_in_a_fresh_home(tmp_path: Path) -> None:
    # Asked on the terminal once a first crew ends, it would read a line of stdin: on stdio, a protocol message.
    probe = (
        "import adapters.crewai\n"
        "from crewai.events.listeners.tracing.trace_listener import TraceCollectionListener\n"
        "from crewai.events.listeners.tracing.utils import has_user_declined_tracing\n"
        "print(TraceCollectionListener().first_time_handler.is_first_time, has_user_declined_tracing())\n"
    )
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("XDG_DATA_HOME", None)
    done = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "True"], done.stdout
    assert "first-run question about sharing traces was answered no" in done.stderr
