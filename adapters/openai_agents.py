"""The ``openai-agents`` runtime: an OpenAI Agents SDK ``Agent`` as an agent.

Installed with ``pip install 'switchboard-gateway[openai-agents]'``.

``runtime.agent`` names the ``Agent`` (or a function returning one). Each message is one
``Runner.run_streamed``; the agent's handoffs stay inside it (the agent handed to shows as
progress, not as a gateway handoff). Model text streams into the reply's artifact, tool calls and
their outputs show as progress, and the run's token usage counts for budgets. A tool that needs
approval (``needs_approval``) leaves the task ``input-required``, asking whether to run it; the
caller's answer on the same task (yes / no) approves or rejects it and the run goes on from its
``RunState``. A cancel cancels the run (``RunResultStreaming.cancel``).

Each A2A context is one SDK session (``SQLiteSession``, keyed by the context id), so later tasks of
a conversation see its earlier turns: in memory by default, or in the SQLite file ``session_db``
names (relative to the agent file) to outlive the process. Runs waiting for approval are kept in
memory: after a restart, their answer fails the task, saying to send the request again.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import asdict, is_dataclass
from typing import Any

from a2a.server.agent_execution import AgentExecutor
from agents import Agent, Runner, RunResultStreaming, SQLiteSession, ToolApprovalItem
from agents.run_state import RunState
from pydantic import BaseModel, ConfigDict, Field

from adapters.framework import (
    CHUNK_INTERVAL_S,
    Answer,
    FrameworkAdapter,
    FrameworkEvent,
    InputRequired,
    Recent,
    Status,
    TextDelta,
    TokensUsed,
    ToolCall,
    ToolResult,
    build_framework,
    says_yes,
)
from adapters.llm import user_content
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall
from gateway.spec import AgentSpec

TEXT_DELTA = "response.output_text.delta"


class OpenAIAgentsOptions(BaseModel):
    """The ``options`` of an ``openai-agents`` agent file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_turns: int = Field(default=10, ge=1, description="the SDK's limit on model turns per run")
    session_db: str = Field(
        default=":memory:", description="SQLite file of the per-context sessions, relative to the agent file"
    )


class _Paused:
    """A run waiting for approval: its state, and the tokens already counted."""

    def __init__(self, state: RunState[Any], approvals: list[ToolApprovalItem], tokens: tuple[int, int]) -> None:
        self.state, self.approvals, self.tokens = state, approvals, tokens


def _question(approvals: list[ToolApprovalItem]) -> str:
    asks = [f"{item.name}({item.arguments or ''})" for item in approvals]
    return f"Approve running {' and '.join(asks)}? Answer yes or no."


def _final(output: Any) -> Answer:
    if isinstance(output, str) or output is None:
        return Answer(text=output or "")
    if isinstance(output, BaseModel):
        return Answer(data=output.model_dump(mode="json"))
    if is_dataclass(output) and not isinstance(output, type):
        return Answer(data=asdict(output))
    if isinstance(output, dict | list):
        return Answer(data=output)
    return Answer(text=str(output))


class OpenAIAgentsAdapter(FrameworkAdapter):
    """An Agents SDK ``Agent`` behind the gateway (see the module)."""

    chunk_interval_s = CHUNK_INTERVAL_S  # a fast model's tokens: a few chunks, not an event each

    framework = "openai-agents"
    Options = OpenAIAgentsOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sessions: Recent[SQLiteSession] = Recent()  # by conversation, the least recently used forgotten first

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """An ``agents.Agent``."""
        return isinstance(obj, Agent)

    def _session(self, call: AgentCall) -> SQLiteSession:
        options = self.options
        assert isinstance(options, OpenAIAgentsOptions)
        key = call.conversation
        session = self.sessions.take(key)
        if session is None:
            db = options.session_db if options.session_db == ":memory:" else self.folder / options.session_db
            session = SQLiteSession(key, db)
        self.sessions.put(key, session)  # the latest used is the last forgotten
        return session

    async def aclose(self) -> None:
        """The gateway stops: every session's SQLite connections are closed."""
        await super().aclose()
        for key in self.sessions.remembered():
            session = self.sessions.take(key)
            if session is not None:
                session.close()

    def _start(self, call: AgentCall) -> tuple[RunResultStreaming, tuple[int, int]] | None:
        """The run for ``call``: a new one, or the paused one resumed with the caller's answer."""
        options = self.options
        assert isinstance(options, OpenAIAgentsOptions)
        session = self._session(call)
        if not call.history:
            run = Runner.run_streamed(self.agent, user_content(call), max_turns=options.max_turns, session=session)
            return run, (0, 0)
        paused: _Paused | None = self.waiting.take(call.task_id)
        if paused is None:
            return None
        approve = says_yes(call.text)
        for item in paused.approvals:
            if approve:
                paused.state.approve(item)
            else:
                paused.state.reject(item)
        run = Runner.run_streamed(self.agent, paused.state, max_turns=options.max_turns, session=session)
        return run, paused.tokens

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        """Stream one run (or its resumption); a tool needing approval ends the turn input-required."""
        started = self._start(call)
        if started is None:
            raise LookupError("the run waiting for this answer is gone (the gateway restarted); send the request again")
        run, counted = started
        tools: dict[str, str] = {}
        try:
            async for event in run.stream_events():
                for mapped in _events(event, tools):
                    yield mapped
        finally:
            if not run.is_complete:
                run.cancel()  # closed early: a cancel, or the caller gone
        usage = run.context_wrapper.usage
        yield TokensUsed(usage.input_tokens - counted[0], usage.output_tokens - counted[1])
        if run.interruptions:
            tokens = (usage.input_tokens, usage.output_tokens)
            self.waiting.put(call.task_id, _Paused(run.to_state(), list(run.interruptions), tokens))
            yield InputRequired(_question(run.interruptions))
            return
        yield _final(run.final_output)


def _events(event: Any, tools: dict[str, str]) -> list[FrameworkEvent]:
    """One SDK stream event as framework events (``tools``: call id -> tool name, for outputs)."""
    if event.type == "raw_response_event":
        data = event.data
        return [TextDelta(data.delta)] if getattr(data, "type", "") == TEXT_DELTA and data.delta else []
    if event.type == "agent_updated_stream_event":
        return [Status(f"{event.new_agent.name} is working")]
    item = event.item
    raw = item.raw_item
    if event.name == "tool_called":
        name = str(getattr(raw, "name", "") or "tool")
        tools[str(getattr(raw, "call_id", ""))] = name
        return [ToolCall(name, str(getattr(raw, "arguments", "") or ""))]
    if event.name == "tool_output":
        call_id = raw.get("call_id", "") if isinstance(raw, dict) else getattr(raw, "call_id", "")
        output = item.output if isinstance(item.output, str) else json.dumps(item.output, default=str)
        return [ToolResult(tools.get(str(call_id), "tool"), output)]
    if event.name == "handoff_requested":
        return [Status(f"handing off ({getattr(raw, 'name', 'handoff')})")]
    return []


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for an ``openai-agents`` agent."""
    return build_framework(spec, host, OpenAIAgentsAdapter)
