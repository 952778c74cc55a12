"""Hosted agents as MCP tools: one tool per exposed agent, plus ``list_agents``.

A tool call is one A2A task on that agent (``gateway.bindings.mcp_calls``). Every A2A update
becomes an MCP progress notification; cancelling the call cancels the task. A task that stops
at ``input-required`` asks the MCP client through elicitation, in the way each protocol
revision allows: a server-to-client ``elicitation/create`` request on 2025-11-25, an
``InputRequiredResult`` that the client answers by retrying the call on 2026-07-28 (the task
id rides the SDK-sealed ``requestState``). The answer goes to the same task as a follow-up
message. A client that cannot elicit, or declines, gets the task id back to answer later.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from a2a.auth.user import UnauthenticatedUser, User
from a2a.server.context import ServerCallContext
from mcp.server import ServerRequestContext
from mcp.server.elicitation import render_elicitation_schema
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp_types import (
    CallToolResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    InputRequiredResult,
    TextContent,
    ToolAnnotations,
)
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import Request

from gateway.bindings.mcp_calls import AgentCaller, AgentResult, CallError, CallInput, FileArg, Report, Update
from gateway.cards.build import AGENT_CARD_PATH
from gateway.spec import AgentSpec

logger = logging.getLogger(__name__)

MAX_QUESTIONS = 10
"""Questions one tool call answers through elicitation before it hands the task id back."""
ANSWER_KEY = "answer"
FAILED_STATES = frozenset({"failed", "rejected", "canceled"})
PLAIN_MODES = frozenset({"text/plain", "application/json"})

IdentityResolver = Callable[[ServerRequestContext[Any, Any]], User]
"""The auth seam: maps an MCP request to the caller identity that owns its A2A tasks.

It sees the request context (``request`` is the HTTP request on Streamable HTTP, ``None`` on
stdio; the SDK's auth middleware, once configured, has already verified any bearer token)."""


def anonymous(ctx: ServerRequestContext[Any, Any]) -> User:
    """The default identity: every MCP caller is the anonymous user (as unauthenticated A2A callers are)."""
    return UnauthenticatedUser()


def call_context(identify: IdentityResolver, ctx: Context) -> ServerCallContext:
    """The A2A call context of an MCP request: the caller's identity owns the tasks it starts."""
    return ServerCallContext(user=identify(ctx.request_context))


def tool_name(agent: str) -> str:
    """The MCP tool name of an agent: ``security-reviewer`` -> ``security_reviewer`` (``[A-Za-z0-9_-]``, <= 64)."""
    return agent.replace("-", "_")[:64]


class Answer(BaseModel):
    """The form an agent's question is asked with."""

    answer: str = Field(description="Your answer to the agent's question")


ANSWER_SCHEMA = render_elicitation_schema(Answer)


class AgentSummary(BaseModel):
    """One hosted agent, as ``list_agents`` shows it."""

    name: str
    tool: str | None = Field(default=None, description="its MCP tool, when exposed as one")
    kind: str = Field(description="runtime kind: python, llm, workflow, a2a, ...")
    description: str
    skills: list[str] = Field(description="'name: description' per skill")
    examples: list[str] = []
    card_url: str


class AgentList(BaseModel):
    """Every hosted agent; any of them can be run with ``start_run``."""

    agents: list[AgentSummary]


def describe(spec: AgentSpec) -> str:
    """A tool description built from the agent's card: purpose, skills with examples, how to continue."""
    lines = [" ".join(spec.description.split())]
    for skill in spec.skills:
        lines.append(f"Skill {skill.name}: {skill.description}")
        if skill.examples:
            lines.append("  e.g. " + "; ".join(f'"{e}"' for e in skill.examples[:3]))
    lines.append(
        "Runs as an A2A task; reports progress. If the result's state is input-required, call again "
        "with that task_id and your answer as text."
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class ToolShape:
    """Which arguments an agent's tool takes, from the input modes on its card."""

    text_required: bool
    files: bool
    data: bool

    @classmethod
    def of(cls, spec: AgentSpec) -> ToolShape:
        """Files when the agent takes media beyond text and JSON; data when it takes JSON."""
        modes = set(spec.default_input_modes)
        for skill in spec.skills:
            modes.update(skill.input_modes)
        files = bool(modes - PLAIN_MODES)
        data = "application/json" in modes
        return cls(text_required=not files and not data, files=files, data=data)


TextArg = Annotated[str, Field(description="what to ask the agent")]
FilesArg = Annotated[list[FileArg] | None, Field(description="files to send, each {name, content}")]
DataArg = Annotated[dict[str, Any] | None, Field(description="structured input (a JSON object)")]
TaskIdArg = Annotated[str, Field(description="continue this input-required task (from an earlier result)")]
ToolReturn = Annotated[CallToolResult, AgentResult] | InputRequiredResult


def _shown(spec: AgentSpec) -> tuple[str, ToolShape, bool]:
    """What an agent's tool shows of its spec: its description, its arguments, whether it is open-world."""
    return describe(spec), ToolShape.of(spec), spec.runtime.kind in ("llm", "a2a")


def _signature(shape: ToolShape) -> inspect.Signature:
    kw = inspect.Parameter.KEYWORD_ONLY
    params = [inspect.Parameter("ctx", kw, annotation=Context)]
    params.append(inspect.Parameter("text", kw, annotation=TextArg, default=inspect.Parameter.empty))
    if not shape.text_required:
        params[-1] = params[-1].replace(default="")
    if shape.files:
        params.append(inspect.Parameter("files", kw, annotation=FilesArg, default=None))
    if shape.data:
        params.append(inspect.Parameter("data", kw, annotation=DataArg, default=None))
    params.append(inspect.Parameter("task_id", kw, annotation=TaskIdArg, default=""))
    return inspect.Signature(params, return_annotation=ToolReturn)


def tool_result(result: AgentResult) -> CallToolResult:
    """The MCP result of a task: structured content, its JSON as text, ``isError`` when it failed."""
    if result.state == "input-required":
        tool = tool_name(result.agent)
        result = result.model_copy(
            update={"hint": f"The agent needs input: call {tool} again with task_id={result.task_id!r} and the answer."}
        )
    structured = result.model_dump(mode="json", exclude_none=True)
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(structured, ensure_ascii=False))],
        structured_content=structured,
        is_error=result.state in FAILED_STATES,
    )


def progress_message(update: Update) -> str:
    """A progress line that says which agent, what state and what it is doing."""
    text = update.text.removeprefix(f"{update.agent}: ")
    if update.state == "submitted":
        text = f"task {update.task_id} submitted" + (f": {text}" if text else "")
    prefix = update.agent if update.state in ("working", "submitted") else f"{update.agent} [{update.state}]"
    return f"{prefix}: {text or update.state}"


def _is_modern(ctx: Context) -> bool:
    return (ctx.protocol_version or "") in MODERN_PROTOCOL_VERSIONS


def _can_elicit(ctx: Context) -> bool:
    caps = ctx.client_capabilities
    elicitation = caps.elicitation if caps is not None else None
    if elicitation is None or (elicitation.form is None and elicitation.url is not None):
        return False
    return _is_modern(ctx) or ctx.session.can_send_request


class AgentTools:
    """Registers agent tools on an ``MCPServer`` and runs their calls."""

    def __init__(self, caller: AgentCaller, identify: IdentityResolver) -> None:
        self.caller = caller
        self.identify = identify
        self._shown: dict[str, tuple[str, ToolShape, bool]] = {}  # tool -> what it was registered from

    def call_context(self, ctx: Context) -> ServerCallContext:
        """The A2A call context of an MCP request."""
        return call_context(self.identify, ctx)

    def register(self, server: MCPServer, spec: AgentSpec) -> str:
        """Add ``spec``'s tool to ``server``; returns the tool name."""
        name = tool_name(spec.name)
        agent = spec.name

        async def call_agent(
            ctx: Context,
            text: str = "",
            files: list[FileArg] | None = None,
            data: dict[str, Any] | None = None,
            task_id: str = "",
        ) -> CallToolResult | InputRequiredResult:
            return await self.call(agent, ctx, CallInput(text, tuple(files or ()), data, task_id))

        shown = self._shown[name] = _shown(spec)
        description, shape, open_world = shown
        call_agent.__signature__ = _signature(shape)  # type: ignore[attr-defined]
        call_agent.__name__ = name
        server.add_tool(
            call_agent,
            name=name,
            title=spec.name.replace("-", " ").title(),
            description=description,
            annotations=ToolAnnotations(open_world_hint=open_world),
            structured_output=True,
        )
        return name

    def refresh(self, server: MCPServer, spec: AgentSpec) -> bool:
        """Register ``spec``'s tool again if what it shows changed (its card did); whether it changed."""
        name = tool_name(spec.name)
        if self._shown.get(name) == _shown(spec):
            return False
        server.remove_tool(name)  # the SDK keeps the first tool of a name: this one replaces it
        self.register(server, spec)
        return True

    async def call(self, agent: str, ctx: Context, call: CallInput) -> CallToolResult | InputRequiredResult:
        """Run one tool call: the task, its questions, its outcome.

        A 2025-11-25 HTTP call also ends when its response stream drops: without an event store
        the stream cannot be resumed, so its result could never be delivered (on 2026-07-28 the
        SDK already cancels a call whose stream closes).
        """
        request = ctx.request_context.request
        if _is_modern(ctx) or not isinstance(request, Request):
            return await self._call(agent, ctx, call)
        # One watcher task, not a task group: it only cancels this call's scope when the client leaves.
        with anyio.CancelScope() as scope:
            watcher = asyncio.ensure_future(_cancel_on_disconnect(request, scope))
            try:
                return await self._call(agent, ctx, call)
            finally:
                watcher.cancel()
        raise CallError(f"the client went away; the {agent} task was cancelled")

    async def _call(self, agent: str, ctx: Context, call: CallInput) -> CallToolResult | InputRequiredResult:
        caller = self.call_context(ctx)
        report = _progress_reporter(ctx)
        resumed = await self._resume(agent, ctx, caller)
        if isinstance(resumed, CallToolResult | InputRequiredResult):
            return resumed
        call = resumed or call
        if not (call.text or call.files or call.data is not None):
            raise CallError(f"nothing to send to {agent}: give it text, files or data")
        for _ in range(MAX_QUESTIONS):
            result = await self.caller.send(agent, call, caller, report)
            if result.state != "input-required":
                return tool_result(result)
            answer = await self._ask(ctx, result)
            if not isinstance(answer, str):
                return answer
            call = CallInput(text=answer, task_id=result.task_id)
        return tool_result(result)

    async def _ask(self, ctx: Context, result: AgentResult) -> str | CallToolResult | InputRequiredResult:
        """The client's answer to the task's question, or what to return instead."""
        question = result.text or f"{result.agent} needs more input to continue."
        if not _can_elicit(ctx):
            return tool_result(result)
        if _is_modern(ctx):
            state = json.dumps({"agent": result.agent, "task_id": result.task_id})
            request = ElicitRequest(params=ElicitRequestFormParams(message=question, requested_schema=ANSWER_SCHEMA))
            return InputRequiredResult(input_requests={ANSWER_KEY: request}, request_state=state)
        try:
            outcome = await ctx.elicit(question, Answer)
        except (MCPError, NoBackChannelError, ValueError) as exc:
            logger.info("elicitation for task %s failed: %s", result.task_id, exc)
            return tool_result(result)
        if outcome.action != "accept":
            return tool_result(result)
        return outcome.data.answer

    async def _resume(
        self, agent: str, ctx: Context, caller: ServerCallContext
    ) -> CallInput | CallToolResult | InputRequiredResult | None:
        """On a 2026-07-28 retry, the follow-up the client's answer makes (or the question again)."""
        if not ctx.request_state:
            return None
        try:
            state = json.loads(ctx.request_state)
        except ValueError:
            return None
        if not isinstance(state, dict) or state.get("agent") != agent or not state.get("task_id"):
            return None
        task_id = str(state["task_id"])
        response = (ctx.input_responses or {}).get(ANSWER_KEY)
        if isinstance(response, ElicitResult) and response.action == "accept":
            try:
                return CallInput(text=Answer.model_validate(response.content or {}).answer, task_id=task_id)
            except ValidationError:
                response = None
        current = await self.caller.get(agent, task_id, caller)
        if response is None and current.state == "input-required":
            asked = await self._ask(ctx, current)
            return asked if not isinstance(asked, str) else CallInput(text=asked, task_id=task_id)
        return tool_result(current)

    def summaries(
        self, exposed: Mapping[str, str], base_url: str, visible: Callable[[AgentSpec], bool] = lambda spec: True
    ) -> AgentList:
        """``list_agents``' answer: every hosted agent ``visible`` to the caller, with its tool name when it has one."""
        return AgentList(
            agents=[
                AgentSummary(
                    name=name,
                    tool=exposed.get(name),
                    kind=hosted.spec.runtime.kind,
                    description=" ".join(hosted.spec.description.split()),
                    skills=[f"{s.name}: {s.description}" for s in hosted.spec.skills],
                    examples=[e for s in hosted.spec.skills for e in s.examples][:5],
                    card_url=f"{base_url}/agents/{name}/{AGENT_CARD_PATH.lstrip('/')}",
                )
                for name, hosted in self.caller.agents.items()
                if visible(hosted.spec)
            ]
        )


async def _cancel_on_disconnect(request: Request, scope: anyio.CancelScope) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _no_report(update: Update) -> None:
    return None


def _progress_reporter(ctx: Context) -> Report:
    """Turns A2A updates into MCP progress notifications (a strictly increasing count), if the client asked."""
    meta = ctx.request_context.meta
    if not meta or meta.get("progress_token") is None:
        return _no_report
    count = 0

    async def report(update: Update) -> None:
        nonlocal count
        count += 1
        await ctx.report_progress(count, None, progress_message(update))

    return report
