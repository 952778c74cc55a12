"""A Microsoft Agent Framework agent and workflow served by the gateway: A2A, MCP, approvals, cancel, workflows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from a2a.types.a2a_pb2 import TaskState

pytest.importorskip(
    "agent_framework.openai",
    reason="Agent Framework is not installed: pip install 'switchboard-gateway[agent-framework]'",
)

from adapters.agent_framework import AgentFrameworkAdapter
from adapters.framework import NoOptions, Prices
from gateway.runtime import AgentCall
from gateway.testing import RecordingEmitter
from tests.adapters import agent_framework_agents
from tests.adapters.framework_harness import A2A_ARMS, WAIT_S, agent_file, ask, serving
from tests.adapters.llm_server import ScriptedChatServer
from tests.adapters.tool_agent_behaviour import ToolAgentBehaviour, deploy_then_answer
from tests.bindings.a2a_clients import Binding


class TestAgentFrameworkAgent(ToolAgentBehaviour):
    KIND = "agent-framework"
    MODULE = "tests.adapters.agent_framework_agents"
    ASKS = "Approve"

    def agents(self, tmp_path: Path) -> Path:
        """The agents every framework has, and ``publisher``: a workflow that asks a question."""
        folder = super().agents(tmp_path)
        agent_file(folder, "publisher", self.KIND, f"{self.MODULE}:publishing")
        return folder

    @pytest.mark.parametrize("binding", A2A_ARMS, ids=lambda b: b.id)
    async def test_a_workflows_request_goes_input_required_and_the_answer_is_its_response(
        self, chat: ScriptedChatServer, tmp_path: Path, binding: Binding
    ) -> None:
        async with serving(tmp_path, self.agents(tmp_path)) as gateway:
            waiting = await ask(gateway, "publisher", binding, "Release notes 2.0")
            other = await ask(gateway, "publisher", binding, "Blog post")
            done = await ask(gateway, "publisher", binding, "a changelog", task_id=waiting.task.id)
        assert waiting.state == other.state == TaskState.TASK_STATE_INPUT_REQUIRED, (waiting.text, other.text)
        assert waiting.text == "Publish 'Release notes 2.0'? Say what to add."
        assert other.text == "Publish 'Blog post'? Say what to add.", "each task runs a workflow of its own"
        assert done.state == TaskState.TASK_STATE_COMPLETED and done.artifact_text() == "published with a changelog"

    async def test_a_data_part_answers_an_approval(self, chat: ScriptedChatServer) -> None:
        deploy_then_answer(chat)
        adapter = AgentFrameworkAdapter("rel", agent_framework_agents.assistant(), NoOptions(), Prices())
        first = await adapter(AgentCall(text="Ship 2.0", task_id="t1"), RecordingEmitter())
        assert first.state == "input-required" and "t1" in adapter.waiting
        emit = RecordingEmitter()
        async with asyncio.timeout(WAIT_S):
            done = await adapter(AgentCall(text="", data=({"approved": True},), task_id="t1"), emit)
        assert done.state == "completed" and done.text == "Deployed 2.0."
        assert emit.progress_messages == ["rel: deploy returned"]

    async def test_a_workflow_object_serves_one_task_at_a_time(self) -> None:
        adapter = AgentFrameworkAdapter("pub", agent_framework_agents.publishing(), NoOptions(), Prices())
        async with asyncio.timeout(WAIT_S):
            first = await adapter(AgentCall(text="Release notes", task_id="t1"), RecordingEmitter())
            second = await adapter(AgentCall(text="Blog post", task_id="t2"), RecordingEmitter())
            done = await adapter(AgentCall(text="a changelog", task_id="t1"), RecordingEmitter())
            fourth = await adapter(AgentCall(text="Blog post", task_id="t4"), RecordingEmitter())
            await adapter.forget("t4")  # canceled while it waited: the object still waits on t4's request
            fifth = await adapter(AgentCall(text="Tweet", task_id="t5"), RecordingEmitter())
        assert first.state == fourth.state == "input-required" and done.state == "completed"
        assert second.state == "failed" and "holds the run of task t1" in second.text
        assert (
            fifth.state == "failed"
            and "holds the run of task t4" in fifth.text
            and "a function returning" in fifth.text
        )
