"""The ``langgraph`` runtime: a compiled LangGraph graph as an agent (``pip install 'switchboard-gateway[langgraph]'``).

``runtime.agent`` names the compiled graph (or a function returning it, or an uncompiled
``StateGraph``, compiled here). Each A2A context is one LangGraph thread (``thread_id`` = the
context id), so a conversation's later tasks see its earlier state; a graph compiled without a
checkpointer gets an in-memory one (give it a durable one, e.g. langgraph-checkpoint-postgres,
for threads that outlive the process).

The caller's message goes in as a user message under ``messages_key`` (default ``messages``,
as ``MessagesState`` has it); a message of data only goes in as the input state itself. The graph
is streamed with ``stream_mode`` updates, messages and custom: model tokens stream into the
reply's artifact, each node's update and tool call shows as progress (as does anything a node
writes with ``get_stream_writer()``), token usage is counted for budgets. An ``interrupt(...)``
leaves the task ``input-required`` with the interrupt's value as the question; the caller's
answer on the same task resumes the graph with ``Command(resume=answer)``. A static breakpoint
(``interrupt_before``/``interrupt_after``) pauses the same way, and any answer goes on. The answer is the
state's ``output_key`` when the file names one, else the last AI message's text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from a2a.server.agent_execution import AgentExecutor
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import StateGraph
from langgraph.pregel import Pregel
from langgraph.types import Command, StreamMode
from pydantic import BaseModel, ConfigDict, Field

from adapters.framework import (
    CHUNK_INTERVAL_S,
    Answer,
    FrameworkAdapter,
    FrameworkEvent,
    InputRequired,
    Status,
    TextDelta,
    TokensUsed,
    ToolCall,
    ToolResult,
    build_framework,
)
from adapters.llm import user_content
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall
from gateway.spec import AgentSpec

INTERRUPT = "__interrupt__"


class LangGraphOptions(BaseModel):
    """The ``options`` of a ``langgraph`` agent file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    messages_key: str = Field(default="messages", description="the state key the caller's message is added to")
    output_key: str = Field(default="", description="the state key holding the answer; default: the last AI message")
    stream_nodes: list[str] = Field(default=[], description="nodes whose model tokens stream; default: every node")
    stream_tokens: bool = Field(
        default=True, description="stream model tokens (LangGraph's messages mode, ~0.7 ms of CPU per run here)"
    )
    recursion_limit: int = Field(default=25, ge=1, description="LangGraph's limit on super-steps per run")
    configurable: dict[str, Any] = Field(default={}, description="extra configurable values for every run")


def content_text(content: Any) -> str:
    """A LangChain message content (a string or a list of content blocks) as text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            b if isinstance(b, str) else str(b.get("text", "")) for b in content if isinstance(b, str | dict)
        )
    return ""


def question_of(value: Any) -> str:
    """An interrupt's value as the question asked: a string, or a mapping's ``question``/``message``, or JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in ("question", "message", "text"):
            if isinstance(value.get(key), str):
                return str(value[key])
    return json.dumps(value, default=str, ensure_ascii=False)


def _update_events(node: str, update: Any, messages_key: str) -> list[FrameworkEvent]:
    """Progress, tool calls and usage in one node's state update."""
    events: list[FrameworkEvent] = [Status(f"{node} done")]
    messages = update.get(messages_key, []) if isinstance(update, dict) else []
    for message in messages if isinstance(messages, list) else [messages]:
        if isinstance(message, AIMessage):
            events += [ToolCall(c["name"], json.dumps(c.get("args", {}), default=str)) for c in message.tool_calls]
            usage = message.usage_metadata
            if usage:
                events.append(TokensUsed(usage.get("input_tokens", 0), usage.get("output_tokens", 0)))
        elif isinstance(message, ToolMessage):
            events.append(ToolResult(message.name or "tool", content_text(message.content), message.status == "error"))
    return events


class LangGraphAdapter(FrameworkAdapter):
    """A compiled LangGraph graph behind the gateway (see the module)."""

    chunk_interval_s = CHUNK_INTERVAL_S  # a fast model's tokens: a few chunks, not an event each

    framework = "langgraph"
    Options = LangGraphOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graph = self.agent.compile() if isinstance(self.agent, StateGraph) else self.agent
        if graph.checkpointer is None:  # interrupts and threads need one
            graph = graph.copy({"checkpointer": InMemorySaver()})
        self.graph: Pregel[Any, Any, Any, Any] = graph

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """A compiled graph, or a ``StateGraph`` to compile."""
        return isinstance(obj, Pregel | StateGraph)

    def _config(self, call: AgentCall) -> RunnableConfig:
        options = self.options
        assert isinstance(options, LangGraphOptions)
        thread = call.conversation
        return {
            "configurable": {**options.configurable, "thread_id": thread},
            "recursion_limit": options.recursion_limit,
        }

    async def _input(self, call: AgentCall, config: RunnableConfig) -> Any:
        """The graph's input: the answer to its interrupt on a follow-up, else the caller's message."""
        options = self.options
        assert isinstance(options, LangGraphOptions)
        if call.history:  # a follow-up: the graph waits at an interrupt(...) or at a breakpoint
            state = await self.graph.aget_state(config)
            if state.interrupts:
                return Command(resume=call.data[0] if call.data and not call.text else call.text)
            if state.next:
                return None  # LangGraph's way to go on from a breakpoint (interrupt_before/after)
            raise LookupError(
                "the graph's thread holds no question waiting for this answer (an in-memory checkpointer "
                "forgets it when the gateway restarts); send the request again"
            )
        if call.data and not call.text and not call.files:
            return dict(call.data[0])
        return {options.messages_key: [{"role": "user", "content": user_content(call)}]}

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        """Stream the graph for ``call``; an interrupt ends the turn input-required."""
        config = self._config(call)
        options = self.options
        assert isinstance(options, LangGraphOptions)
        modes: list[StreamMode] = ["updates", "messages", "custom"] if options.stream_tokens else ["updates", "custom"]
        parts: AsyncIterator[Any] = self.graph.astream(await self._input(call, config), config, stream_mode=modes)
        answer: dict[str, Any] = {}  # what this run's updates said last: the answer, without reading the state
        async for mode, data in parts:  # (mode, data) with several modes
            for event in self._events(mode, data, answer):
                if isinstance(event, InputRequired):
                    yield event if event.question else await self._breakpoint(config)
                    return
                yield event
        yield await self._answer(config, answer)

    def _events(self, mode: str, data: Any, answer: dict[str, Any]) -> list[FrameworkEvent]:
        if mode == "messages":
            chunk, metadata = data
            streamed = isinstance(chunk, AIMessageChunk) and self._streams(metadata)
            return [TextDelta(content_text(chunk.content))] if streamed else []
        if mode == "custom":
            return [Status(data if isinstance(data, str) else json.dumps(data, default=str))]
        options = self.options
        assert isinstance(options, LangGraphOptions)
        events: list[FrameworkEvent] = []
        for node, update in data.items():
            if node == INTERRUPT:
                return [*events, InputRequired("\n".join(question_of(i.value) for i in update))]
            events += _update_events(node, update, options.messages_key)
            self._note_answer(update, answer)
        return events

    def _note_answer(self, update: Any, answer: dict[str, Any]) -> None:
        options = self.options
        assert isinstance(options, LangGraphOptions)
        if not isinstance(update, dict):
            return
        if options.output_key and options.output_key in update:
            answer["output"] = update[options.output_key]
        messages = update.get(options.messages_key)
        for message in messages if isinstance(messages, list) else [messages]:
            if isinstance(message, BaseMessage) and message.type == "ai":
                answer["text"] = content_text(message.content)

    async def _breakpoint(self, config: RunnableConfig) -> InputRequired:
        """The question for a graph stopped at a static breakpoint (``interrupt_before``/``interrupt_after``)."""
        waiting = ", ".join((await self.graph.aget_state(config)).next) or "its next step"
        return InputRequired(f"The graph paused before {waiting}; send any message to go on.")

    def _streams(self, metadata: Any) -> bool:
        options = self.options
        assert isinstance(options, LangGraphOptions)
        return not options.stream_nodes or metadata.get("langgraph_node") in options.stream_nodes

    async def _answer(self, config: RunnableConfig, seen: dict[str, Any]) -> Answer:
        """The run's answer, from its updates; from the thread's state when they did not say it."""
        options = self.options
        assert isinstance(options, LangGraphOptions)
        key = "output" if options.output_key else "text"
        if key not in seen:
            values = (await self.graph.aget_state(config)).values
            values = values if isinstance(values, dict) else {}
            self._note_answer(
                {k: v for k, v in values.items() if k in (options.output_key, options.messages_key)}, seen
            )
        if not options.output_key:
            return Answer(text=str(seen.get("text", "")))
        value = seen.get("output")
        return (
            Answer(data=value) if isinstance(value, dict | list) else Answer(text="" if value is None else str(value))
        )


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for a ``langgraph`` agent."""
    return build_framework(spec, host, LangGraphAdapter)
