"""The ``agent-framework`` runtime: a Microsoft Agent Framework agent or workflow served as an A2A agent.

``runtime.agent`` names an agent (``Agent``, or anything that ``SupportsAgentRun``), a ``Workflow``,
or a function returning either. A workflow runs as the framework's own ``WorkflowAgent``
(``workflow.as_agent()``); since a workflow object holds the state of one run, a function returning
a new workflow lets tasks run side by side (a workflow object serves one task at a time, and one
canceled while it waited for input keeps waiting: later tasks fail saying so).

Each A2A task is one run on a session of its own (``AgentSession``, kept while the task waits for
input). The run streams, and its updates map onto the task: text as chunks of the ``result``
artifact, function calls and results as progress, usage contents to the run's usage.

Human in the loop: a tool declared with ``approval_mode="always_require"`` asks for approval, and a
workflow executor's ``ctx.request_info(...)`` asks for input; either pauses the run and the task goes
``input-required`` with the question. The caller's follow-up on the same task answers it: an approval
is ``yes``/``y``/``approve``/``true`` (anything else rejects; or a data part ``{"approved": ...}``),
a workflow's request gets the text (or the data part) as its response. A cancel closes the run's
stream, which is how the framework stops a run.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from a2a.server.agent_execution import AgentExecutor
from agent_framework import AgentSession, Content, Message, SupportsAgentRun, Workflow, WorkflowAgent

from adapters.framework import (
    FrameworkAdapter,
    FrameworkEvent,
    InputRequired,
    NoOptions,
    TextDelta,
    TokensUsed,
    ToolCall,
    ToolResult,
    build_framework,
    says_yes,
)
from adapters.llm import user_content
from gateway.errors import RuntimeLoadError
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall
from gateway.spec import AgentSpec

REQUEST_INFO = WorkflowAgent.REQUEST_INFO_FUNCTION_NAME


class AgentBusyError(RuntimeError):
    """A workflow object asked to run a second task while it has one."""


@dataclass(frozen=True)
class Paused:
    """A run waiting for the caller: its agent and session (none for a workflow), and the requests it waits on."""

    agent: SupportsAgentRun
    session: AgentSession | None
    requests: tuple[Content, ...]


def question(request: Content) -> str:
    """What the caller is asked for a request the run waits on."""
    if request.type == "function_approval_request" and request.function_call is not None:
        call = request.function_call
        return f"Approve {call.name}({_arguments(call.arguments)})? Answer yes or no."
    arguments = request.arguments if isinstance(request.arguments, dict) else {}
    data = (arguments.get("request_event") or {}).get("data", arguments)
    return data if isinstance(data, str) else json.dumps(data, default=str, sort_keys=True)


def answer(request: Content, call: AgentCall) -> Content:
    """The caller's follow-up as the response to ``request``."""
    given = call.data[0] if call.data else None
    if request.type == "function_approval_request":
        approved = bool(given.get("approved")) if given is not None else says_yes(call.text)
        return request.to_function_approval_response(approved)
    return Content.from_function_result(call_id=request.call_id or "", result=given if given is not None else call.text)


def _arguments(arguments: Any) -> str:
    if isinstance(arguments, str):
        return arguments
    return json.dumps(arguments or {}, sort_keys=True, default=str)


class AgentFrameworkAdapter(FrameworkAdapter):
    """A Microsoft Agent Framework agent or workflow, one session per A2A task."""

    framework: ClassVar[str] = "agent-framework"
    Options: ClassVar[type[NoOptions]] = NoOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._make: Callable[[], Workflow] | None = None
        agent = self.agent
        if inspect.isfunction(agent):
            made = agent()
            if isinstance(made, Workflow):
                self._make = agent
            agent = made
        if isinstance(agent, Workflow):
            agent = agent.as_agent(name=self.name)
        if not isinstance(agent, SupportsAgentRun):
            raise RuntimeLoadError(
                f"{self.name}: got a {type(agent).__name__}, not an Agent Framework agent or Workflow"
            )
        self.agent = agent
        self._busy: str = ""  # the task a single workflow object is running

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """An agent, a workflow, or a function making one (called per task when it makes workflows)."""
        return isinstance(obj, SupportsAgentRun | Workflow) or inspect.isfunction(obj)

    def _agent_for(self, task_id: str) -> SupportsAgentRun:
        if self._make is not None:
            return self._make().as_agent(name=self.name)
        if isinstance(self.agent, WorkflowAgent):
            if self._busy and self._busy != task_id:
                raise AgentBusyError(
                    f"the workflow object holds the run of task {self._busy} (running, waiting for input, or "
                    "canceled while it waited); it runs one task at a time: name a function returning a new "
                    "Workflow in runtime.agent to run tasks side by side"
                )
            self._busy = task_id
        return self.agent  # type: ignore[no-any-return]

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        """One run: a new message, or the answers resuming a paused run."""
        paused: Paused | None = self.waiting.take(call.task_id)
        if paused is None:
            agent = self._agent_for(call.task_id)
            workflow = isinstance(agent, WorkflowAgent)
            # A workflow keeps its run's state itself; with a session, WorkflowAgent would also replay the
            # session's history as input, which it refuses while it waits on responses.
            session = None if workflow else agent.create_session(session_id=call.task_id)
            message = Message("user", [user_content(call)])
        else:
            agent, session = paused.agent, paused.session
            message = Message("user", [answer(request, call) for request in paused.requests])
        reader = _UpdateReader(workflow=isinstance(agent, WorkflowAgent), paused=paused)
        run = agent.run(message, stream=True, session=session)
        try:
            async for update in run:
                for event in reader.read(update.contents):
                    yield event
        except BaseException:
            self._release(call.task_id)
            raise
        for event in reader.finish():
            yield event
        if reader.requests:
            self.waiting.put(call.task_id, Paused(agent, session, tuple(reader.requests)))
            yield InputRequired("\n".join(question(r) for r in reader.requests))
        else:
            self._release(call.task_id)

    async def cancel(self, call: AgentCall) -> None:
        """Forget the task's paused run (its stream is closed already).

        A single workflow object stays held: it still waits on the canceled run's requests, and the
        framework has no way to drop them.
        """
        await super().cancel(call)

    def _release(self, task_id: str) -> None:
        if self._busy == task_id:
            self._busy = ""


class _UpdateReader:
    """Maps a run's update contents onto framework events, and collects the requests it waits on."""

    def __init__(self, *, workflow: bool, paused: Paused | None = None) -> None:
        self._workflow = workflow
        self._names: dict[str, str] = {}  # call id -> function name
        for request in paused.requests if paused is not None else ():
            if request.function_call is not None and request.function_call.name:
                self._names[request.function_call.call_id or ""] = request.function_call.name
        self._open: list[list[str]] = []  # [name, arguments so far] of calls still streaming
        self._usage = (0, 0)  # the run's usage so far (input, output tokens)
        self.requests: list[Content] = []

    def read(self, contents: list[Content]) -> list[FrameworkEvent]:
        events: list[FrameworkEvent] = []
        for content in contents:
            events += self._one(content)
        return events

    def finish(self) -> list[FrameworkEvent]:
        """The calls announced by the end of the run (their arguments complete)."""
        calls: list[FrameworkEvent] = [ToolCall(name, arguments) for name, arguments in self._open]
        self._open = []
        return calls

    def _one(self, content: Content) -> list[FrameworkEvent]:
        kind = content.type
        if kind == "text" and content.text:
            return [TextDelta(content.text)]
        if kind == "function_approval_request" or (kind == "function_call" and self._is_request(content)):
            self.requests.append(content)
            return self.finish()
        if kind == "function_call":
            # A streamed call comes in pieces: its id and name first, then its arguments bit by bit.
            if content.name:
                self._names[content.call_id or ""] = content.name
                self._open.append([content.name, ""])
            if self._open:
                self._open[-1][1] += _arguments(content.arguments) if content.arguments else ""
            return []
        if kind == "function_result":
            name = self._names.get(content.call_id or "", "tool")
            result = ToolResult(name, str(content.result)[:200], error=content.exception is not None)
            return [*self.finish(), result]
        if kind == "usage" and content.usage_details:
            # A run's usage contents are cumulative snapshots (the framework adds each model call's to the
            # last): what is new is the difference.
            usage = content.usage_details
            seen = (usage.get("input_token_count") or 0, usage.get("output_token_count") or 0)
            new = TokensUsed(max(seen[0] - self._usage[0], 0), max(seen[1] - self._usage[1], 0))
            self._usage = seen
            return [new]
        return []

    def _is_request(self, content: Content) -> bool:
        return self._workflow and content.name == REQUEST_INFO


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for an ``agent-framework`` agent file."""
    return build_framework(spec, host, AgentFrameworkAdapter)
