"""Local tasks: a message run on a hosted agent's executor in this process, without the SDK's request handler.

An orchestration step or an MCP tool call on an agent hosted here needs the agent's work and an
A2A task that records it, not a wire protocol: the SDK's request handler adds an active-task
registry, two event queues, a consumer task and a save per event (3-4 ms of CPU per task here),
which a fan-out of 100 steps cannot afford. ``LocalRunner`` runs the agent's own
``AgentExecutor`` on a ``TaskEventQueue`` (the SDK's way to run an executor outside its
framework: a custom ``EventQueue``), which applies each event to the task in memory as the SDK's
task manager would, and writes the task to the agent's store twice: when it starts (working,
with the caller's message) and when it ends or waits for input, each time with the task's push
notifications in the same transaction (``SaveTask``: the outbox of ``gateway.push``). The task is
an ordinary task of the agent, owned by the caller: ``GetTask``, ``ListTasks`` and ``CancelTask``
on the agent's URL see it (``LocalRequestHandler`` routes a cancel of a running local task here).

Agents with in-process executors (``python`` and ``llm`` runtimes) and remote agents (``a2a``: the
relay runs here, the agent's work at its peer) run this way; workflows keep the handler path. An
A2A message that starts a new task on a ``RuntimeExecutor`` agent runs this way too
(``LocalRequestHandler``): a streaming call to the no-op agent then takes less time here than on
the SDK's own server (``tests/benchmarks/bench_federation.py``).
The events of a running local task reach the caller that started it and live subscribers on
this process (``SubscribeToTask`` on the agent's URL, through ``LocalRequestHandler``); on
PostgreSQL also those on other replicas, and a cancel asked for on another replica reaches the
runner (``gateway.hosting.cluster``). An agent that answers with a message instead of a task completes its task
with that message as the status message.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event, EventQueue
from a2a.server.id_generator import IDGenerator, IDGeneratorContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.server.tasks.task_store import TaskStore
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)
from a2a.utils.errors import (
    InvalidAgentResponseError,
    InvalidParamsError,
    TaskNotFoundError,
    UnsupportedOperationError,
)
from a2a.utils.input_mode_validator import validate_input_modes
from a2a.utils.task import apply_history_length, validate_history_length

from gateway.auth.policy import RunOwner
from gateway.errors import StoreUnavailableError
from gateway.hosting.admission import Admission, Ticket
from gateway.hosting.cache import ResultCache
from gateway.hosting.cleanup import CLEANUP_TIMEOUT_S, finish
from gateway.hosting.cluster import AgentLog
from gateway.hosting.executor import RequestValidator, ValidatesRequests, check_ready, reply_metadata
from gateway.hosting.nul_text import refuse_nul
from gateway.hosting.required_fields import validate_required_fields
from gateway.runtime import Reply
from gateway.store.tasks import INTERRUPTIBLE, ON_RUN_END, RunEnd, TaskEndedElsewhereError, task_runner
from gateway.telemetry import tracing
from gateway.telemetry.access import message_skill, note_task

logger = logging.getLogger(__name__)

Progress = Callable[[str], Awaitable[None]]
Watcher = asyncio.Queue[Event | None]
Started = Callable[[Task], Awaitable[None]]
SaveTask = Callable[[Task, ServerCallContext], Awaitable[None]]
"""Saves a task (and queues its push notifications in the same transaction: ``OutboxPushSender.save_and_notify``)."""

CacheLookup = tuple[str | None, Task | None]
"""A request's cache key (None: not cacheable) and the task answering it from the cache (None: a miss)."""

CANCEL_WAIT_S = 10.0
SAVE_RETRY_S = 120.0
"""How long a run's outcome is saved again and again while the task store is unreachable (a database restart)."""
_CLEANUP_PASSES = 3
SUBSCRIBER_BUFFER = 1024
"""How far a subscriber may fall behind a running task before it is dropped (as the SDK's ``max_queue_size``)."""
"""How long a cancel waits for the agent to stop before it reports the task canceled anyway."""

ENDED = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
        TaskState.TASK_STATE_INPUT_REQUIRED,
        TaskState.TASK_STATE_AUTH_REQUIRED,
    }
)
"""States after which a local task's work is over (terminal, or waiting for the caller)."""
TERMINAL = ENDED - {TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED}
WAITING = ENDED - TERMINAL
"""States in which a task waits for the caller's next message."""


def not_waiting(task_id: str, state: str) -> UnsupportedOperationError:
    """The error for a message to a task that does not wait for one (A2A's for a message to a finished task)."""
    return UnsupportedOperationError(message=f"Task {task_id} is {state}, not waiting for input")


class Answers:
    """The tasks of one agent being answered right now: one answer per waiting task wins.

    A message that continues a task claims it before its first ``await``, so of two answers sent
    at once the second finds the claim (``UnsupportedOperationError``) instead of a task that still
    looks waiting in the store. The claim lasts until the answer's turn is over (the task saved
    finished, or waiting again); the agent's runner and its request handler share one ``Answers``.
    """

    def __init__(self) -> None:
        self._claimed: set[str] = set()

    def claim(self, task_id: str) -> Callable[[], None]:
        """Claim ``task_id`` for one answer; the function that releases the claim."""
        if task_id in self._claimed:
            raise not_waiting(task_id, "being answered by another message")
        self._claimed.add(task_id)
        return lambda: self._claimed.discard(task_id)

    @contextmanager
    def claimed(self, task_id: str) -> Iterator[None]:
        """``claim`` for the duration of the block."""
        release = self.claim(task_id)
        try:
            yield
        finally:
            release()


async def _no_progress(text: str) -> None:
    return None


def _agent_message(task: Task, text: str) -> Message:
    return Message(
        role=Role.ROLE_AGENT,
        message_id=str(uuid.uuid4()),
        task_id=task.id,
        context_id=task.context_id,
        parts=[Part(text=text)],
    )


def _set_status(task: Task, status: TaskStatus) -> None:
    """The task's new status; the previous status message moves to the history (as the SDK's task manager does)."""
    if task.status.HasField("message"):
        task.history.append(task.status.message)
    task.status.CopyFrom(status)
    if not task.status.HasField("timestamp"):
        task.status.timestamp.GetCurrentTime()


def _ending(task: Task, state: TaskState, text: str, metadata: dict[str, Any] | None = None) -> TaskStatusUpdateEvent:
    """The status update that ends ``task`` for an agent that did not (it failed, stopped or was canceled)."""
    status = TaskStatus(state=state)
    status.message.CopyFrom(_agent_message(task, text))
    if metadata:
        status.message.metadata.update(metadata)
    status.timestamp.GetCurrentTime()
    return TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id, status=status)


class TaskEventQueue(EventQueue):
    """The queue an executor writes to on the local path: each event updates the task in memory."""

    def __init__(self, task: Task, progress: Progress) -> None:
        self.task = task
        self._progress = progress
        self.watchers: list[asyncio.Queue[Event | None]] = []  # live subscribers (``LocalRunner.subscribe``)
        self._mode = ""  # "task" or "message", from the agent's first event (as the SDK's consumer checks)

    @property
    def ended(self) -> bool:
        """Whether the task reached a state that ends this run of it."""
        return self.task.status.state in ENDED

    async def enqueue_event(self, event: Event) -> None:
        """The agent's ``event``, checked (``_check_mode``) and applied; none is taken once the task has ended.

        Events after the end come from an agent still winding down after a cancel (dropped
        quietly) or from an agent that breaks the protocol (dropped with a warning).
        """
        if self.task.status.state in TERMINAL:
            if self.task.status.state != TaskState.TASK_STATE_CANCELED:
                logger.warning("dropped a %s sent after task %s ended", type(event).__name__, self.task.id)
            return
        self._check_mode(event)
        await self.apply(event)

    async def apply(self, event: Event) -> None:
        """Apply ``event`` to the task; a working status update's text goes to the caller as progress."""
        task = self.task
        if isinstance(event, Task):
            if event.id == task.id:
                task.CopyFrom(event)
        elif isinstance(event, TaskStatusUpdateEvent):
            if event.metadata:
                task.metadata.MergeFrom(event.metadata)
            _set_status(task, event.status)
            if event.status.state == TaskState.TASK_STATE_WORKING:
                text = "\n".join(p.text for p in event.status.message.parts if p.HasField("text"))
                if text:
                    await self._progress(text)
        elif isinstance(event, TaskArtifactUpdateEvent):
            append_artifact_to_task(task, event)
        elif isinstance(event, Message):
            status = TaskStatus(state=TaskState.TASK_STATE_COMPLETED)
            status.message.CopyFrom(event)
            status.message.task_id, status.message.context_id = task.id, task.context_id
            _set_status(task, status)
            event = TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id, status=task.status)
        for watcher in list(self.watchers):
            if watcher.full():
                self._drop(watcher)
            else:
                watcher.put_nowait(event)

    def _drop(self, watcher: Watcher) -> None:
        """A subscriber too far behind: its stream ends (as the SDK evicts one), the run never waits for it."""
        logger.warning("dropped a subscriber of task %s: %d events behind", self.task.id, watcher.qsize())
        self.watchers.remove(watcher)
        while not watcher.empty():
            watcher.get_nowait()
        watcher.put_nowait(None)

    def _check_mode(self, event: Event) -> None:
        """Refuse what the SDK refuses: a message after task events, or anything after a message."""
        if self._mode == "message":
            raise InvalidAgentResponseError(f"Received {type(event).__name__} after the agent's Message.")
        if isinstance(event, Message) and self._mode == "task":
            raise InvalidAgentResponseError(
                "Received Message object in task mode. Use TaskStatusUpdateEvent or TaskArtifactUpdateEvent instead."
            )
        self._mode = "message" if isinstance(event, Message) else "task"

    def close(self) -> None:
        """The run is over and its task saved: subscribers' streams end."""
        for watcher in list(self.watchers):
            if watcher.full():
                self._drop(watcher)
            else:
                watcher.put_nowait(None)


@dataclass(frozen=True)
class _Running:
    work: asyncio.Future[None]  # the executor's ``execute``
    saved: asyncio.Event  # set once the run's outcome is saved
    queue: TaskEventQueue
    request: RequestContext


class LocalRunner:
    """Runs messages on one hosted agent's executor as tasks in its store (see the module)."""

    def __init__(
        self,
        agent: str,
        executor: AgentExecutor,
        store: TaskStore,
        save: SaveTask | None = None,
        validate: RequestValidator | None = None,
        log: AgentLog | None = None,
    ) -> None:
        self.agent = agent
        self._log = log  # on PostgreSQL: each run's events go to the other replicas (``gateway.hosting.cluster``)
        self._executor = executor
        # ``validate`` checks each message first (default: the executor's own check, if it has one)
        self._validate = validate or (executor.validate_request if isinstance(executor, ValidatesRequests) else None)
        self._store = store
        self._save_task = save or store.save
        self._running: dict[str, _Running] = {}
        self.answers = Answers()
        self.cache: ResultCache | None = None
        """The agent's result cache (``gateway.hosting.cache``) when its file asks for one."""
        self.admission: Admission | None = None
        """The agent's concurrency caps (``gateway.hosting.admission``) when its file declares any."""

    def _new_id(self) -> str:
        """A new task's id: minted by the store when it mints ids (it then knows the id is nowhere yet)."""
        ids = getattr(self._store, "new_ids", None)
        return ids.generate(IDGeneratorContext()) if isinstance(ids, IDGenerator) else str(uuid.uuid4())

    def is_running(self, task_id: str) -> bool:
        """Whether task ``task_id`` is working on this path right now."""
        return task_id in self._running

    def running_ids(self) -> list[str]:
        """The ids of the tasks working on this path right now."""
        return list(self._running)

    async def run(
        self,
        message: Message,
        context: ServerCallContext,
        progress: Progress | None = None,
        *,
        started: Started | None = None,
        watcher: Watcher | None = None,
    ) -> Task:
        """Run ``message`` to the task's end (or until it waits for input) and return the task.

        A message naming a ``task_id`` continues that task, which must be waiting for input
        (``TaskNotFoundError`` when the caller has no such task, ``UnsupportedOperationError`` when
        it is not waiting, or another answer to it is under way). ``started`` gets the task once it
        is saved working (the caller learns its id before the agent's first event); ``progress`` gets
        the text of each working status update. Cancelling the calling asyncio task cancels the
        agent's work, leaves the task canceled and raises. A message the agent refuses
        (``ValidatesRequests``) raises its error and leaves no task. ``watcher`` gets each of the
        agent's events as it is applied, then None once the run's outcome is saved (as ``subscribe``
        does for a subscriber who comes later). When another gateway process ended the task while it
        ran here (this one paused or cut off from the database), the run stops, its outcome is not
        saved, and the task as stored is returned (and comes to ``watcher`` as a ``Task``, last).
        """
        with tracing.span(f"task {self.agent}", attributes={"a2a.agent": self.agent}):
            if message.task_id:
                with self.answers.claimed(message.task_id):
                    return await self._admitted(message, context, progress, started, watcher)
            cache = self.cache
            key = cache.key(message, context) if cache is not None else None
            if cache is None or key is None:
                return await self._admitted(message, context, progress, started, watcher)
            hit = cache.answer(key, message, context)
            if hit is not None:
                return await self._answered(hit, message, context, started, watcher)
            task = await self._admitted(message, context, progress, started, watcher)
            cache.keep(key, task, context)
            return task

    async def _admitted(
        self,
        message: Message,
        context: ServerCallContext,
        progress: Progress | None,
        started: Started | None,
        watcher: Watcher | None,
    ) -> Task:
        """``_run`` holding one of the agent's slots (``AgentBusyError`` before any task exists when none is free)."""
        if self.admission is None:
            return await self._run(message, context, progress, started, watcher)
        ticket = await self.admission.enter(context.user.user_name)
        try:
            return await self._run(message, context, progress, started, watcher)
        finally:
            ticket.release()

    async def _answered(
        self, hit: Task, message: Message, context: ServerCallContext, started: Started | None, watcher: Watcher | None
    ) -> Task:
        """A task answered from the cache: saved once, already completed; told as a run's start and end would be."""
        message.task_id, message.context_id = hit.id, hit.context_id
        await self._store.save(hit, context)
        note_task(hit.id, message_skill(message))
        if started is not None:
            await started(hit)
        if watcher is not None:
            watcher.put_nowait(hit)
        return hit

    async def _run(
        self,
        message: Message,
        context: ServerCallContext,
        progress: Progress | None,
        started: Started | None,
        watcher: Watcher | None,
    ) -> Task:
        request_params = SendMessageRequest(message=message)
        if self._validate is not None:
            self._validate(request_params)
        await check_ready(self._executor)
        stored = await self._continued(message, context) if message.task_id else None
        if stored is None:
            message.task_id = self._new_id()
            message.context_id = message.context_id or str(uuid.uuid4())
            task = Task(id=message.task_id, context_id=message.context_id)
        else:
            task = Task()
            task.CopyFrom(stored)
            message.context_id = task.context_id
        note_task(task.id, message_skill(message))
        if task.status.HasField("message"):
            task.history.append(task.status.message)
            task.status.ClearField("message")
        task.history.append(message)
        _set_status(task, TaskStatus(state=TaskState.TASK_STATE_WORKING))
        first = asyncio.ensure_future(self._save(task, context))
        try:
            await asyncio.shield(first)
        except asyncio.CancelledError:
            await finish(self._never_started(first, task, context))
            raise
        except TaskEndedElsewhereError as exc:  # an answer to a task another replica ended just now
            raise not_waiting(task.id, "ended") from exc
        request = RequestContext(context, request_params, task.id, task.context_id, task=stored)
        queue = TaskEventQueue(task, progress or _no_progress)
        if watcher is not None:
            queue.watchers.append(watcher)
        publishing = None
        if self._log is not None and self._log.active:
            published: Watcher = asyncio.Queue()  # unbounded: the run never drops what other replicas follow
            queue.watchers.append(published)
            stop = partial(self._ended_elsewhere, task.id)
            publishing = asyncio.ensure_future(self._log.publish(task, context, published, stop))
        work: asyncio.Future[None] = asyncio.ensure_future(self._executor.execute(request, queue))
        saved = asyncio.Event()  # set once the run's outcome is saved
        self._running[task.id] = _Running(work, saved, queue, request)
        try:
            await self._follow(work, request, queue, started)
        finally:  # also when the caller was canceled: its cancel goes on once the outcome is saved
            try:
                await finish(self._save_outcome(task, queue, context), SAVE_RETRY_S + CLEANUP_TIMEOUT_S)
            finally:
                self._running.pop(task.id, None)
                saved.set()
                queue.close()
                if publishing is not None:  # the run's ending events are out before its caller hears of them
                    await finish(publishing)
        return task

    def _ended_elsewhere(self, task_id: str) -> None:
        """Another gateway process ended task ``task_id`` while it ran here (this one was paused or cut off):
        its execution here stops; its outcome will not be saved (``TaskEndedElsewhereError``)."""
        running = self._running.get(task_id)
        if running is not None and not running.work.done():
            logger.warning(
                "task %s of %s was ended by another gateway process; its run here stops",
                task_id,
                self.agent,
            )
            running.work.cancel()

    async def cancel(self, task_id: str) -> bool:
        """Cancel local task ``task_id`` if it is running; whether it was. Returns once the task is saved canceled."""
        running = self._running.get(task_id)
        if running is None or running.work.done():
            return False
        # As the SDK does: the executor's cancel first (a relay cancels at its peer), then stop its work;
        # both happen even when this request is itself canceled (an RPC the client gave up on).
        try:
            await finish(self._report_cancel(running.request, running.queue))
        finally:
            running.work.cancel()
        try:
            await asyncio.wait_for(running.saved.wait(), CANCEL_WAIT_S)
        except TimeoutError:
            logger.warning("agent %s did not stop within %gs of canceling task %s", self.agent, CANCEL_WAIT_S, task_id)
        return True

    async def _report_cancel(self, request: RequestContext, queue: TaskEventQueue) -> None:
        """Let the executor cancel and report it (``AgentExecutor.cancel``, bounded); never leave the task running."""
        task = queue.task
        if task.status.state not in TERMINAL:
            try:
                await asyncio.wait_for(self._executor.cancel(request, queue), CANCEL_WAIT_S)
            except Exception as exc:
                logger.warning("agent %s could not report the cancel of task %s: %s", self.agent, task.id, exc)
        if task.status.state not in TERMINAL:
            await queue.apply(_ending(task, TaskState.TASK_STATE_CANCELED, f"{self.agent}: canceled on request"))

    async def _never_started(self, first: asyncio.Future[None], task: Task, context: ServerCallContext) -> None:
        """The caller was canceled while the task's first save ran: once it is written, write it canceled."""
        try:
            await first
        except Exception:
            return  # not written: nothing to leave behind
        _set_status(task, _ending(task, TaskState.TASK_STATE_CANCELED, f"{self.agent}: canceled on request").status)
        await self._save(task, context)

    def subscribe(self, task_id: str) -> AsyncIterator[Event] | None:
        """A running task's events from now on, after a snapshot of the task; None when it is not running here."""
        running = self._running.get(task_id)
        if running is None:
            return None
        queue = running.queue
        watcher: Watcher = asyncio.Queue(SUBSCRIBER_BUFFER)
        queue.watchers.append(watcher)
        snapshot = Task()
        snapshot.CopyFrom(queue.task)

        async def events() -> AsyncIterator[Event]:
            try:
                yield snapshot
                while (event := await watcher.get()) is not None:
                    yield event
            finally:
                if watcher in queue.watchers:
                    queue.watchers.remove(watcher)

        return events()

    async def _continued(self, message: Message, context: ServerCallContext) -> Task:
        task = await self._store.get(message.task_id, context)
        if task is None:
            raise TaskNotFoundError(f"Task {message.task_id} not found")
        if message.context_id and message.context_id != task.context_id:
            raise InvalidParamsError(
                message=f"Context {message.context_id} does not match context {task.context_id} of task {task.id}"
            )
        if task.status.state != TaskState.TASK_STATE_INPUT_REQUIRED or self.is_running(task.id):
            raise not_waiting(task.id, TaskState.Name(task.status.state))
        return task

    async def _follow(
        self, work: asyncio.Future[None], request: RequestContext, queue: TaskEventQueue, started: Started | None
    ) -> None:
        """Wait for the executor; on cancel let it report (``AgentExecutor.cancel``); never leave the task working.

        Raises the caller's own cancel (asyncio's or an anyio scope's) once the cancel is reported.
        """
        task = queue.task
        try:
            if started is not None:
                await _told(started, task)
            await work
        except _NotToldError as exc:
            # The caller cannot follow the task it asked for: stop the work as a cancel does (a relay
            # cancels at its peer). The agent did not fail, so the task ends canceled, not failed.
            logger.warning(
                "task %s of %s canceled: its caller could not be told it started: %s", task.id, self.agent, exc
            )
            work.cancel()
            await finish(self._report_cancel(request, queue))
            return
        except asyncio.CancelledError:
            work.cancel()  # when the cancel came while ``started`` ran
            # Canceled by CancelTask (``cancel`` has reported it) or with the caller (then raised on, after the save).
            await finish(self._report_cancel(request, queue))
            caller = asyncio.current_task()
            if caller is not None and caller.cancelling() > 0:
                raise
            return
        except Exception as exc:
            # As the SDK does for an executor that raises: the task fails, with the reason; and, as
            # RuntimeExecutor does, its status says whether trying again may help (a peer that is down).
            logger.exception("agent %s failed on task %s", self.agent, task.id)
            text = f"{self.agent} failed: {type(exc).__name__}: {exc}"
            retryable = getattr(exc, "retryable", False) is True
            why = str(getattr(exc, "reason", "") or type(exc).__name__)
            metadata = reply_metadata(Reply(state="failed"), retryable=retryable, reason=why)
            if task.status.state not in TERMINAL:
                await queue.apply(_ending(task, TaskState.TASK_STATE_FAILED, text, metadata))
            return
        if not queue.ended:
            state = TaskState.Name(task.status.state)
            reason = f"{self.agent} stopped in {state}, without a final state"
            await queue.apply(_ending(task, TaskState.TASK_STATE_FAILED, reason))

    async def _save(self, task: Task, context: ServerCallContext) -> None:
        await self._save_task(task, context)

    async def _save_outcome(self, task: Task, queue: TaskEventQueue, context: ServerCallContext) -> None:
        """The run's last save, tried again while the store is unreachable (``SAVE_RETRY_S``): an acknowledged
        task is not left working because PostgreSQL restarted while it ran.

        A task another process ended meanwhile keeps that end: the run's task becomes the stored one,
        and its watchers get it last (it voids the end they were given before).
        """
        delay, deadline = 0.1, asyncio.get_running_loop().time() + SAVE_RETRY_S
        while True:
            try:
                await self._save(task, context)
                return
            except TaskEndedElsewhereError:
                stored = await self._store.get(task.id, context)
                logger.warning(
                    "task %s of %s was ended by another gateway process (%s); its outcome here is not saved",
                    task.id,
                    self.agent,
                    TaskState.Name(stored.status.state) if stored is not None else "deleted",
                )
                if stored is not None:
                    await queue.apply(stored)
                return
            except StoreUnavailableError:
                if asyncio.get_running_loop().time() + delay > deadline:
                    raise
                logger.warning("task %s of %s: the store is unreachable; saving its outcome again", task.id, self.agent)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


class _NotToldError(Exception):
    """A run's ``started`` callback failed: the caller could not be told its task exists."""


async def _told(started: Started, task: Task) -> None:
    try:
        await started(task)
    except Exception as exc:
        raise _NotToldError(f"{type(exc).__name__}: {exc}") from exc


class LocalRequestHandler(DefaultRequestHandler):
    """The SDK's request handler, aware of the agent's ``LocalRunner``.

    With ``new_tasks_on_runner`` (an executor that always answers with a task, never with a bare
    message, as ``RuntimeExecutor`` does: the runner would record a message reply as a task), a
    message that starts a new task (no ``taskId``, no ``returnImmediately``, no push config in its
    configuration) runs on the runner, detached from the request as the SDK's handler runs
    it: a caller who disconnects leaves the task working, to be read, subscribed to or canceled.
    The runner writes the task twice (working, then its outcome) where the SDK's handler writes it
    on every event through its active-task machinery; a stream gets the agent's events as they
    come and the one that ends the run once its outcome is saved, so a ``GetTask`` after it reads
    what the stream said. Every other message (a follow-up, a push config to store with it, an
    early return) goes through the SDK; a follow-up first claims its task (``Answers``, shared with
    the runner), which must be waiting for input, so of two answers at once only one runs. A
    ``CancelTask`` for a task running on the runner stops its executor (the SDK's handler would
    only write CANCELED to the store, and the runner's final save would overwrite it); a
    ``SubscribeToTask`` follows it on the runner.
    """

    def __init__(
        self, *args: Any, local: LocalRunner | None = None, new_tasks_on_runner: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.local = local
        self._new_tasks = local if new_tasks_on_runner else None
        self._runs: set[asyncio.Future[Task]] = set()
        self._answers = local.answers if local is not None else Answers()
        self._turns: set[asyncio.Task[None]] = set()  # answers' turns read on after their caller left
        self.log: AgentLog | None = None
        """On PostgreSQL, tasks running on other replicas are followed and canceled through it (``cluster``)."""
        self.cache: ResultCache | None = None
        """The agent's result cache, for messages the SDK's path runs (the runner has its own reference)."""
        self.admission: Admission | None = None
        """The agent's concurrency caps, for messages the SDK's path runs (the runner has its own reference)."""
        self._slots: set[asyncio.Future[Any]] = set()  # slots given back when their SDK run ends

    def _on_runner(self, params: SendMessageRequest) -> LocalRunner | None:
        """The runner when it takes this message (see the class); None when the SDK does."""
        config = params.configuration
        if params.message.task_id or config.return_immediately or config.HasField("task_push_notification_config"):
            return None
        return self._new_tasks

    def _start(
        self, local: LocalRunner, params: SendMessageRequest, context: ServerCallContext, watcher: Watcher | None = None
    ) -> asyncio.Future[Task]:
        """Check ``params`` as the SDK does, then run its message on ``local``, detached from the caller."""
        validate_required_fields(params)  # what the SDK's handler checks first, planned once per type
        validate_history_length(params.configuration)
        if self._validate_input_modes:
            validate_input_modes(params.message, self._agent_card)
        run = asyncio.ensure_future(local.run(params.message, context, watcher=watcher))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        run.add_done_callback(_retrieve)
        if watcher is not None:
            run.add_done_callback(lambda _: watcher.put_nowait(None))  # also when it failed before any event
        return run

    def _refuse_while_unreachable(self) -> None:
        """``StoreUnavailableError`` (retryable) while the shared store is unreachable: no work is accepted then."""
        db = getattr(self.task_store, "db", None)
        if db is not None and not db.available:
            raise StoreUnavailableError

    async def on_message_send(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        """A new task on the runner: its outcome once saved; any other message through the SDK."""
        refuse_nul(params)  # before the cache or a follow-up's task is looked up
        self._refuse_while_unreachable()
        local = self._on_runner(params)
        if local is not None:
            task = await asyncio.shield(self._start(local, params, context))
            return apply_history_length(task, params.configuration)
        key, hit = await self._from_cache(params, context)
        if hit is not None:
            return apply_history_length(hit, params.configuration)
        ticket = await self._admit(context)
        context = _releasing(context, ticket)
        try:
            if params.message.task_id:
                result = await self._answer(params, context)
            else:
                result = await super().on_message_send(params, context)
        except BaseException:
            _release(ticket)
            raise
        await self._release_when_done(ticket, _event_task_id(result) or params.message.task_id)
        if key is not None and self.cache is not None and isinstance(result, Task):
            self.cache.keep(key, result, context)
        return result

    async def on_message_send_stream(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        """A new task on the runner: its events, the last once saved; any other message through the SDK."""
        refuse_nul(params)
        self._refuse_while_unreachable()
        local = self._on_runner(params)
        if local is not None and self._agent_card.capabilities.streaming:
            async for event in self._stream_on_runner(local, params, context):
                yield event
            return
        key, hit = await self._from_cache(params, context)
        if hit is not None:
            yield _shown(hit, params)
            return
        ticket = await self._admit(context)
        context = _releasing(context, ticket)
        task_id = params.message.task_id
        try:
            stream = self._stream_answer if params.message.task_id else super().on_message_send_stream
            events = stream(params, context)
            if self.log is not None and self.log.active:  # a run stopped by an outage may resume on another replica
                events = self._followed_on(events, context)
            async for event in events:
                task_id = task_id or _event_task_id(event)
                yield event
        finally:
            await self._release_when_done(ticket, task_id)
        if key is not None and self.cache is not None and task_id:
            ended = await self.task_store.get(task_id, context)
            if isinstance(ended, Task):
                self.cache.keep(key, ended, context)

    async def _followed_on(self, events: AsyncIterator[Event], context: ServerCallContext) -> AsyncIterator[Event]:
        """``events``; should they stop before the task's end because the store became unreachable (the run
        stops here then, and resumes from its checkpoint once the store is back, here or on another replica),
        the run's events from wherever it resumes, up to its end: the caller is told how the task ended."""
        task_id, ended = "", False
        try:
            async for event in events:
                task_id = task_id or _event_task_id(event)
                ended = _ends_run(event)
                yield event
        except StoreUnavailableError:
            if ended or not task_id or self.log is None:
                raise
            logger.warning("task %s: the store is unreachable; its stream follows the run where it resumes", task_id)
            async for event in self.log.follow_on(task_id, context, time.time_ns()):
                yield event

    async def _stream_answer(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        """A message that continues a task, streamed through the SDK, claimed until its turn is over."""
        release = await self._claim_waiting(params, context)
        answer = super().on_message_send_stream(params, context)
        try:
            async for event in answer:
                yield event
        finally:  # a caller who leaves early: its turn is read to its end, still claimed
            self._read_on(answer, release)

    async def _stream_on_runner(
        self, local: LocalRunner, params: SendMessageRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        watcher: Watcher = asyncio.Queue()
        run = self._start(local, params, context, watcher)
        ending: list[Event] = []  # held until the outcome is saved
        while (event := await watcher.get()) is not None:
            if ending and isinstance(event, Task):  # the task as stored: another process ended it first
                ending = [event]
            elif ending or _ends_run(event):
                ending.append(event)
            else:
                yield _shown(event, params)
        await run  # done by now: raises when the run failed (an unwritable store)
        for event in ending:
            yield _shown(event, params)

    async def _admit(self, context: ServerCallContext) -> Ticket | None:
        """A slot of the agent for the caller (``gateway.hosting.admission``); None without admission control."""
        return await self.admission.enter(context.user.user_name) if self.admission is not None else None

    async def _release_when_done(self, ticket: Ticket | None, task_id: str) -> None:
        """Give the slot back once the SDK's run of ``task_id`` (detached from the caller) has ended.

        Its save in an ending state gives it back first (``ON_RUN_END``); this is for a run that ends without one.
        """
        if ticket is None:
            return
        active = await self._active_task_registry.get(task_id) if task_id else None
        if active is None or active.is_finished:
            ticket.release()
            return
        ended = asyncio.ensure_future(active._is_finished.wait())
        self._slots.add(ended)
        ended.add_done_callback(self._slots.discard)
        ended.add_done_callback(lambda _: ticket.release())

    async def _from_cache(
        self, params: SendMessageRequest, context: ServerCallContext
    ) -> tuple[str | None, Task | None]:
        """The cache key of a new task the SDK's path would run (None: not cacheable), and the hit when there is one.

        A message with a push config is never answered from the cache: its caller waits for notifications.
        """
        cache = self.cache
        if cache is None or params.configuration.HasField("task_push_notification_config"):
            return None, None
        key = cache.key(params.message, context)
        hit = cache.answer(key, params.message, context) if key is not None else None
        if hit is not None:
            validate_required_fields(params)
            await cast(TaskStore, self.task_store).save(hit, context)
            note_task(hit.id, message_skill(params.message))
        return key, hit

    async def _answer(self, params: SendMessageRequest, context: ServerCallContext) -> Task | Message:
        """A message that continues a task, through the SDK, claimed until its turn is over (``Answers``).

        With ``returnImmediately`` the task is returned after the turn's first event, as the SDK
        returns it, and the rest of the turn is read in the background, still claimed.
        """
        release = await self._claim_waiting(params, context)
        if not (params.configuration.return_immediately and self._agent_card.capabilities.streaming):
            try:
                return await super().on_message_send(params, context)
            finally:
                release()
        answer = super().on_message_send_stream(params, context)
        try:
            first = await anext(answer, None)
        finally:
            self._read_on(answer, release)
        if isinstance(first, Message):
            return first
        task = await self.task_store.get(params.message.task_id, context)
        if task is None:
            raise TaskNotFoundError
        return apply_history_length(task, params.configuration)

    async def _claim_waiting(self, params: SendMessageRequest, context: ServerCallContext) -> Callable[[], None]:
        """Claim the task a message continues, which must be waiting for input; the claim's release."""
        task_id = params.message.task_id
        release = self._answers.claim(task_id)
        try:
            stored = await self.task_store.get(task_id, context)
        except BaseException:
            release()
            raise
        if stored is not None and stored.status.state not in WAITING:  # an unknown task: the SDK's error
            release()
            raise not_waiting(task_id, TaskState.Name(stored.status.state))
        return release

    def _read_on(self, answer: AsyncGenerator[Event, None], release: Callable[[], None]) -> None:
        """Read an answer's turn to its end in the background, then release its claim."""

        async def read() -> None:
            try:
                async for _ in answer:
                    pass
            except Exception as exc:
                logger.debug("the rest of an answer's turn failed: %s: %s", type(exc).__name__, exc)
            finally:
                release()
                await answer.aclose()

        turn = asyncio.ensure_future(read())
        self._turns.add(turn)
        turn.add_done_callback(self._turns.discard)

    async def aclose(self) -> None:
        """Stop the runs still working on the runner (each saved canceled), then the SDK's active tasks."""
        for run in list(self._runs):
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)
        await super().aclose()
        for turn in list(self._turns):
            turn.cancel()
        await asyncio.gather(*self._turns, return_exceptions=True)
        for slot in list(self._slots):
            slot.cancel()  # its done callback gives the slot back

    def join(self, log: AgentLog) -> None:
        """On PostgreSQL: follow and cancel tasks running on other replicas, and let them cancel ours."""
        self.log = log
        log.attach(self)

    async def runs_here(self, task_id: str) -> bool:
        """Whether task ``task_id`` runs in this process (on the runner or the SDK's path)."""
        if self.local is not None and self.local.is_running(task_id):
            return True
        return await self._active_task_registry.get(task_id) is not None

    async def cancel_here(self, task_id: str, owner: str) -> None:
        """Cancel task ``task_id`` of ``owner``, asked for on another replica, as a cancel here would."""
        try:
            await self.on_cancel_task(CancelTaskRequest(id=task_id), ServerCallContext(user=RunOwner(owner)))
        except Exception as exc:
            logger.warning("could not cancel task %s of %s for another replica: %s", task_id, owner, exc)

    async def on_cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        """Cancel a running local task on its runner; any other through the SDK.

        A cancel, once asked for, runs to its end even when its own request is canceled (a client
        that gives up on the call): a cancel stopped half-way could leave a task running at a peer.
        """
        refuse_nul(params)
        return await finish(self._cancel_task(params, context))

    async def _cancel_task(self, params: CancelTaskRequest, context: ServerCallContext) -> Task | None:
        if self.local is not None and self.local.is_running(params.id):
            task = await self.task_store.get(params.id, context)
            if task is None:
                raise TaskNotFoundError
            if await self.local.cancel(params.id):
                return await self.task_store.get(params.id, context) or task
        elif self.log is not None and self.log.active:
            # By the task's last writer, not this process's active tasks: one parked here waiting for input
            # may have been answered on another replica, which runs it now.
            task = await self.task_store.get(params.id, context)
            if task is not None and task.status.state in (*INTERRUPTIBLE, *WAITING):
                ended = await self.log.cancel_elsewhere(task, context)
                if ended is not None:
                    return ended
        if await self._parked(params.id, context):
            return await super().on_cancel_task(params, context)  # its agent's cancel, reported as every event
        task = await super().on_cancel_task(params, context)
        forget = getattr(self.agent_executor, "forget", None)
        if task is not None and forget is not None:  # the SDK ended it in the store, without its executor
            await forget(task.id)
        if task is not None and self._push_sender is not None:
            # Ended in the store only (a task waiting for input that no run holds here): its end is
            # still an event, for push configs and the other replicas' subscribers.
            end = TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id, status=task.status)
            await self._push_sender.send_notification(task.id, end)
        return task

    async def _parked(self, task_id: str, context: ServerCallContext) -> bool:
        """Whether the SDK's handler holds task ``task_id`` here (parked waiting for input: it sees the next turn).

        On PostgreSQL a copy parked here is the task only while this process wrote the task last. Once
        another replica took an answer to it (its turn there may have asked again), the copy here is
        the task as it was before: acting on it (the agent's cancel, which saves the task it holds)
        would write that old task over the newer one. Such a copy is closed, and the task is acted
        on as stored.
        """
        active = await self._active_task_registry.get(task_id)
        if active is None or active.is_finished:
            return False
        log = self.log
        if log is None or not log.active:
            return True
        key = (log.agent, log.store.owner_of(context), task_id)
        runner, _ = await task_runner(log.cluster.db, key)
        if runner == log.cluster.db.runner:
            return True
        logger.info("task %s of %s was answered on another replica: its stale copy here is closed", task_id, log.agent)
        await active.aclose()
        for _ in range(_CLEANUP_PASSES):  # the registry forgets a closed task in a task of its own
            if await self._active_task_registry.get(task_id) is not active:
                break
            await asyncio.sleep(0)
        return False

    async def on_subscribe_to_task(
        self, params: SubscribeToTaskRequest, context: ServerCallContext
    ) -> AsyncGenerator[Event, None]:
        """A running local task's live events from its runner; any other task's through the SDK."""
        refuse_nul(params)
        events = None
        if self.local is not None and self.local.is_running(params.id):
            if await self.task_store.get(params.id, context) is None:
                raise TaskNotFoundError
            events = self.local.subscribe(params.id)
        elif self.log is not None and self.log.active:  # by the task's last writer, as a cancel is
            task = await self.task_store.get(params.id, context)
            if task is not None and task.status.state in INTERRUPTIBLE:
                events = await self.log.follow(task, context)  # running on another replica
            elif task is not None and task.status.state in WAITING:
                # From the stored task, even when parked here: its next turn or its cancel may come on any replica,
                # and a copy parked here is not told of those (nor current, once another replica answered it).
                events = self.log.follow_waiting(task, context)
        if events is None:
            events = super().on_subscribe_to_task(params, context)
        async for event in events:
            yield event


def _ends_run(event: Event) -> bool:
    """Whether ``event`` ends a run on the runner (a final or interrupted state; a message reply arrives as one)."""
    return isinstance(event, Task | TaskStatusUpdateEvent) and event.status.state in ENDED


def _releasing(context: ServerCallContext, ticket: Ticket | None) -> ServerCallContext:
    """A context for this call alone that gives ``ticket`` back once its task is saved ended (or waiting)."""
    if ticket is None:
        return context
    run_end = RunEnd(ticket.admission.agent, ticket.release)
    return context.model_copy(update={"state": {**context.state, ON_RUN_END: run_end}})


def _release(ticket: Ticket | None) -> None:
    if ticket is not None:
        ticket.release()


def _event_task_id(event: Event) -> str:
    if isinstance(event, Task):
        return event.id
    return event.task_id if isinstance(event, TaskStatusUpdateEvent | TaskArtifactUpdateEvent) else ""


def _shown(event: Event, params: SendMessageRequest) -> Event:
    return apply_history_length(event, params.configuration) if isinstance(event, Task) else event


def _retrieve(run: asyncio.Future[Task]) -> None:
    """Log a detached run's failure (its caller, if still there, got it too); the agent's own failures fail the task."""
    if not run.cancelled() and (exc := run.exception()) is not None:
        logger.warning("a run on the local path failed: %s: %s", type(exc).__name__, exc)
