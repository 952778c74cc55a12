"""A Google ADK agent served by the gateway: A2A on JSON-RPC and gRPC, MCP, confirmations, cancel, workflows."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # else LiteLLM fetches its price list at import
pytest.importorskip("google.adk", reason="Google ADK is not installed: pip install 'switchboard-gateway[adk]'")
pytest.importorskip("litellm", reason="LiteLLM (ADK's OpenAI-compatible model) is not installed")

from adapters.adk import AdkAdapter, AdkOptions
from adapters.framework import Prices
from gateway.runtime import AgentCall
from gateway.testing import RecordingEmitter
from tests.adapters import adk_agents
from tests.adapters.framework_harness import WAIT_S, agent_file, ask, serving
from tests.adapters.llm_server import ScriptedChatServer, Stream, finish_chunk, text_chunk, tool_chunk
from tests.adapters.tool_agent_behaviour import ToolAgentBehaviour, deploy_then_answer, lookup_then_answer
from tests.bindings.a2a_clients import BINDINGS

# LiteLLM's types trip a pydantic warning (ReadOnly TypedDict items) the first time a completion runs.
pytestmark = pytest.mark.filterwarnings("ignore:.* the .ReadOnly. qualifier:UserWarning")


class TestAdkAgent(ToolAgentBehaviour):
    KIND = "adk"
    MODULE = "tests.adapters.adk_agents"
    ASKS = "Confirm"

    async def test_a_data_part_answers_a_confirmation(self, chat: ScriptedChatServer) -> None:
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
        kept = await runner.session_service.get_session(
            app_name=runner.app_name, user_id="switchboard", session_id="t1"
        )
        assert kept is None, "the task's session ended with it"

    async def test_a_long_running_tool_waits_for_the_callers_answer_as_its_result(
        self, chat: ScriptedChatServer
    ) -> None:
        chat.answer(
            Stream(
                [tool_chunk(0, name="ask_manager", arguments='{"request": "ship 2.0"}'), finish_chunk("tool_calls")]
            ),
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

    async def test_the_runner_closes_its_toolsets_when_the_gateway_stops(
        self, chat: ScriptedChatServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        closed = tmp_path / "closed"
        monkeypatch.setenv(adk_agents.CLOSED_FILE_ENV, str(closed))
        agent_file(tmp_path / "agents", "researcher", self.KIND, f"{self.MODULE}:researcher")
        lookup_then_answer(chat)
        async with serving(tmp_path, tmp_path / "agents") as gateway:
            seen = await ask(gateway, "researcher", BINDINGS[0], "Is 2.0 ready?")
            assert seen.text == "2.0 is ready." and not closed.exists()
        assert closed.read_text() == "closed", "the gateway's stop closed the ADK runner, which closed its toolset"
