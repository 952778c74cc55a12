"""What a served framework agent with tools must do, checked the same way for each framework (ADK, Agent Framework).

A framework's test module subclasses ``ToolAgentBehaviour`` as a ``Test...`` class naming the
agent file's ``KIND``, the ``MODULE`` of its test agents and the verb its approval question
``ASKS`` with. That module builds, with the framework's own classes, ``assistant`` (a ``lookup``
tool answering ``notes on <topic>``, and a ``deploy`` tool answering ``deployed <version>`` that
needs the caller's approval) and ``broken`` (streams "starting", then raises RuntimeError "the
release database is unreachable"). The model is the scripted server of ``framework_harness``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from a2a.types.a2a_pb2 import TaskState

from tests.adapters.framework_harness import (
    A2A_ARMS,
    ARMS,
    BY_ID,
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
from tests.bindings.a2a_clients import Binding
from tests.orchestration.run_client import run_workflow

AGENT = "release-assistant"


def lookup_then_answer(chat: ScriptedChatServer) -> None:
    """The model looks a topic up, then answers in two chunks."""
    chat.answer(
        Stream(
            [tool_chunk(0, name="lookup", arguments='{"topic": "2.0"}'), finish_chunk("tool_calls"), usage_chunk(7, 2)]
        ),
        Stream([text_chunk("2.0 is "), text_chunk("ready."), finish_chunk(), usage_chunk(11, 3)]),
    )


def deploy_then_answer(chat: ScriptedChatServer, answer: str = "Deployed 2.0.") -> None:
    """The model calls the tool that needs approval; once answered, it says ``answer``."""
    chat.answer(
        Stream([tool_chunk(0, name="deploy", arguments='{"version": "2.0"}'), finish_chunk("tool_calls")]),
        Stream([text_chunk(answer), finish_chunk()]),
    )


class ToolAgentBehaviour:
    """The tests every framework agent with tools passes when the gateway serves it (see the module docstring)."""

    KIND: ClassVar[str]
    """The agent file's runtime kind."""
    MODULE: ClassVar[str]
    """The module holding the framework's ``assistant`` and ``broken``."""
    ASKS: ClassVar[str]
    """The verb the framework's approval question starts with."""

    @pytest.fixture
    async def chat(self, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ScriptedChatServer]:
        async with model_server(monkeypatch) as server:
            yield server

    def agents(self, tmp_path: Path) -> Path:
        """The agents folder: the assistant, ``broken``, and two sequential workflows with echo (one on a budget)."""
        folder = with_echo(tmp_path / "agents")
        agent_file(folder, AGENT, self.KIND, f"{self.MODULE}:assistant")
        agent_file(folder, "broken", self.KIND, f"{self.MODULE}:broken")
        sequential_file(folder, "release-pipeline", [AGENT, "echo"])
        sequential_file(folder, "thrifty-pipeline", [AGENT, "echo"], max_tokens=10)
        return folder

    @pytest.mark.parametrize("binding", ARMS, ids=lambda b: b.id)
    async def test_answers_with_tool_progress_and_usage(
        self, chat: ScriptedChatServer, tmp_path: Path, binding: Binding
    ) -> None:
        lookup_then_answer(chat)
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            outcome = await ask(gateway, AGENT, binding, "Is 2.0 ready?")
        assert outcome.state == TaskState.TASK_STATE_COMPLETED, outcome.text
        assert outcome.artifact_text() == "2.0 is ready."
        assert outcome.usage == {"input_tokens": 18, "output_tokens": 5, "cost": 0}
        sent = chat.received[1].body["messages"]
        assert sent[-1]["role"] == "tool" and "notes on 2.0" in sent[-1]["content"], "the tool ran, the model saw it"
        if binding.streaming:
            assert f'{AGENT}: calling lookup({{"topic": "2.0"}})' in outcome.progress
            assert f"{AGENT}: lookup returned" in outcome.progress
            assert outcome.chunks[:2] == ["2.0 is ", "ready."], "the answer streamed in chunks"

    @pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
    async def test_an_approval_goes_input_required_and_the_answer_resumes(
        self, chat: ScriptedChatServer, tmp_path: Path, binding: Binding
    ) -> None:
        deploy_then_answer(chat)
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            waiting = await ask(gateway, AGENT, binding, "Ship 2.0")
            assert waiting.state == TaskState.TASK_STATE_INPUT_REQUIRED, waiting.text
            assert waiting.text.startswith(f'{self.ASKS} deploy({{"version": "2.0"}})? Answer yes or no.')
            done = await ask(gateway, AGENT, binding, "yes", task_id=waiting.task.id)
        assert done.state == TaskState.TASK_STATE_COMPLETED, done.text
        assert done.task.id == waiting.task.id and done.artifact_text() == "Deployed 2.0."
        tool_message = chat.received[-1].body["messages"][-1]
        assert tool_message["role"] == "tool" and "deployed 2.0" in tool_message["content"], "the approved tool ran"

    async def test_a_refusal_reaches_the_model_and_the_tool_never_runs(
        self, chat: ScriptedChatServer, tmp_path: Path
    ) -> None:
        deploy_then_answer(chat, "Not deployed.")
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            waiting = await ask(gateway, AGENT, BY_ID["jsonrpc"], "Ship 2.0")
            done = await ask(gateway, AGENT, BY_ID["jsonrpc"], "no", task_id=waiting.task.id)
        assert done.state == TaskState.TASK_STATE_COMPLETED and done.artifact_text() == "Not deployed."
        tool_message = chat.received[-1].body["messages"][-1]
        assert tool_message["role"] == "tool" and "rejected" in tool_message["content"], tool_message
        assert "deployed 2.0" not in tool_message["content"], "the refused tool did not run"

    async def test_as_an_mcp_tool_the_approval_is_an_elicitation(
        self, chat: ScriptedChatServer, tmp_path: Path
    ) -> None:
        deploy_then_answer(chat)
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            called = await call_tool(gateway, AGENT.replace("-", "_"), "Ship 2.0", answer="yes")
        assert called.outcome["state"] == "completed", called.outcome
        assert called.questions and called.questions[0].startswith(f'{self.ASKS} deploy({{"version": "2.0"}})?')
        assert "Deployed 2.0." in " ".join(a.get("text") or "" for a in called.outcome["artifacts"])
        assert f"{AGENT}: deploy returned" in called.progress, "the tool's progress reached the MCP caller"

    @pytest.mark.parametrize("binding", [b for b in ARMS if not b.streaming], ids=lambda b: b.id)
    async def test_a_run_is_canceled_mid_model_call(
        self, chat: ScriptedChatServer, tmp_path: Path, binding: Binding
    ) -> None:
        chat.answer(
            Stream([text_chunk("Thinking about it")], stall=True), Stream([text_chunk("after"), finish_chunk()])
        )
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            task = await cancel_mid_run(gateway, AGENT, binding, "Think hard", chat)
            again = await ask(gateway, AGENT, binding, "still there?")
        assert task.status.state == TaskState.TASK_STATE_CANCELED
        assert again.state == TaskState.TASK_STATE_COMPLETED and again.artifact_text() == "after", "it serves on"

    async def test_is_a_step_of_a_sequential_workflow(self, chat: ScriptedChatServer, tmp_path: Path) -> None:
        lookup_then_answer(chat)
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            run = await run_workflow(gateway, "release-pipeline", "Is 2.0 ready?")
        assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
        assert run.step(f"step-1-{AGENT}").text == "2.0 is ready."
        assert run.text == "2.0 is ready.", f"echo repeated the {self.KIND} agent's answer"
        assert f"step 1/2 · {AGENT}: lookup returned" in run.progress, "the step's progress reached the run"

    async def test_its_usage_counts_against_a_runs_token_budget(self, chat: ScriptedChatServer, tmp_path: Path) -> None:
        lookup_then_answer(chat)
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            run = await run_workflow(gateway, "thrifty-pipeline", "Is 2.0 ready?")
        assert run.task.status.state == TaskState.TASK_STATE_FAILED
        assert "23 tokens used of a 10-token budget" in run.text, run.text

    async def test_an_agent_raising_mid_stream_fails_its_task_and_the_gateway_serves_on(
        self, chat: ScriptedChatServer, tmp_path: Path
    ) -> None:
        lookup_then_answer(chat)
        binding = BY_ID["grpc-stream"]
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            failed = await ask(gateway, "broken", binding, "go")
            async with httpx.AsyncClient(base_url=gateway.url) as http:
                health = await http.get("/healthz")
            fine = await ask(gateway, AGENT, binding, "Is 2.0 ready?")
        assert failed.state == TaskState.TASK_STATE_FAILED
        assert failed.text == f"broken: the {self.KIND} agent raised RuntimeError: the release database is unreachable"
        assert failed.chunks == ["starting"], "what streamed before the failure was kept"
        assert health.status_code == 200 and fine.state == TaskState.TASK_STATE_COMPLETED
