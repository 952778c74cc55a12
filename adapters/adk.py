"""The ``adk`` runtime: a Google ADK agent (or ``Runner``) served as an A2A agent.

``runtime.agent`` names an ADK agent (``LlmAgent``, a workflow agent such as ``SequentialAgent``), a
``Runner`` built around one, or a function returning either. Each A2A task is one ADK session
(keyed by the task id: A2A contexts are not owned by a caller, so a context-wide session would let
one caller read another's conversation); the session ends with its task, unless the file names a
``Runner``, whose session service keeps what it keeps. The run streams (``StreamingMode.SSE``) and its events map
onto the task: text as chunks of the ``result`` artifact, function calls and responses as progress,
sub-agent transfers as progress, each model call's ``usage_metadata`` to the run's usage.

Human in the loop: a tool that asks for confirmation (``FunctionTool(..., require_confirmation=True)``
or ``tool_context.request_confirmation()``), ADK's request-input tool and any other long-running tool
(``LongRunningFunctionTool``) pause the run; the task goes ``input-required`` with the question. The
caller's follow-up on the same task is the function response, as ``adk run`` builds it: for a
confirmation, ``yes``/``y``/``true``/``confirm`` (or a data part ``{"confirmed": ...}``); for any
other call, ``{"result": <text>}`` (or the data part as the response). The invocation then resumes.
A cancel closes the run's event stream, which is how ADK stops an invocation.

Options: ``app_name`` (default: the agent's name), ``user_id`` (default ``switchboard``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, ClassVar

from a2a.server.agent_execution import AgentExecutor
from google.adk.agents import BaseAgent
from google.adk.agents.run_config import RunConfig, StreamingMode  # type: ignore[attr-defined]  # ADK's documented path
from google.adk.events import Event
from google.adk.runners import Runner
from google.adk.sessions import InMemorySessionService
from google.genai import types
from pydantic import BaseModel, ConfigDict

from adapters.framework import (
    FrameworkAdapter,
    FrameworkEvent,
    InputRequired,
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

CONFIRMATION = "adk_request_confirmation"
REQUEST_INPUT = "adk_request_input"
ADK_DEFAULT_HINT = "Please approve or reject the tool call"


class AdkOptions(BaseModel):
    """The ``options`` of an ``adk`` agent file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app_name: str = ""
    user_id: str = "switchboard"


@dataclass(frozen=True)
class PendingCall:
    """A function call the paused invocation waits on."""

    call_id: str
    name: str
    args: dict[str, Any]

    def question(self) -> str:
        """What the caller is asked."""
        if self.name == CONFIRMATION:
            original = self.args.get("originalFunctionCall") or {}
            hint = str((self.args.get("toolConfirmation") or {}).get("hint") or "")
            call = f"{original.get('name', 'a tool')}({json.dumps(original.get('args') or {}, sort_keys=True)})"
            # ADK's default hint tells a programmer to send a FunctionResponse; the answer here is yes or no.
            shown = "" if not hint or hint.startswith(ADK_DEFAULT_HINT) else f" {hint}"
            return f"Confirm {call}? Answer yes or no.{shown}"
        if self.name == REQUEST_INPUT:
            return str(self.args.get("message") or "Input requested")
        return f"{self.name}({json.dumps(self.args, sort_keys=True)}) waits for your answer."

    def response(self, call: AgentCall) -> dict[str, Any]:
        """The function response the caller's answer makes (a data part is taken as it is)."""
        if call.data:
            return dict(call.data[0])
        if self.name == CONFIRMATION:
            return {"confirmed": says_yes(call.text)}
        return {"result": call.text}


@dataclass(frozen=True)
class Paused:
    """A paused invocation: where to resume and what it waits on."""

    invocation_id: str
    calls: tuple[PendingCall, ...]


class AdkAdapter(FrameworkAdapter):
    """An ADK agent through its ``Runner``, one session per A2A task."""

    framework: ClassVar[str] = "adk"
    Options: ClassVar[type[BaseModel]] = AdkOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        options = self.options
        assert isinstance(options, AdkOptions)
        self._owns_sessions = not isinstance(self.agent, Runner)  # a Runner given keeps its service's sessions
        if isinstance(self.agent, Runner):
            self.runner = self.agent
        else:
            app = options.app_name or self.agent.name
            self.runner = Runner(agent=self.agent, app_name=app, session_service=InMemorySessionService())
        self.user_id = options.user_id

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """An ADK agent or a ``Runner``."""
        return isinstance(obj, BaseAgent | Runner)

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        """One invocation: a new message, or the answer resuming the paused one."""
        paused: Paused | None = self.waiting.take(call.task_id)
        session = await self._session(call.task_id)
        if paused is None:
            message = types.Content(role="user", parts=[types.Part(text=user_content(call))])
            invocation_id = None
        else:
            responses = [
                types.Part(
                    function_response=types.FunctionResponse(id=p.call_id, name=p.name, response=p.response(call))
                )
                for p in paused.calls
            ]
            message = types.Content(role="user", parts=responses)
            invocation_id = paused.invocation_id
        run = self.runner.run_async(
            user_id=self.user_id,
            session_id=session,
            invocation_id=invocation_id,
            new_message=message,
            run_config=RunConfig(streaming_mode=StreamingMode.SSE),
        )
        reader = _EventReader(self.runner.agent.name if self.runner.agent else "")
        try:
            async for event in run:
                for mapped in reader.read(event):
                    yield mapped
        except BaseException:
            await self._end(call.task_id)
            raise
        finally:
            await run.aclose()
        waiting = reader.waiting()
        if waiting is None:
            await self._end(call.task_id)
            return
        self.waiting.put(call.task_id, waiting)
        yield InputRequired("\n".join(p.question() for p in waiting.calls))

    async def cancel(self, call: AgentCall) -> None:
        """Forget the task's paused invocation and its session."""
        await super().cancel(call)
        await self._end(call.task_id)

    async def aclose(self) -> None:
        """The gateway stops: the runner closes its agents' toolsets (an MCP toolset's sessions and servers) and
        plugins."""
        await super().aclose()
        await self.runner.close()

    async def _end(self, task_id: str) -> None:
        # The task is over: its in-memory session would otherwise stay for the life of the process.
        if self._owns_sessions:
            service, app = self.runner.session_service, self.runner.app_name
            await service.delete_session(app_name=app, user_id=self.user_id, session_id=task_id)

    async def _session(self, task_id: str) -> str:
        service, app = self.runner.session_service, self.runner.app_name
        found = await service.get_session(app_name=app, user_id=self.user_id, session_id=task_id)
        if found is None:
            await service.create_session(app_name=app, user_id=self.user_id, session_id=task_id)
        return task_id


class AdkRunError(RuntimeError):
    """An ADK event reported an error (a model or tool failure ADK did not raise)."""


class _EventReader:
    """Maps one invocation's ADK events onto framework events, and tracks the calls left waiting."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._streamed = False  # text of the current model response already sent as partial chunks
        self._invocation = ""
        self._pending: dict[str, PendingCall] = {}
        self._held: set[str] = set()  # ids of calls waiting for a confirmation

    def read(self, event: Event) -> list[FrameworkEvent]:
        if event.error_code or event.error_message:
            raise AdkRunError(f"{event.error_code or 'error'}: {event.error_message or 'no message'}")
        self._invocation = event.invocation_id or self._invocation
        parts = event.content.parts if event.content and event.content.parts else []
        if event.partial:
            chunks = [p.text for p in parts if p.text and not p.thought]
            self._streamed = self._streamed or bool(chunks)
            return [TextDelta(text) for text in chunks]
        mapped: list[FrameworkEvent] = []
        if event.author and event.author not in (self._root, "user"):
            mapped.append(Status(f"{event.author} is working"))
        if not self._streamed:
            mapped += [TextDelta(p.text) for p in parts if p.text and not p.thought]
        self._streamed = False
        long_running = set(event.long_running_tool_ids or ())
        for part in parts:
            if part.function_call:
                mapped += self._call(part.function_call, long_running)
            elif part.function_response:
                mapped += self._response(part.function_response)
        if event.actions and event.actions.transfer_to_agent:
            mapped.append(Status(f"transferred to {event.actions.transfer_to_agent}"))
        usage = event.usage_metadata
        if usage is not None:
            mapped.append(TokensUsed(usage.prompt_token_count or 0, usage.candidates_token_count or 0))
        return mapped

    def _call(self, call: types.FunctionCall, long_running: set[str]) -> list[FrameworkEvent]:
        if call.id and call.id in long_running:
            pending = PendingCall(call.id, call.name or "", dict(call.args or {}))
            self._pending[call.id] = pending
            if pending.name == CONFIRMATION:
                self._held.add(str((pending.args.get("originalFunctionCall") or {}).get("id") or ""))
            return []
        return [ToolCall(call.name or "tool", json.dumps(call.args or {}, sort_keys=True))]

    def _response(self, response: types.FunctionResponse) -> list[FrameworkEvent]:
        if response.id in self._held:  # ADK's placeholder answer to a call held for confirmation
            return [Status(f"{response.name} waits for confirmation")]
        body = response.response or {}
        return [ToolResult(response.name or "tool", json.dumps(body, default=str)[:200], error="error" in body)]

    def waiting(self) -> Paused | None:
        """The paused invocation, when calls still wait on the caller."""
        return Paused(self._invocation, tuple(self._pending.values())) if self._pending else None


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for an ``adk`` agent file."""
    return build_framework(spec, host, AdkAdapter)
