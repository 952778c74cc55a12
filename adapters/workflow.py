"""The ``workflow`` runtime: an orchestration pattern over participants, served as an agent.

Each run is an A2A task of the workflow agent. The pattern runs on an ``EngineRun``, which turns
every step into a child task on its participant and checkpoints the run after each step; the
run's progress arrives as status updates, the steps' outputs as the artifact ``steps`` (appended
to in batches; each part is linked to its step's child task in its metadata, see
``gateway.orchestration.step_outputs``), and the outcome as the artifact ``result`` (text and
data) with the run's final state.

The executor starts a run for a new task, continues one for a follow-up message to a run that
asked for input (the answer goes to the step that asked), and resumes one from its checkpoint
when the gateway restarts it without a message (``gateway.orchestration.resume``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Sequence
from typing import Any, Literal

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.owner_resolver import resolve_user_scope
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import Message, Part, SendMessageRequest, TaskState
from a2a.utils.errors import InvalidParamsError

from gateway.auth.policy import caller_of
from gateway.errors import RuntimeLoadError
from gateway.federation.hops import message_hop
from gateway.hosting.cleanup import finish
from gateway.hosting.executor import METADATA_KEY, UpdaterEmitter, data_part, message_input
from gateway.hosting.runtimes import Host
from gateway.orchestration.api import Outcome
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.engine import (
    EngineRun,
    RunCanceledError,
    RunInterruptedError,
    cancel_waiting_children,
    step_links,
)
from gateway.orchestration.step_outputs import STEPS_ARTIFACT, StepOutput, published_steps, step_parts
from gateway.orchestration.workflows import InvalidWorkflowError, WorkflowPlan, plan_workflow
from gateway.spec import AgentSpec
from gateway.store.leases import Lease

logger = logging.getLogger(__name__)

RESULT_ARTIFACT = "result"
CANCEL_TOLD_S = 30.0
"""How long a canceled run's ``execute`` waits for the cancel to report the task CANCELED before it returns."""


def incoming_hops(message: Message) -> int:
    """How many runs deep this request is: the ``hops`` its parent run gave it, 0 from a caller.

    ``InvalidParamsError`` for a hop count out of range (``federation.hops.hop_count``).
    """
    return message_hop(message).hops


_FINAL = {
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "input-required": TaskState.TASK_STATE_INPUT_REQUIRED,
}


class RunUpdates:
    """The ``RunEvents`` of a run: status updates and artifacts of the run's task, through its updater.

    ``shown`` says whether the task already has a ``steps`` artifact (a resumed or continued run):
    then every batch appends to it; otherwise the first batch creates it.
    """

    def __init__(self, updater: TaskUpdater, *, shown: bool = False) -> None:
        self._updater = updater
        self._shown = shown

    async def progress(self, *lines: str) -> None:
        """One working status update, one text part per line."""
        message = self._updater.new_agent_message([Part(text=line) for line in lines])
        await self._updater.update_status(TaskState.TASK_STATE_WORKING, message)

    async def steps(self, outputs: Sequence[StepOutput]) -> None:
        """One update of the ``steps`` artifact: these steps' outputs, appended."""
        append, self._shown = self._shown, True
        await self._updater.add_artifact(
            step_parts(outputs), artifact_id=STEPS_ARTIFACT, name=STEPS_ARTIFACT, append=append or None
        )

    async def artifact(self, name: str, data: dict[str, Any] | list[Any]) -> None:
        """One update replacing the artifact ``name`` with one data part (a pattern's live view)."""
        await self._updater.add_artifact([data_part(data)], artifact_id=name, name=name)


async def publish_outcome(updater: TaskUpdater, outcome: Outcome, record: RunRecord) -> None:
    """End the run's task: the ``result`` artifact when it completed, then the final status.

    The status update's metadata (kept in the task's metadata) links every step's child task:
    ``{"switchboard": {"run_id", "steps": [{step, agent, state, task_id}]}}``, with the failure's
    ``reason`` when it has one (``permission-denied`` fails an enclosing run too: ``child_tasks``).
    """
    entry: dict[str, object] = {"run_id": record.run_id, "steps": step_links(record)}
    if outcome.reason:
        entry["reason"] = outcome.reason
    metadata = {METADATA_KEY: entry}
    if outcome.state == "completed":
        await UpdaterEmitter(updater).artifact(RESULT_ARTIFACT, text=outcome.text or None, data=outcome.data)
        parts = [Part(text=outcome.text)] if outcome.text else []
    else:
        parts = [Part(text=outcome.text or "the run did not complete")]
        if outcome.data is not None:
            parts.append(data_part(outcome.data))
    message = updater.new_agent_message(parts) if parts else None
    await updater.update_status(_FINAL[outcome.state], message, metadata=metadata)


class WorkflowExecutor(AgentExecutor):
    """Runs a workflow's pattern for each task of the workflow agent."""

    def __init__(self, name: str, host: Host, plan: WorkflowPlan) -> None:
        self.name = name
        self.plan = plan
        self._host = host
        self._runs: dict[str, EngineRun] = {}
        self._told: dict[str, asyncio.Event] = {}  # runs being canceled: set once the CANCELED state is queued

    def validate_request(self, params: SendMessageRequest) -> None:
        """Refuse, before any task exists, a request with nothing to work on or a bad hop count (invalid params)."""
        text, files, data = message_input(params.message)
        if not (text.strip() or files or data):
            raise InvalidParamsError(message=f"{self.name} needs a request: send text, data or files")
        incoming_hops(params.message)  # a hop count out of range is refused here, not in the checkpoint write

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Start, continue or resume the run of this task, and end its task with the outcome."""
        task_id, context_id = context.task_id or "", context.context_id or ""
        updater = TaskUpdater(event_queue, task_id, context_id)
        lease = await self._lease(context)
        if lease is False:
            return  # another replica runs it: this one must not write to it
        record, answer = await self._record(context, event_queue)
        if record is not None:
            record.lease = lease
        if record is None:
            await updater.failed(
                updater.new_agent_message([Part(text=f"{self.name}: this run has no checkpoint to continue from")])
            )
            return
        if record.fingerprint != self.plan.fingerprint:
            await self._refuse_changed(record, updater)
            return
        resumed = context.message is None
        record.state = "running"
        task = context.current_task
        shown = published_steps(task.artifacts) if task is not None else set()
        updates = RunUpdates(updater, shown=bool(shown))
        run = EngineRun(self.plan, self._host, record, context.call_context, updates, answer=answer, published=shown)
        # The task turns working with the run's first batch of progress (``RunPublisher``), and the
        # first checkpoint is written with the first step's work, not waited for on its own.
        await run.progress(self._starting(record, resumed))
        started = run.save_soon()
        self._runs[task_id] = run
        try:
            outcome = await run.execute()
        except RunCanceledError:
            # The cancel request ends the task. Its CANCELED state is queued before this returns: the SDK
            # ends the caller's stream when ``execute`` returns, so a later event would never reach it.
            told = self._told.get(task_id)
            if told is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(told.wait(), CANCEL_TOLD_S)
            return
        except RunInterruptedError:
            if run.lease_lost:
                logger.warning("run %s of %s stopped here: its lease was lost to another replica", task_id, self.name)
                return  # another replica may run it now: nothing more is written from here
            await run.flush_updates()  # the finished steps' outputs (a resumed run publishes only those not shown)
            logger.info("run %s of %s interrupted by shutdown; it resumes on the next start", task_id, self.name)
            return  # the task stays running and the checkpoint as it is, to resume (another replica's lease: now)
        finally:
            self._runs.pop(task_id, None)
            run.drop_updates()
            await finish(started)  # the first checkpoint, also when the run is stopped
        record.state = outcome.state
        # The last checkpoint and the outcome are written together: a crash between the two leaves
        # either a finished task (not resumed) or a finished checkpoint whose replay ends the task.
        ended = run.save_soon()
        await publish_outcome(updater, outcome, record)
        await asyncio.shield(ended)

    async def _lease(self, context: RequestContext) -> Lease | Literal[False] | None:
        """On PostgreSQL the run's lease, taken (or kept from a takeover) for this execution; False when held elsewhere.

        The lease is lost when another replica may run the run: the asyncio task running this execution is
        then canceled, and its writes are refused (``gateway.store.leases``).
        """
        leases = self._host.leases
        if leases is None:
            return None
        key = (self.name, resolve_user_scope(context.call_context), context.task_id or "")
        lease = await leases.take(key)
        if lease is None:
            logger.warning("run %s of %s runs on another replica (its lease is live): not here", key[2], key[0])
            return False
        leases.run_by(lease, asyncio.current_task())
        return lease

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the run: every child task still running (or waiting for input) is canceled first."""
        task_id = context.task_id or ""
        updater = TaskUpdater(event_queue, task_id, context.context_id or "")
        run = self._runs.get(task_id)
        told = self._told.setdefault(task_id, asyncio.Event())
        try:
            if run is not None:
                count = await run.cancel()
            else:
                count = await self._cancel_paused(context)
            steps = f"{count} unfinished step{'s' if count != 1 else ''} canceled"
            await updater.cancel(updater.new_agent_message([Part(text=f"{self.name}: canceled on request; {steps}")]))
        finally:
            told.set()
            self._told.pop(task_id, None)

    async def _record(self, context: RequestContext, queue: EventQueue) -> tuple[RunRecord | None, Message | None]:
        """The run's checkpoint (a new one for a new task), and the caller's answer when this continues one."""
        task = context.current_task
        owner = resolve_user_scope(context.call_context)
        caller = caller_of(context.call_context.user) if context.call_context is not None else None
        if task is None:
            message = context.message or Message()
            history = [message] if context.message else []
            await queue.enqueue_event(
                new_task(
                    context.task_id or "", context.context_id or "", TaskState.TASK_STATE_SUBMITTED, history=history
                )
            )
            fresh = RunRecord(
                run_id=uuid.uuid4().hex,
                agent=self.name,
                owner=owner,
                task_id=context.task_id or "",
                context_id=context.context_id or "",
                fingerprint=self.plan.fingerprint,
                request=message,
                hops=incoming_hops(message),
                caller=caller,
            )
            return fresh, None
        stored = await SqlRunStore(self._host.db).get(self.name, owner, task.id)
        if stored is not None:
            stored.caller = caller  # a follow-up acts with the credentials it came with; a resume, as recorded
        waiting = task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        return stored, context.message if waiting else None

    async def _refuse_changed(self, record: RunRecord, updater: TaskUpdater) -> None:
        record.state = "failed"
        await SqlRunStore(self._host.db).save(record)
        text = f"{self.name} changed since this run started (pattern, participants or options); send the request again"
        await updater.failed(updater.new_agent_message([Part(text=text)]))

    async def _cancel_paused(self, context: RequestContext) -> int:
        owner = resolve_user_scope(context.call_context)
        store = SqlRunStore(self._host.db)
        record = await store.get(self.name, owner, context.task_id or "")
        if record is None:
            return 0
        count = await cancel_waiting_children(self._host, record, context.call_context)
        record.state = "canceled"
        await store.save(record)
        return count

    def _starting(self, record: RunRecord, resumed: bool) -> str:
        if resumed:
            return f"{self.name}: resuming after a restart, {len(record.steps)} step(s) already done"
        agents = ", ".join(self.plan.participants)
        return f"{self.name}: {self.plan.pattern.name} over {agents}"


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor of a ``workflow`` agent; ``RuntimeLoadError`` when its pattern or options do not check."""
    try:
        plan = plan_workflow(spec)
    except InvalidWorkflowError as exc:
        raise RuntimeLoadError(f"{spec.name}: {exc.field}: {exc.detail}") from exc
    return WorkflowExecutor(spec.name, host, plan)
