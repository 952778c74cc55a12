"""One step as a child A2A task of its participant, run in-process.

A participant with a ``LocalRunner`` (a ``python`` or ``llm`` runtime, ``gateway.hosting.local_tasks``)
runs the step's task directly (``LocalChild``); any other (a workflow, a remote agent) gets the
message through its own request handler (``ChildTask``); a step of a distributed work queue on
PostgreSQL is posted as a shared work item that any replica may run (``SharedChild``). Either way
the child is an ordinary task of the participant, owned by the run's caller (the same
``ServerCallContext``), so the caller can get, list or cancel it on the participant's URL. It
names its parent in ``reference_task_ids`` and in its message's metadata
(``{"switchboard": {"parent_task_id", "run_id", "step", "hops", "via"}, "traceparent"}``). Its final task becomes a
``StepResult``: the status message's text, the artifacts' data, and what the participant's
executor put in the status message's metadata (usage, a handoff, whether a failure is retryable,
see ``gateway.hosting.executor.reply_metadata``). A child that failed because the run's caller may not run
what it runs (a nested run's step, an agent reusing another's logic) says so with the reason
``permission-denied``: the step is ``refused``, and the engine fails the run with it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import RequestHandler
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import TaskNotCancelableError, TaskNotFoundError
from google.protobuf.json_format import MessageToDict

from gateway.errors import PermissionDeniedError
from gateway.federation.hops import TRACEPARENT
from gateway.hosting.data_parts import data_value
from gateway.hosting.executor import METADATA_KEY, data_part
from gateway.hosting.local_tasks import LocalRunner
from gateway.hosting.work_items import WorkItems
from gateway.orchestration.api import StepInput, StepResult, StepState
from gateway.orchestration.step_outputs import is_steps
from gateway.runtime import FileInput, Usage

logger = logging.getLogger(__name__)

Progress = Callable[[str], Awaitable[None]]

_STATES: dict[int, StepState] = {
    TaskState.TASK_STATE_COMPLETED: "completed",
    TaskState.TASK_STATE_FAILED: "failed",
    TaskState.TASK_STATE_REJECTED: "rejected",
    TaskState.TASK_STATE_CANCELED: "canceled",
    TaskState.TASK_STATE_INPUT_REQUIRED: "input-required",
}


@dataclass(frozen=True)
class StepLink:
    """How a child task names its run."""

    parent_task_id: str
    context_id: str
    run_id: str
    step: int
    hops: int
    via: tuple[str, ...] = ()
    traceparent: str = ""
    max_hops: int | None = None  # the run's nesting limit, which a nested run keeps to as well as its own

    def metadata(self) -> dict[str, Any]:
        """The child message's metadata; the run's gateway path and trace context pass on (``federation.hops``)."""
        entry: dict[str, Any] = {
            "parent_task_id": self.parent_task_id,
            "run_id": self.run_id,
            "step": self.step,
            "hops": self.hops,
        }
        if self.max_hops is not None:
            entry["max_hops"] = self.max_hops
        if self.via:
            entry["via"] = list(self.via)
        meta: dict[str, Any] = {METADATA_KEY: entry}
        if self.traceparent:
            meta[TRACEPARENT] = self.traceparent
        return meta


@dataclass(frozen=True)
class ChildOutcome:
    """A child task's result, whether trying again might help, and whether the caller was refused."""

    result: StepResult
    retryable: bool = False
    refused: bool = False
    busy: bool = False
    """Refused by the agent's admission control: a fallback takes the step at once (degraded mode)."""


def _file_part(file: FileInput) -> Part:
    if file.url:
        return Part(url=file.url, filename=file.name, media_type=file.media_type)
    raw = file.raw if file.raw is not None else (file.text or "").encode()
    return Part(raw=raw, filename=file.name, media_type=file.media_type or "text/plain")


def child_message(request: StepInput, link: StepLink, *, follow_up: tuple[str, str] | None = None) -> Message:
    """The message that starts (or, given ``follow_up=(task_id, context_id)``, continues) a child task."""
    parts = [Part(text=request.text)] if request.text else []
    parts += [data_part(dict(item)) for item in request.data]
    parts += [_file_part(file) for file in request.files]
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=parts,
        reference_task_ids=[link.parent_task_id],
    )
    message.metadata.update({**dict(request.metadata), **link.metadata()})
    if follow_up is not None:
        message.task_id, message.context_id = follow_up
    else:
        message.context_id = link.context_id
    return message


def _texts(parts: Sequence[Part]) -> list[str]:
    return [p.text for p in parts if p.HasField("text") and p.text]


def _data(parts: Sequence[Part]) -> list[Any]:
    return [data_value(p.data) for p in parts if p.HasField("data")]


def _usage(value: Any) -> Usage:
    """Usage as reported; ``ValueError`` when it is not three non-negative numbers."""
    if not isinstance(value, dict):
        raise ValueError(f"usage is {type(value).__name__}, not an object")
    numbers = [value.get(key, 0) for key in ("input_tokens", "output_tokens", "cost")]
    if not all(isinstance(n, int | float) and not isinstance(n, bool) and math.isfinite(n) and n >= 0 for n in numbers):
        raise ValueError(f"usage values must be non-negative numbers, got {value}")
    return Usage(int(numbers[0]), int(numbers[1]), float(numbers[2]))


def step_result(agent: str, task: Task) -> ChildOutcome:
    """A finished child task as a step result; a participant's malformed report fails the step."""
    state = _STATES.get(task.status.state)
    status_text = "\n".join(_texts(task.status.message.parts))
    if state is None:
        reason = f"{agent} ended in {TaskState.Name(task.status.state)}, not a final state"
        return ChildOutcome(StepResult(agent, "failed", status_text, task_id=task.id, error=reason))
    # A nested run's ``steps`` artifact is its log, not its answer (its ``result`` holds what it answered): counting
    # it made each level carry its inner runs' data twice over, doubling the data per level of nesting.
    artifact_parts = [part for artifact in task.artifacts if not is_steps(artifact) for part in artifact.parts]
    data = _data(artifact_parts) or _data(task.status.message.parts)
    text = status_text or ("\n".join(_texts(artifact_parts)) if state == "completed" else "")
    reported = task.status.message.metadata.fields.get(METADATA_KEY) if task.status.HasField("message") else None
    meta = MessageToDict(reported) if reported is not None else {}
    if not isinstance(meta, dict):
        meta = {}
    handoff = meta.get("handoff")
    if not isinstance(handoff, dict):
        handoff = {}
    try:
        usage = _usage(meta["usage"]) if "usage" in meta else None
    except ValueError as exc:
        return ChildOutcome(StepResult(agent, "failed", text, task_id=task.id, error=f"{agent} reported {exc}"))
    error = "" if state in ("completed", "input-required") else (status_text or f"{agent} gave no reason")
    result = StepResult(
        agent=agent,
        state=state,
        text=text,
        data=data[0] if len(data) == 1 else (data or None),
        task_id=task.id,
        usage=usage,
        handoff_to=str(handoff.get("to") or ""),
        handoff_note=str(handoff.get("note") or ""),
        error=error,
    )
    failed = state == "failed"
    refused = failed and meta.get("reason") == PermissionDeniedError.reason
    return ChildOutcome(result, retryable=failed and not refused and meta.get("retryable") is True, refused=refused)


def message_result(agent: str, message: Message) -> ChildOutcome:
    """A participant that answered with a message instead of a task: its text and data, completed."""
    data = _data(message.parts)
    text = "\n".join(_texts(message.parts))
    return ChildOutcome(StepResult(agent, "completed", text, data=data[0] if len(data) == 1 else (data or None)))


class ChildTask:
    """One child task of a run, on the handler of its agent."""

    def __init__(self, agent: str, handler: RequestHandler, call_context: ServerCallContext) -> None:
        self.agent = agent
        self.task_id = ""
        self._handler = handler
        self._context = call_context
        self._reply: Message | None = None

    async def run(self, message: Message, progress: Progress) -> ChildOutcome:
        """Send ``message`` and follow the child to its end (or until it waits for input)."""
        self.task_id = message.task_id
        stream = self._handler.on_message_send_stream(SendMessageRequest(message=message), self._context)
        try:
            async for event in stream:
                await self._on_event(event, progress)
        finally:
            await stream.aclose()
        if self._reply is not None:
            return message_result(self.agent, self._reply)
        if not self.task_id:
            return ChildOutcome(StepResult(self.agent, "failed", error=f"{self.agent} answered with no task"))
        task = await self._handler.on_get_task(GetTaskRequest(id=self.task_id), self._context)
        if task is None:
            return ChildOutcome(StepResult(self.agent, "failed", error=f"{self.agent}'s task {self.task_id} is gone"))
        return step_result(self.agent, task)

    async def _on_event(self, event: object, progress: Progress) -> None:
        if isinstance(event, Task):
            self.task_id = event.id
        elif isinstance(event, Message):
            self._reply = event
        elif isinstance(event, TaskStatusUpdateEvent):
            self.task_id = self.task_id or event.task_id
            text = "\n".join(_texts(event.status.message.parts))
            if text and event.status.state == TaskState.TASK_STATE_WORKING:
                await progress(text)

    async def cancel(self) -> bool:
        """Cancel the child on its agent; whether it was still running to be canceled."""
        if not self.task_id:
            return False
        return await cancel_task(self._handler, self.task_id, self._context)


class LocalChild:
    """One child task of a run, on its agent's ``LocalRunner``: no request handler, no event queue.

    The runner saves the task when it starts and when it ends; its progress reaches ``progress``
    directly, and its final task is the result (no re-read).
    """

    def __init__(self, agent: str, runner: LocalRunner, call_context: ServerCallContext) -> None:
        self.agent = agent
        self._runner = runner
        self._context = call_context
        self._message: Message | None = None

    @property
    def task_id(self) -> str:
        """The child's task id: the runner names a new task on the message it was given."""
        return self._message.task_id if self._message is not None else ""

    async def run(self, message: Message, progress: Progress) -> ChildOutcome:
        """Run ``message`` on the agent to the task's end (or until it waits for input)."""
        self._message = message
        return step_result(self.agent, await self._runner.run(message, self._context, progress))

    async def cancel(self) -> bool:
        """Cancel the child if it is running; whether it was."""
        return bool(self.task_id) and await self._runner.cancel(self.task_id)


class SharedChild:
    """One child task of a run, posted as a shared work item that any replica may claim (``hosting.work_items``).

    The replica that claims it runs it on its agent's ``LocalRunner`` as the run's owner; its
    progress (read from its task's live events) and its final task come back through the database.
    """

    def __init__(self, agent: str, items: WorkItems, run_id: str, call_context: ServerCallContext) -> None:
        self.agent = agent
        self.task_id = ""
        self._items = items
        self._run_id = run_id
        self._context = call_context
        self._item = ""

    async def run(self, message: Message, progress: Progress) -> ChildOutcome:
        """Post ``message`` and wait until a replica ran it to the task's end (or until it waits for input)."""
        self._item = await self._items.post(self._run_id, self.agent, message, self._context)
        follower = asyncio.ensure_future(self._items.follow(self._item, progress))
        try:
            end = await self._items.result(self._item)
        finally:
            follower.cancel()
            await asyncio.gather(follower, return_exceptions=True)
        if end.task is None:
            result = StepResult(self.agent, "failed", error=end.error)
            return ChildOutcome(result, retryable=end.retryable, busy=end.busy)
        self.task_id = end.task.id
        return step_result(self.agent, end.task)

    async def cancel(self) -> bool:
        """Withdraw the item: its child is canceled on the replica running it; whether it had not ended."""
        if not self._item:
            return False
        self.task_id = self.task_id or await self._items.task_id(self._item)
        return await self._items.withdraw(self._item)


Child = ChildTask | LocalChild | SharedChild


async def cancel_task(handler: RequestHandler, task_id: str, context: ServerCallContext) -> bool:
    """A2A CancelTask on ``handler``; False when the task had already ended or is unknown."""
    try:
        await handler.on_cancel_task(CancelTaskRequest(id=task_id), context)
    except (TaskNotCancelableError, TaskNotFoundError):
        return False
    return True
