"""The bridge from an agent runtime (``gateway.runtime``) to the A2A task lifecycle."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any, Protocol, runtime_checkable

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext, SimpleRequestContextBuilder
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.id_generator import IDGenerator
from a2a.server.owner_resolver import resolve_user_scope
from a2a.server.tasks.task_store import TaskStore
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, Task, TaskState
from a2a.utils.errors import InvalidParamsError
from google.protobuf.struct_pb2 import Struct, Value

from gateway.auth.policy import Identity, caller_of
from gateway.errors import PermissionDeniedError
from gateway.hosting import cleanup
from gateway.hosting.data_parts import data_value
from gateway.runtime import AgentCall, FileInput, FileOutput, Reply, Runtime, Turn
from gateway.telemetry.access import message_skill, note_task

logger = logging.getLogger(__name__)


def data_part(data: dict[str, Any] | list[Any]) -> Part:
    """A protobuf data part holding JSON-like ``data``."""
    value = Value()
    if isinstance(data, dict):
        value.struct_value.update(data)
    else:
        value.list_value.extend(data)
    return Part(data=value, media_type="application/json")


def _file(part: Part) -> FileInput:
    name = part.filename or "file"
    if part.url:
        return FileInput(name=name, media_type=part.media_type, url=part.url)
    raw = bytes(part.raw)
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return FileInput(name=name, media_type=part.media_type, text=text, raw=raw)


def _text(message: Message) -> str:
    return "\n".join(p.text for p in message.parts if p.HasField("text"))


def message_input(message: Message) -> tuple[str, tuple[FileInput, ...], tuple[dict[str, Any], ...]]:
    """The text, files and data parts of ``message`` (a data part that is not an object comes as ``{"items"}``)."""
    files = tuple(_file(p) for p in message.parts if p.HasField("raw") or p.HasField("url"))
    data = []
    for part in message.parts:
        if part.HasField("data"):
            value = data_value(part.data)
            data.append(value if isinstance(value, dict) else {"items": value})
    return _text(message), files, tuple(data)


def call_from_context(context: RequestContext) -> AgentCall:
    """What the caller sent, reduced to an ``AgentCall``."""
    message = context.message or Message()
    text, files, data = message_input(message)
    history: tuple[Turn, ...] = ()
    if context.current_task is not None:
        history = tuple(
            Turn(role="user" if m.role == Role.ROLE_USER else "agent", text=_text(m))
            for m in context.current_task.history
            if m.message_id != message.message_id
        )
    return AgentCall(
        text=text,
        files=files,
        data=data,
        history=history,
        task_id=context.task_id or "",
        context_id=context.context_id or "",
        message_id=message.message_id,
        metadata=dict(context.metadata),
        owner=resolve_user_scope(context.call_context) if context.call_context is not None else "",
    )


RequestValidator = Callable[[SendMessageRequest], None]


def _numbers(values: Iterable[Value]) -> Iterable[float]:
    stack = list(values)
    while stack:
        value = stack.pop()
        kind = value.WhichOneof("kind")
        if kind == "number_value":
            yield value.number_value
        elif kind == "struct_value":
            stack.extend(value.struct_value.fields.values())
        elif kind == "list_value":
            stack.extend(value.list_value.values)


def check_finite(params: SendMessageRequest) -> None:
    """Refuse (invalid params) a message whose JSON values hold a number JSON cannot carry.

    Python's JSON parser reads ``1e400`` as infinity and ``NaN`` as itself, and binary protobuf
    (gRPC) carries both; stored in a task, they made every JSON answer holding it fail (-32603).
    """
    structs: list[Struct] = [params.metadata, params.message.metadata]
    structs += [part.metadata for part in params.message.parts if part.HasField("metadata")]
    values = [v for struct in structs for v in struct.fields.values()]
    values += [part.data for part in params.message.parts if part.HasField("data")]
    for number in _numbers(values):
        if not math.isfinite(number):
            raise InvalidParamsError(
                message=f"the message holds the number {number}: JSON values (data parts, metadata) must be finite"
            )


def limit_parts(max_parts: int, then: RequestValidator | None = None) -> RequestValidator:
    """A check refusing a message of more than ``max_parts`` parts (each file is one), then ``then``'s.

    Agents do work per part (the style reviewer runs ruff once per file), so the parts a request
    may carry are bounded whatever its size in bytes. A number JSON cannot carry is refused too
    (``check_finite``).
    """

    def validate(params: SendMessageRequest) -> None:
        count = len(params.message.parts)
        if count > max_parts:
            raise InvalidParamsError(
                message=f"the message has {count} parts (files count one each); at most {max_parts} are "
                "accepted per request: send fewer, or split the work over several requests"
            )
        check_finite(params)
        if then is not None:
            then(params)

    return validate


@runtime_checkable
class ValidatesRequests(Protocol):
    """An executor that checks a message before any task exists for it."""

    def validate_request(self, params: SendMessageRequest) -> None:
        """Raise the protocol's error (``InvalidParamsError``) for a message the agent cannot work on."""


@runtime_checkable
class ChecksReadiness(Protocol):
    """An executor that may need a round trip to know it can take a message (a relay rechecking its peer's card)."""

    async def check_ready(self) -> None:
        """Raise the protocol's error when the agent cannot take work now; before any task exists for it."""


async def check_ready(executor: object) -> None:
    """``executor``'s readiness check, when it has one."""
    if isinstance(executor, ChecksReadiness):
        await executor.check_ready()


class TaskContextBuilder(SimpleRequestContextBuilder):
    """Gives a follow-up that names only its ``taskId`` the stored task's context.

    The spec says the context is inferred from the task; the SDK (1.3) invents a fresh one, so
    the agent's events would carry a context that does not match the task's. With ``validate``
    (an executor's ``validate_request``), a message is checked first, then the ``executor``'s
    readiness (``ChecksReadiness``): a bad one gets the protocol's error and leaves no task
    behind. ``task_ids`` mints new tasks' ids (the store's ``new_ids``, so that it knows them
    absent without a query).
    """

    def __init__(
        self,
        task_store: TaskStore,
        validate: RequestValidator | None = None,
        task_ids: IDGenerator | None = None,
        executor: object = None,
    ) -> None:
        super().__init__(task_id_generator=task_ids)
        self._tasks = task_store
        self._validate = validate
        self._executor = executor

    async def build(
        self,
        context: ServerCallContext,
        params: SendMessageRequest | None = None,
        task_id: str | None = None,
        context_id: str | None = None,
        task: Task | None = None,
    ) -> RequestContext:
        """The request context, with ``context_id`` taken from the task when the message names none."""
        if params is not None and self._validate is not None:
            self._validate(params)
        if params is not None:
            await check_ready(self._executor)
        if params is not None and task_id and not context_id:
            stored = task or await self._tasks.get(task_id, context)
            if stored is not None and stored.context_id:
                context_id = stored.context_id
        built = await super().build(context=context, params=params, task_id=task_id, context_id=context_id, task=task)
        if built.task_id:
            note_task(built.task_id, message_skill(params.message) if params is not None else "")
        return built


class UpdaterEmitter:
    """The ``Emitter`` a runtime sees, writing to the task's event queue."""

    def __init__(self, updater: TaskUpdater) -> None:
        self._updater = updater

    async def progress(self, text: str) -> None:
        """A working status update carrying ``text``."""
        await self._updater.update_status(
            TaskState.TASK_STATE_WORKING, self._updater.new_agent_message([Part(text=text)])
        )

    async def artifact(
        self,
        name: str,
        *,
        text: str | None = None,
        data: dict[str, Any] | list[Any] | None = None,
        append: bool = False,
        last_chunk: bool | None = None,
        metadata: dict[str, Any] | None = None,
        file: FileOutput | None = None,
    ) -> None:
        """An artifact (or a chunk of one, with ``append``), named ``name``."""
        parts = ([Part(text=text)] if text is not None else []) + ([data_part(data)] if data is not None else [])
        if file is not None:
            parts.append(Part(raw=file.raw, media_type=file.media_type, filename=file.name))
        await self._updater.add_artifact(
            parts, artifact_id=name, name=name, metadata=metadata, append=append or None, last_chunk=last_chunk
        )


METADATA_KEY = "switchboard"
"""The key of the gateway's own entry in message metadata (step links, usage, handoffs)."""


def reply_metadata(reply: Reply, *, retryable: bool = False, reason: str = "") -> dict[str, Any]:
    """What orchestration reads from a finished task's status message, as message metadata.

    ``{"switchboard": {"usage": {"input_tokens", "output_tokens", "cost"}, "handoff": {"to", "note"},
    "retryable": true, "reason": "..."}}``, each entry present only when it applies: ``reason`` with
    ``retryable``, or alone for a refusal (``permission-denied``, which fails an enclosing run).
    """
    entry: dict[str, Any] = {}
    if reply.usage is not None:
        usage = reply.usage
        entry["usage"] = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens, "cost": usage.cost}
    if reply.handoff_to:
        entry["handoff"] = {"to": reply.handoff_to, "note": reply.handoff_note}
    if retryable:
        entry.update(retryable=True, reason=reason)
    elif reason == PermissionDeniedError.reason:
        entry["reason"] = reason
    return {METADATA_KEY: entry} if entry else {}


_FINISH = {
    "completed": TaskUpdater.complete,
    "input-required": TaskUpdater.requires_input,
    "failed": TaskUpdater.failed,
    "rejected": TaskUpdater.reject,
}


async def finish(updater: TaskUpdater, reply: Reply, metadata: dict[str, Any] | None = None) -> None:
    """Emit the reply's artifacts, then move the task to the reply's state.

    The status message carries ``metadata`` (see ``reply_metadata``) when there is any.
    """
    if reply.state == "completed":
        emitter = UpdaterEmitter(updater)
        if reply.data is not None:
            await emitter.artifact(reply.artifact_name, data=reply.data)
        elif reply.text:
            await emitter.artifact(reply.artifact_name, text=reply.text)
    message = None
    if reply.text or metadata:
        message = updater.new_agent_message([Part(text=reply.text)], metadata=metadata or None)
    await _FINISH[reply.state](updater, message)


ReuseCheck = Callable[[Identity | None, str], str | None]
"""Why a caller may not have an agent run the logic at an entry point in-process (``AuthPolicy.may_reuse``)."""

CallCheck = Callable[[Identity | None, str], str | None]
"""Why a caller may not have an agent hand its work to (or call) another agent by name (``AuthPolicy.may_call``)."""


class RuntimeExecutor(AgentExecutor):
    """Runs a ``Runtime`` for each message and reports it as an A2A task.

    With ``reuse``, the runtime's ``AgentCall.may_reuse`` checks the task's caller, and with ``calls`` its
    ``AgentCall.may_call`` (else nobody is refused).
    """

    def __init__(
        self, name: str, runtime: Runtime, reuse: ReuseCheck | None = None, calls: CallCheck | None = None
    ) -> None:
        self.name = name
        self._runtime = runtime
        self._reuse = reuse
        self._calls = calls

    def _call(self, context: RequestContext) -> AgentCall:
        call = call_from_context(context)
        # no call context, no caller: checked as the anonymous caller, whom protected agents refuse
        caller = caller_of(context.call_context.user) if context.call_context is not None else None
        reuse, calls = self._reuse, self._calls
        if reuse is not None:
            call = replace(call, reuse_refusal=lambda entrypoint: reuse(caller, entrypoint))
        if calls is not None:
            call = replace(call, call_refusal=lambda agent: calls(caller, agent))
        return call

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Create the task if new, mark it working, run the runtime, publish its outcome."""
        task_id, context_id = context.task_id or "", context.context_id or ""
        updater = TaskUpdater(event_queue, task_id, context_id)
        if context.current_task is None:
            history = [context.message] if context.message else []
            await event_queue.enqueue_event(
                new_task(task_id, context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
        await updater.start_work()
        retryable, reason = False, ""
        try:
            reply = await self._runtime(self._call(context), UpdaterEmitter(updater))
        except PermissionDeniedError as exc:  # the caller may not have this agent run what it reuses
            logger.warning("agent %s refused task %s: %s", self.name, task_id, exc.detail)
            reply, reason = Reply(text=f"{self.name}: {exc.detail}", state="failed"), exc.reason
        except Exception as exc:
            # An agent's bug fails its task with a reason; it never leaves the task running. An error
            # that says it is retryable (an overloaded model) says so in the metadata, for the engine.
            logger.exception("agent %s failed on task %s", self.name, task_id)
            reply = Reply(text=f"{self.name} failed: {type(exc).__name__}: {exc}", state="failed")
            retryable = getattr(exc, "retryable", False) is True
            reason = str(getattr(exc, "reason", "") or type(exc).__name__)
        if not isinstance(reply, Reply):
            reply = Reply(text=f"{self.name} returned {type(reply).__name__}, not a Reply", state="failed")
        await finish(updater, reply, reply_metadata(reply, retryable=retryable, reason=reason))

    async def forget(self, task_id: str) -> None:
        """Task ``task_id`` was canceled while no run held it (it waited for input): the runtime may let go
        of what it kept for the task's next turn (a paused framework run, a thread waiting on the answer),
        if it has a ``forget(task_id)`` coroutine."""
        forget = getattr(self._runtime, "forget", None)
        if forget is not None:
            await forget(task_id)

    async def aclose(self) -> None:
        """The gateway stops: the runtime lets go of what it holds beyond a run (a framework's runner, its
        sessions, its threads), if it has an ``aclose()`` coroutine. A failure is logged; the stop goes on."""
        close = getattr(self._runtime, "aclose", None)
        if close is None:
            return
        try:
            await cleanup.finish(close())
        except Exception:  # one agent's cleanup must not keep the others' from running
            logger.exception("agent %s did not close cleanly", self.name)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task canceled (the SDK has already cancelled the running ``execute``)."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(updater.new_agent_message([Part(text=f"{self.name}: canceled on request")]))
