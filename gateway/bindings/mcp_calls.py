"""The A2A side of an MCP call: every tool call and every run is one A2A task on a hosted agent.

An agent with an in-process executor runs the call on its ``LocalRunner`` (``gateway.hosting.local_tasks``):
one task of the agent, saved at start and end, without the SDK's request handler. Any other agent
(a workflow, a remote agent) gets it through its request handler (``on_message_send_stream``; the
result is built from the streamed events). Either way the caller is the ``ServerCallContext``
user, so an MCP caller gets exactly the task semantics, ownership and store an A2A caller gets;
``get`` and ``cancel`` go through the handler, which routes a running local task's cancel to its runner.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from a2a.server.context import ServerCallContext
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import A2AError, InvalidParamsError, TaskNotCancelableError, TaskNotFoundError
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel, Field

from gateway.hosting.cleanup import CLEANUP_TIMEOUT_S
from gateway.hosting.data_parts import data_value
from gateway.hosting.executor import data_part
from gateway.hosting.nul_text import refuse_nul
from gateway.orchestration.step_outputs import is_steps, step_outputs
from gateway.telemetry.access import note_agent

if TYPE_CHECKING:
    from gateway.hosting.hosted import HostedAgent
    from gateway.hosting.local_tasks import LocalRunner

logger = logging.getLogger(__name__)

FIRST_EVENT_TIMEOUT_S = 10.0
"""How long a call waits, shielded from cancellation, for the agent to name its task: a call
cancelled before it knows its task id could not cancel that task."""


class FileArg(BaseModel):
    """A file sent to an agent, as an MCP tool argument."""

    name: str = Field(min_length=1, max_length=255, description="file name, e.g. app.py")
    content: str = Field(description="the file's text")


class ArtifactOut(BaseModel):
    """One artifact of the task: its text and/or its structured data."""

    name: str
    text: str | None = None
    data: dict[str, Any] | list[Any] | None = None


class AgentResult(BaseModel):
    """What an agent tool returns: the A2A task's outcome."""

    agent: str = Field(description="the agent that ran the task")
    task_id: str = Field(description="the A2A task; pass it back as task_id to answer an input-required task")
    state: str = Field(description="A2A task state: completed, input-required, failed, rejected, canceled, ...")
    text: str = Field(description="the agent's last message: its summary, its question or its reason")
    artifacts: list[ArtifactOut] = Field(default_factory=list, description="what the task produced")
    hint: str | None = Field(default=None, description="what to do next, when the task waits for input")


@dataclass(frozen=True)
class CallInput:
    """What an MCP caller sends to an agent."""

    text: str = ""
    files: tuple[FileArg, ...] = ()
    data: Mapping[str, Any] | None = None
    task_id: str = ""


@dataclass(frozen=True)
class Update:
    """One A2A event, reduced to what progress reporting needs."""

    agent: str
    task_id: str
    state: str
    text: str
    artifact: str = ""  # the artifact an artifact update replaced or added to (not the steps' outputs)


class CallError(ToolError):
    """A call the agent's handler refused (unknown agent or task, finished task, bad input).

    A ``ToolError``: the MCP result is ``isError`` with this text, for the model to read and correct.
    """


Report = Callable[[Update], Awaitable[None]]


def state_name(state: int) -> str:
    """The protocol's name of an A2A task state: ``TASK_STATE_INPUT_REQUIRED`` -> ``input-required``."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")  # type: ignore[arg-type]


def message_text(message: Message) -> str:
    """The text parts of a message, joined."""
    return "\n".join(p.text for p in message.parts if p.HasField("text"))


def _media_type(name: str, accepted: Sequence[str]) -> str:
    guessed = mimetypes.guess_type(name)[0] or "text/plain"
    return guessed if not accepted or guessed in accepted else "text/plain"


def build_message(call: CallInput, accepted_modes: Sequence[str]) -> Message:
    """The A2A message for ``call``; ``task_id`` continues an existing task (its context is the task's)."""
    parts = [Part(text=call.text)] if call.text else []
    parts += [
        Part(raw=f.content.encode("utf-8"), filename=f.name, media_type=_media_type(f.name, accepted_modes))
        for f in call.files
    ]
    if call.data is not None:
        parts.append(data_part(dict(call.data)))
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts, task_id=call.task_id)


def _artifact(artifact: Any) -> ArtifactOut:
    texts = [p.text for p in artifact.parts if p.HasField("text")]
    data = [data_value(p.data) for p in artifact.parts if p.HasField("data")]
    files = [p.filename or "file" for p in artifact.parts if p.HasField("raw") or p.HasField("url")]
    text = "\n".join(texts + [f"[file {name}]" for name in files]) or None
    return ArtifactOut(
        name=artifact.name or artifact.artifact_id, text=text, data=data[0] if len(data) == 1 else data or None
    )


def _artifacts(artifact: Any) -> list[ArtifactOut]:
    """A run's ``steps`` artifact as one entry per step (``step-<n>-<agent>``); any other as itself."""
    if not is_steps(artifact):
        return [_artifact(artifact)]
    return [ArtifactOut(name=o.name, text=o.text, data=o.data) for o in step_outputs(artifact.parts)]


def result_of(agent: str, task: Task) -> AgentResult:
    """The tool result describing ``task``."""
    return AgentResult(
        agent=agent,
        task_id=task.id,
        state=state_name(task.status.state),
        text=_status_text(task),
        artifacts=[out for a in task.artifacts for out in _artifacts(a)],
    )


def _status_text(task: Task) -> str:
    return message_text(task.status.message)


def _applied(task: Task | None, event: Any) -> Task | None:
    """The task as the streamed events so far make it (None until a ``Task`` event starts it)."""
    if isinstance(event, Task):
        copy = Task()
        copy.CopyFrom(event)
        return copy
    if task is None:
        return None
    if isinstance(event, TaskStatusUpdateEvent):
        task.status.CopyFrom(event.status)
    elif isinstance(event, TaskArtifactUpdateEvent):
        append_artifact_to_task(task, event)
    return task


def _update(agent: str, event: Any) -> Update | None:
    if isinstance(event, Task):
        return Update(agent, event.id, state_name(event.status.state), message_text(event.status.message))
    if isinstance(event, TaskStatusUpdateEvent):
        return Update(agent, event.task_id, state_name(event.status.state), message_text(event.status.message))
    if isinstance(event, TaskArtifactUpdateEvent):
        names = [o.name for o in step_outputs(event.artifact.parts)] if is_steps(event.artifact) else []
        produced = ", ".join(repr(n) for n in names or [event.artifact.name or event.artifact.artifact_id])
        changed = "" if names else event.artifact.artifact_id
        return Update(agent, event.task_id, "working", f"produced artifact {produced}", changed)
    return None


PENDING_REPORTS = 64
"""How many progress reports may wait for a caller that reads its stream slowly; older ones are dropped."""
REPORT_DRAIN_S = 10.0
"""How long a finished call waits for its waiting progress reports to go out."""


class ProgressPump:
    """A call's progress reports, sent in order from a task of their own: the run never waits for its caller.

    A caller that stops reading its stream holds up only its reports: at most ``PENDING_REPORTS``
    wait, the oldest dropped first (progress is a running commentary; the call's result carries
    the outcome). A report that fails ends the reporting for this call.
    """

    def __init__(self, report: Report) -> None:
        self._report = report
        self._pending: deque[Update] = deque(maxlen=PENDING_REPORTS)
        self._sender: asyncio.Task[None] | None = None
        self._failed = False

    async def __call__(self, update: Update) -> None:
        """Queue ``update`` (never waits)."""
        if self._failed:
            return
        self._pending.append(update)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self._pending:
            try:
                await self._report(self._pending.popleft())
            except Exception:
                logger.debug("a progress report failed; this call reports no more", exc_info=True)
                self._failed = True
                self._pending.clear()

    async def drain(self) -> None:
        """Wait (bounded) until the waiting reports are out, then stop."""
        if self._sender is not None and not self._sender.done():
            await asyncio.wait({self._sender}, timeout=REPORT_DRAIN_S)
        self.stop()

    def stop(self) -> None:
        """Send nothing more."""
        self._failed = True
        self._pending.clear()
        if self._sender is not None:
            self._sender.cancel()


class _EarlyCancel(Exception):
    """A call cancelled before the agent's first event, which names the task to cancel."""

    def __init__(self, task_id: str, cancellation: BaseException) -> None:
        super().__init__(task_id)
        self.task_id = task_id
        self.cancellation = cancellation


async def _first_event(iterator: AsyncIterator[Any]) -> Any:
    """The stream's first event; a cancellation before it still waits (bounded) to learn the task id."""
    pending = asyncio.ensure_future(anext(iterator, None))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError as cancellation:
        event = None
        with anyio.CancelScope(shield=True), anyio.move_on_after(FIRST_EVENT_TIMEOUT_S):
            try:
                event = await pending
            except Exception:
                logger.debug("the first event of a cancelled call failed", exc_info=True)
        if not pending.done():
            pending.cancel()
        update = _update("", event) if event is not None else None
        raise _EarlyCancel(update.task_id if update else "", cancellation) from None


class AgentCaller:
    """Runs MCP calls as A2A tasks on the hosted agents."""

    def __init__(self, agents: Mapping[str, HostedAgent], observe: Report | None = None) -> None:
        self._agents = agents
        self._observe = observe

    @property
    def agents(self) -> Mapping[str, HostedAgent]:
        """The hosted agents, by name."""
        return self._agents

    def hosted(self, agent: str) -> HostedAgent:
        """The hosted agent called ``agent``; ``CallError`` names the known ones."""
        hosted = self._agents.get(agent)
        if hosted is None:
            raise CallError(f"no agent named {agent!r} is hosted here; call list_agents for the names")
        return hosted

    async def send(self, agent: str, call: CallInput, caller: ServerCallContext, report: Report) -> AgentResult:
        """Send ``call`` and follow the task until it ends or waits for input, reporting every update.

        An agent with a ``LocalRunner`` runs the call in this process as one task of its own
        (``gateway.hosting.local_tasks``); any other (a workflow, a remote agent) through its request
        handler. Every update also goes to the observer given at construction (run progress,
        resource notifications). Cancelling the caller (an MCP cancellation, a dropped
        connection) cancels the A2A task.
        """
        hosted = self.hosted(agent)
        note_agent(agent)  # the request's metrics label and audit row name the agent the tool runs
        message = build_message(call, hosted.card.card.default_input_modes)
        try:
            refuse_nul(message)  # the runner reads a follow-up's task without the handler's checks
        except InvalidParamsError as exc:
            raise CallError(f"{agent}: {exc.message}") from exc
        runner = hosted.handler.local
        pump = ProgressPump(report)  # the agent's progress never waits for the caller's stream
        try:
            if runner is not None:
                result = await self._run_local(agent, runner, message, caller, pump)
            else:
                result = await self._send_to_handler(agent, hosted, message, caller, pump)
        except BaseException:
            pump.stop()
            raise
        await pump.drain()
        return result

    async def _tell(self, report: Report, update: Update) -> None:
        if self._observe is not None:
            await self._observe(update)
        await report(update)

    async def _run_local(
        self, agent: str, runner: LocalRunner, message: Message, caller: ServerCallContext, report: Report
    ) -> AgentResult:
        """One in-process task: its start, each working update and its outcome are reported."""
        running: list[Task] = []

        async def started(task: Task) -> None:
            running.append(task)
            await self._tell(report, Update(agent, task.id, "submitted", ""))

        async def progress(text: str) -> None:
            await self._tell(report, Update(agent, message.task_id, "working", text))

        try:
            task = await runner.run(message, caller, progress, started=started)
        except A2AError as exc:
            raise CallError(f"{agent}: {exc.message or type(exc).__name__}") from exc
        except anyio.get_cancelled_exc_class():
            if running:  # the runner has saved it canceled
                task = running[0]
                with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_S):
                    await self._observed(Update(agent, task.id, state_name(task.status.state), _status_text(task)))
            raise
        result = result_of(agent, task)
        await self._tell(report, Update(agent, task.id, result.state, result.text))
        return result

    async def _send_to_handler(
        self, agent: str, hosted: HostedAgent, message: Message, caller: ServerCallContext, report: Report
    ) -> AgentResult:
        """The call through the agent's request handler, its result built from the streamed events."""
        task_id = message.task_id
        task: Task | None = None
        request = SendMessageRequest(message=message)
        try:
            async with aclosing(hosted.handler.on_message_send_stream(request, caller)) as events:
                iterator = aiter(events)
                event = await _first_event(iterator)
                while event is not None:
                    if isinstance(event, Message):
                        return AgentResult(agent=agent, task_id="", state="completed", text=message_text(event))
                    task = _applied(task, event)
                    update = _update(agent, event)
                    if update is not None:
                        task_id = update.task_id or task_id
                        await self._tell(report, update)
                    event = await anext(iterator, None)
            # a2a-sdk 1.3's stream swallows a CancelledError and just ends: ask whether we were cancelled.
            await anyio.lowlevel.checkpoint_if_cancelled()
        except _EarlyCancel as early:
            await self._cancel_shielded(agent, early.task_id, caller)
            raise early.cancellation from None
        except anyio.get_cancelled_exc_class():
            await self._cancel_shielded(agent, task_id, caller)
            raise
        except A2AError as exc:
            raise CallError(f"{agent}: {exc.message or type(exc).__name__}") from exc
        if task is not None:
            return result_of(agent, task)
        if not task_id:
            raise CallError(f"{agent} ended without a task or a reply")
        return await self.get(agent, task_id, caller)  # a follow-up's stream starts after the task's first events

    async def _cancel_shielded(self, agent: str, task_id: str, caller: ServerCallContext) -> None:
        if not task_id:
            logger.warning("a call to %s was cancelled before its task was known; it cannot be cancelled", agent)
            return
        with anyio.CancelScope(shield=True), anyio.move_on_after(CLEANUP_TIMEOUT_S):
            try:
                result = await self.cancel(agent, task_id, caller)
            except CallError as exc:
                logger.info("cancelling task %s: %s", task_id, exc)
                return
            except Exception:  # the edge: a cancellation must never turn into another failure
                logger.exception("cancelling task %s on %s failed", task_id, agent)
                return
            await self._observed(Update(agent, task_id, result.state, result.text))

    async def _observed(self, update: Update) -> None:
        if self._observe is not None:
            await self._observe(update)

    async def get(self, agent: str, task_id: str, caller: ServerCallContext) -> AgentResult:
        """The task's current outcome; ``CallError`` when it is unknown to this caller."""
        hosted = self.hosted(agent)
        try:
            task = await hosted.handler.on_get_task(GetTaskRequest(id=task_id), caller)
        except TaskNotFoundError as exc:
            raise CallError(f"no task {task_id!r} on {agent} (unknown, or not yours)") from exc
        except InvalidParamsError as exc:  # an id no task can have (holding NUL, see gateway.hosting.nul_text)
            raise CallError(f"no task {task_id!r} on {agent}: {exc.message}") from exc
        if task is None:
            raise CallError(f"no task {task_id!r} on {agent} (unknown, or not yours)")
        return result_of(agent, task)

    async def cancel(self, agent: str, task_id: str, caller: ServerCallContext) -> AgentResult:
        """Cancel the task (the engine cancels a workflow's children); ``CallError`` when it cannot be."""
        hosted = self.hosted(agent)
        try:
            task = await hosted.handler.on_cancel_task(CancelTaskRequest(id=task_id), caller)
        except TaskNotCancelableError as exc:
            current = await self.get(agent, task_id, caller)
            raise CallError(f"task {task_id!r} on {agent} has already ended: {current.state}") from exc
        except TaskNotFoundError as exc:
            raise CallError(f"no task {task_id!r} on {agent} (unknown, or not yours)") from exc
        except InvalidParamsError as exc:
            raise CallError(f"no task {task_id!r} on {agent}: {exc.message}") from exc
        return result_of(agent, task) if task is not None else await self.get(agent, task_id, caller)

    async def follow(self, agent: str, task_id: str, caller: ServerCallContext) -> None:
        """Report every update of a task running elsewhere (another replica) to the observer, until it ends.

        Through the agent's ``SubscribeToTask``, which on PostgreSQL follows a task on any replica.
        """
        hosted = self.hosted(agent)
        events = hosted.handler.on_subscribe_to_task(SubscribeToTaskRequest(id=task_id), caller)
        async with aclosing(events):
            async for event in events:
                update = _update(agent, event)
                if update is not None:
                    await self._observed(update)
