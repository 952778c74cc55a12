"""The run engine: the ``Run`` a pattern sees, over child A2A tasks, with limits, resilience and checkpoints.

Each step has an identity, its key (``step_key``): the agent asked, the step's label (its place
in the pattern: "step 2/3", "item 4/9, attempt 2") and its input, and, when the same agent is
asked the same thing at the same place again, how many times it was before. A step whose result
the checkpoint holds under its key returns it without calling the agent again: re-running a
pattern from the start replays every finished step and resumes after the last one. Results are
found by key, never by the order steps started or finished in: a replayed step finishes at once,
so steps that raced in the run being resumed finish in another order on replay, and a pattern
that reacts to the order (a work queue re-queues failed items as they fail) asks in another
order too. A pattern must choose what to ask from the results it got, not from timing: then a
replay asks the same things and gets each its own result (a result no step asks for again is not
used). A checkpoint written before steps had keys is replayed by step number, as it was written.

Steps are numbered (the step's output, its child task's link) in call order, fixed before the
first await so concurrent fan-outs number deterministically; a replayed step keeps the number it
had, and a new one takes the lowest number no step of the run has. A step the checkpoint does not
hold runs as a child task (``child_tasks``: in this task on the agent's ``LocalRunner`` for an
in-process agent, else through its request handler) under these rules, in order:

- limits: the step count, the run's deadline, the token and cost budgets (``LimitExceededError``);
  the deadline is a budget of time spent running, measured on a monotonic clock (a wall-clock step
  does not move it) and kept in the checkpoint: a resumed or continued run gets what it had left,
  and the time the gateway was down, or a paused run waited for its answer, does not count;
- rights: the run acts for its caller (``RunRecord.caller``, carried by the call context and kept
  in the checkpoint), and each agent a step would run is checked as a direct call from that caller
  would be (``AuthPolicy.may_call``, naming the step's ``metadata.skill``); one it may not run is
  passed over for its fallbacks, and when none may run, or a child reports that the caller was
  refused further down (a nested run, an agent reusing another's logic), the step raises
  ``PermissionDeniedError`` and the run fails with the reason, whatever the pattern's policy;
- the agent's circuit breaker (``breaker``): an open circuit fails the step at once;
- a per-step timeout, after which the child task is canceled on its agent;
- retries with exponential backoff and full jitter, for retryable failures only (a timeout, or a
  failure the participant marked retryable); a task that failed or was rejected for a reason of
  its own is not retried;
- fallbacks: when the agent's step still fails, each alternate in ``fallbacks`` gets the request.

After each step the checkpoint is saved (concurrent steps share writes: ``checkpoint``) and
only then does the step return; its output is published in the run's ``steps`` artifact
(``step_outputs``: a part per output, linked to its child task) and its progress as status
updates of the run's task, in batches (``RunPublisher``): each event on the run's task is a save
of the whole task by the SDK. A replayed step whose output the task does not show yet (the
gateway stopped between its checkpoint and its publication) is published on replay.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, Protocol

from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Message

from gateway.auth.policy import caller_of
from gateway.errors import AgentBusyError, PermissionDeniedError, UnknownAgentError
from gateway.federation.hops import carried, message_hop
from gateway.hosting.cleanup import finish
from gateway.hosting.executor import message_input
from gateway.hosting.runtimes import Host
from gateway.orchestration.api import (
    AgentInfo,
    LimitExceededError,
    Limits,
    OrchestrationError,
    Outcome,
    StepInput,
    StepResult,
)
from gateway.orchestration.budget import Budget, Trimmed
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.child_tasks import (
    Child,
    ChildOutcome,
    ChildTask,
    LocalChild,
    Progress,
    SharedChild,
    StepLink,
    cancel_task,
    child_message,
)
from gateway.orchestration.step_outputs import STEPS_ARTIFACT, StepOutput
from gateway.orchestration.workflows import WorkflowPlan
from gateway.runtime import FileInput, Usage, add_usage
from gateway.telemetry import metrics, tracing

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT_S = 10.0
"""How long canceling one child task may take before the engine stops waiting."""
DEADLINE_GRACE_S = 5.0
"""Past the deadline, how long a pattern gets to notice (its next step raises) before it is stopped."""
RESERVED_ARTIFACTS = frozenset({STEPS_ARTIFACT, "result"})
"""Artifacts a pattern may not replace: every step's output, and the run's outcome."""
PUBLISH_INTERVAL_S = 0.025
"""How long the run's progress and step outputs wait to be published together (``RunPublisher``)."""


class RunCanceledError(OrchestrationError):
    """The run was canceled while a step was running; the cancel request ends its task."""

    message = "the run was canceled"
    reason = "run-canceled"


class RunEvents(Protocol):
    """Where a run publishes: status updates and artifacts of the run's task (``adapters.workflow.RunUpdates``)."""

    async def progress(self, *lines: str) -> None:
        """One working status update, with one text part per line."""

    async def steps(self, outputs: Sequence[StepOutput]) -> None:
        """One artifact update of the run's ``steps`` artifact with these steps' outputs (``step_outputs``)."""

    async def artifact(self, name: str, data: dict[str, Any] | list[Any]) -> None:
        """One artifact update that replaces the run's artifact ``name`` with ``data`` (a pattern's live view)."""


class RunPublisher:
    """The run's progress and step outputs, published in batches by one writer.

    Each event on the run's task is a save of the whole (growing) task by the SDK (and a copy of
    it per subscriber), so a fan-out of 100 steps publishing an event or three per step spent
    most of its time there. ``progress`` and ``step`` only queue; the first item queued starts a
    writer that waits ``interval`` seconds (or until ``flush``) and then publishes what queued
    meanwhile as at most two events: one working status update with every progress line, in
    order, one text part each, then one update of the ``steps`` artifact with every step's
    output, in step order (``step_outputs``), then one update per artifact a pattern replaced
    (``artifact``: only the latest value of each). Every line and every output is published; only how
    they are grouped into events changes, and progress shows at most ``interval`` late. ``flush``
    publishes at once and waits until everything queued is out; ``close`` drops what is left (a
    canceled run's task has ended).
    """

    def __init__(self, events: RunEvents, interval: float = PUBLISH_INTERVAL_S) -> None:
        self._events = events
        self._interval = interval
        self._lines: list[str] = []
        self._steps: list[StepOutput] = []
        self._artifacts: dict[str, dict[str, Any] | list[Any]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._due: asyncio.Future[None] | None = None
        self._closed = False

    def progress(self, text: str) -> None:
        """Queue a progress line."""
        if not self._closed:
            self._lines.append(text)
            self._wake()

    def step(self, output: StepOutput) -> None:
        """Queue a step's output."""
        if not self._closed:
            self._steps.append(output)
            self._wake()

    def artifact(self, name: str, data: dict[str, Any] | list[Any]) -> None:
        """Queue the new value of a pattern's artifact ``name`` (a later one replaces it before it is out)."""
        if not self._closed:
            self._artifacts[name] = data
            self._wake()

    async def flush(self) -> None:
        """Publish what is queued now, and wait until it is out."""
        _resolve(self._due)
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    def close(self) -> None:
        """Publish nothing more."""
        self._closed = True
        self._lines.clear()
        self._steps.clear()
        self._artifacts.clear()
        _resolve(self._due)

    def _wake(self) -> None:
        if self._writer is None or self._writer.done():
            loop = asyncio.get_running_loop()
            self._due = due = loop.create_future()
            timer = loop.call_later(self._interval, _resolve, due)
            due.add_done_callback(lambda _: timer.cancel())
            self._writer = asyncio.create_task(self._write(due))

    async def _write(self, due: asyncio.Future[None]) -> None:
        await due
        while (self._lines or self._steps or self._artifacts) and not self._closed:
            steps, self._steps = self._steps, []
            lines, self._lines = self._lines, []
            artifacts, self._artifacts = self._artifacts, {}
            try:
                if lines:
                    await self._events.progress(*lines)
                if steps:
                    await self._events.steps(sorted(steps, key=lambda output: output.step))
                for name, data in artifacts.items():
                    await self._events.artifact(name, data)
            except Exception as exc:  # the run's task ended under us (a cancel): nothing more to show
                logger.warning("could not publish the run's progress: %s", exc)
                self.close()


def _resolve(future: asyncio.Future[None] | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def step_links(record: RunRecord) -> list[dict[str, object]]:
    """Each finished step of a run: its number, agent, state and child task id."""
    return [
        {"step": n, "agent": r.agent, "state": r.state, "task_id": r.task_id} for n, r in sorted(record.steps.items())
    ]


class RunInterruptedError(OrchestrationError):
    """The gateway is stopping; the run keeps its checkpoint and its task stays running, to resume."""

    message = "the gateway is stopping"
    reason = "run-interrupted"


class ReplayMismatchError(OrchestrationError):
    """Replaying a checkpoint, the pattern asked a different agent than the recorded step: it cannot resume."""

    message = "the run's replay diverged from its checkpoint"
    reason = "replay-mismatch"


def step_key(agent: str, request: StepInput, label: str) -> str:
    """A digest of who is asked what at which place of the pattern: a step's identity, without its repeat count."""
    shape = {
        "agent": agent,
        "label": label,
        "text": request.text,
        "data": request.data,
        "files": [_file_shape(file) for file in request.files],
        "metadata": dict(request.metadata),
    }
    encoded = json.dumps(shape, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:32]


def _file_shape(file: FileInput) -> list[str]:
    content = file.raw if file.raw is not None else (file.text or "").encode()
    return [file.name, file.media_type, file.url or "", hashlib.sha256(content).hexdigest()]


def step_input(message: Message) -> StepInput:
    """A request message as a step's input."""
    text, files, data = message_input(message)
    return StepInput(text=text, data=data, files=files)


def _without_speaker(text: str, agent: str) -> str:
    """``"security: scanning"`` from agent ``security-reviewer`` reads ``"scanning"`` (no name twice)."""
    head, sep, rest = text.partition(":")
    if sep and rest and (head == agent or head in agent.split("-")):
        return rest.strip()
    return text


def _broken(child: Child, exc: BaseException) -> ChildOutcome:
    """A participant that broke the protocol, or a handler error: the step fails with the reason."""
    detail = str(exc) or type(exc).__name__
    logger.warning("step on %s failed: %s", child.agent, detail, exc_info=exc)
    result = StepResult(child.agent, "failed", task_id=child.task_id, error=f"{child.agent}: {detail}")
    busy = isinstance(exc, AgentBusyError)
    return ChildOutcome(result, retryable=getattr(exc, "retryable", False) is True, busy=busy)


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a shared save's error as seen: its callers may all have been canceled meanwhile."""
    if not future.cancelled():
        future.exception()


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc


class EngineRun:
    """One run of a workflow: the ``Run`` its pattern gets."""

    def __init__(
        self,
        plan: WorkflowPlan,
        host: Host,
        record: RunRecord,
        call_context: ServerCallContext,
        emit: RunEvents,
        *,
        answer: Message | None = None,
        published: Collection[int] = (),
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.plan = plan
        self.name = plan.name
        self.record = record
        self.participants = plan.participants
        ceiling = message_hop(record.request).max_hops  # a run nested in another keeps to the outer run's limit too
        self.limits: Limits = (
            plan.limits
            if ceiling is None or ceiling >= plan.limits.max_hops
            else dataclasses.replace(plan.limits, max_hops=ceiling)
        )
        self.request = step_input(record.request)
        self.canceled = False
        self._host = host
        self._store = SqlRunStore(host.db)
        self._context = call_context
        self._updates = RunPublisher(emit)
        self._answer = answer
        self._published = published  # steps whose output the run's task already shows (a resumed run)
        self._clock = clock  # monotonic: a wall-clock step must not move the deadline
        self._began = clock()
        self._spent_before = record.elapsed_ns / 1e9  # by earlier executions of the run (before a restart or a pause)
        self._rng = rng or random.Random()
        self._numbered = 0  # steps asked for so far, replayed or not (the step limit counts them)
        self._asked: dict[str, int] = {}  # how many times each step_key was asked
        self._recorded = {key: number for number, key in record.keys.items()}  # finished steps not replayed yet
        self._taken = set(record.steps)  # step numbers in use
        self._lowest_free = 1
        self._budget = Budget(self.limits)
        self._running: dict[int, Child] = {}
        self._reported: dict[int, Usage | None] = {}  # step number -> what its attempts reported so far (while it runs)
        self._attempts = 0
        self._next_save: asyncio.Future[None] | None = None  # the write that covers every change made since the last
        self._saver: asyncio.Task[None] | None = None
        self._carried = carried(record.request)  # gateway path and trace context, passed to every step
        self._caller = caller_of(call_context.user) if call_context is not None else None
        # A work queue's ``distribute``: on PostgreSQL, steps are shared work items any replica may run.
        self._distribute = bool(getattr(plan.options, "distribute", False))

    @property
    def lease_lost(self) -> bool:
        """Whether this replica lost the run's lease (``gateway.store.leases``): it must stop and write nothing."""
        return self.record.lease is not None and self.record.lease.lost

    # -- the Run protocol ------------------------------------------------------------------

    async def step(self, agent: str, request: StepInput, *, label: str = "") -> StepResult:
        """Run ``agent`` on ``request`` as a child task, or replay its checkpointed result (see the module)."""
        if self.canceled:
            raise RunCanceledError
        if agent not in self.participants:
            raise UnknownAgentError(f"{agent!r} is not a participant of {self.plan.name}")
        self._numbered += 1
        if self._numbered > self.limits.max_steps:
            raise LimitExceededError("step", f"{self.limits.max_steps} steps")
        key = self._key(agent, request, label)
        number, saved = self._find(key, agent)
        label = label or f"step {number}"
        follow_up = self._follow_up(saved)
        if saved is not None and follow_up is None:
            if number not in self._published:
                self._publish_output(number, label, saved)  # finished, checkpointed, not shown before a crash
            self._budget.account(saved.usage)
            return saved
        if follow_up is not None and self._answer is not None:
            request, self._answer = step_input(self._answer), None  # the caller's answer goes to the step that asked
        self._check_deadline()
        try:
            held = self._budget.reserve(f"{label} · {agent}", self._max_tokens_of(agent))
        except Trimmed as trimmed:
            held, result = None, StepResult(agent, "failed", error=str(trimmed))
            await self.progress(str(trimmed))  # a trimmed step shows here and as its failed step, not as a duration
        kept = False
        try:
            if held is not None:
                result = await self._run_step(number, agent, request, label, follow_up)
            if self.canceled:
                raise RunCanceledError
            if self._host.stopping or self.lease_lost:
                raise RunInterruptedError  # the step ended because its agent stopped: not a result to keep
            self.record.steps[number] = result
            self.record.keys[number] = key
            await self.checkpoint()
            self._publish(number, label, result)
            kept = True
        finally:
            # However the step ends (a result, the run canceled or interrupted, this task canceled while its result
            # was being saved), what it held goes back: a step after it may need the room. What its agents reported
            # was spent all the same: a step that is not kept counts it here (a kept one below, judged).
            reported = self._reported.pop(number, None)
            if held is not None:
                self._budget.release(held)
                if not kept:
                    self._budget.spend(reported)
        if held is not None:
            self._budget.account(result.usage)
        return result

    async def _run_step(
        self, number: int, agent: str, request: StepInput, label: str, follow_up: tuple[str, str] | None
    ) -> StepResult:
        """The step's fallback chain in its span, its time observed as a step duration once it has a result."""
        pattern = self.plan.pattern.name
        started = time.perf_counter()
        with tracing.span(f"step {label}", attributes={"workflow.pattern": pattern, "a2a.agent": agent}):
            result = await self._fallback_chain(number, agent, request, label, follow_up)
        metrics.WORKFLOW_STEP_DURATION.labels(pattern).observe(time.perf_counter() - started)
        return result

    async def progress(self, text: str) -> None:
        """A working status update on the run's task (none once the run is canceled: its task has ended).

        Queued (``RunPublisher``): published within ``PUBLISH_INTERVAL_S``, with whatever else queued.
        """
        if not self.canceled:
            self._updates.progress(text)

    def describe(self, agent: str) -> AgentInfo:
        """What the card of ``agent`` says about it, and the state of its circuit breaker."""
        limits = self.limits
        circuit = self._host.breakers(agent).state(limits.breaker_threshold, limits.breaker_reset_s)
        return dataclasses.replace(self._host.describe(agent), circuit=circuit)

    async def artifact(self, name: str, data: dict[str, Any] | list[Any]) -> None:
        """Replace the run's artifact ``name`` with ``data``, live (queued as progress is: ``RunPublisher``)."""
        if name in RESERVED_ARTIFACTS:
            raise ValueError(f"the artifact {name!r} is the engine's own")
        if not self.canceled:
            self._updates.artifact(name, data)

    def may_run(self, agent: str) -> str | None:
        """Why a step to ``agent`` would be refused (``_authorize``: the agent and each of its fallbacks), else None."""
        refusal = self._refusal(agent)
        if refusal is None:
            return None
        fallbacks = self.plan.fallbacks.get(agent, ())
        return None if any(self._refusal(alt) is None for alt in fallbacks) else refusal

    def recorded(self, agents: Sequence[str], request: StepInput, label: str = "") -> str | None:
        """The first of ``agents`` whose result for this step (its next repeat) the checkpoint holds, unreplayed."""
        for agent in agents:
            digest = step_key(agent, request, label)
            again = self._asked.get(digest, 0)
            if (f"{digest}.{again}" if again else digest) in self._recorded:
                return agent
        return None

    # -- the run as a whole ----------------------------------------------------------------

    async def execute(self) -> Outcome:
        """Run the pattern to its outcome; a limit, a bad participant name or a pattern's bug fails the run.

        Raises ``RunCanceledError`` when the run was canceled, and ``RunInterruptedError`` or
        ``CancelledError`` when the gateway is stopping (the checkpoint stays as it is, to resume).
        """
        if self.record.hops > self.limits.max_hops:
            return self._limit_outcome(
                LimitExceededError(
                    "hop", f"{self.record.hops} levels of nested runs, the limit is {self.limits.max_hops}"
                )
            )
        try:
            attributes = {"workflow.pattern": self.plan.pattern.name, "workflow.name": self.plan.name}
            with tracing.span(f"workflow {self.plan.name}", attributes=attributes):
                async with asyncio.timeout(max(self.remaining(), 0.0) + DEADLINE_GRACE_S) as deadline:
                    outcome = await self.plan.pattern.run(self, self.plan.options)
        except TimeoutError:
            if not deadline.expired():
                raise
            outcome = self._limit_outcome(self._deadline_error())
        except Exception as exc:
            if self.lease_lost:  # another replica may run it now: no outcome of this one's counts
                raise RunInterruptedError from exc
            outcome = self._error_outcome(exc)
        if self.canceled:
            raise RunCanceledError
        await self._updates.flush()  # every step's progress and output before the outcome
        if not isinstance(outcome, Outcome):
            outcome = Outcome(
                "failed", f"{self.plan.name}: the pattern returned {type(outcome).__name__}, not an Outcome"
            )
        metrics.WORKFLOW_RUNS.labels(self.plan.pattern.name, outcome.state).inc()
        return outcome

    async def cancel(self) -> int:
        """Stop the run: no step starts again, every running child task is canceled; how many were."""
        self.canceled = True
        self._updates.close()
        children = list(self._running.values())
        canceled = await asyncio.gather(*(self._cancel_child(c) for c in children))
        self.record.state = "canceled"
        await self.checkpoint()
        return sum(canceled)

    async def checkpoint(self) -> None:
        """Save the run's state; returns once a write that began after this call has committed.

        One write at a time (a later save never loses to an earlier one), and concurrent calls
        share writes: a step that finishes while a write is under way waits for the next one,
        which covers every step finished meanwhile (a fan-out of 100 saves a few times, not 100).
        """
        await asyncio.shield(self.save_soon())

    def save_soon(self) -> asyncio.Future[None]:
        """Start a checkpoint (or join the one about to be written); its future resolves once it committed."""
        if self._next_save is None:
            self._next_save = asyncio.get_running_loop().create_future()
            self._next_save.add_done_callback(_retrieve)
            if self._saver is None or self._saver.done():
                self._saver = asyncio.create_task(self._save_pending())
        return self._next_save

    async def _save_pending(self) -> None:
        while self._next_save is not None:
            saved, self._next_save = self._next_save, None
            self.record.elapsed_ns = int(self.elapsed() * 1e9)
            try:
                await self._store.save(self.record)  # the row is taken from the record before the first await
            except asyncio.CancelledError:
                saved.cancel()
                if self._next_save is not None:
                    self._next_save.cancel()
                    self._next_save = None
                raise
            except Exception as exc:
                saved.set_exception(exc)
            else:
                saved.set_result(None)

    async def flush_updates(self) -> None:
        """Publish the progress and step outputs still queued (``RunPublisher``)."""
        await self._updates.flush()

    def drop_updates(self) -> None:
        """Publish nothing more: the run's task is no longer this run's to write to."""
        self._updates.close()

    def elapsed(self) -> float:
        """Seconds the run has spent running: in earlier executions (from its checkpoint), then in this one."""
        return self._spent_before + (self._clock() - self._began)

    def remaining(self) -> float:
        """Seconds left of the run's deadline, a budget of time spent running (``checkpoints``)."""
        return self.limits.deadline_s - self.elapsed()

    # -- limits ----------------------------------------------------------------------------

    def _deadline_error(self) -> LimitExceededError:
        return LimitExceededError("time", f"the run's {self.limits.deadline_s:g}s deadline passed")

    def _check_deadline(self) -> None:
        if self.remaining() <= 0:
            raise self._deadline_error()

    def _max_tokens_of(self, agent: str) -> int | None:
        """The most tokens ``agent`` writes per call, when its file bounds it (an ``llm`` agent's ``max_tokens``)."""
        spec = self._host.spec(agent)
        bound = getattr(spec.runtime, "max_tokens", None) if spec is not None else None
        return bound if isinstance(bound, int) else None

    def _limit_outcome(self, exc: LimitExceededError) -> Outcome:
        metrics.LIMIT_TRIPS.labels(exc.limit).inc()
        return Outcome("failed", str(exc), {"limit": exc.limit, "steps": len(self.record.steps)})

    def _error_outcome(self, exc: Exception) -> Outcome:
        leaves = list(_leaves(exc))
        canceled = next((e for e in leaves if isinstance(e, RunCanceledError)), None)
        if canceled is not None or self.canceled:
            raise canceled or RunCanceledError()
        interrupted = next((e for e in leaves if isinstance(e, RunInterruptedError)), None)
        if interrupted is not None:
            raise interrupted
        limit = next((e for e in leaves if isinstance(e, LimitExceededError)), None)
        if limit is not None:
            return self._limit_outcome(limit)
        refused = next((e for e in leaves if isinstance(e, PermissionDeniedError)), None)
        if refused is not None:
            return Outcome("failed", f"{self.plan.name}: {refused.detail}", reason=refused.reason)
        first = leaves[0]
        if isinstance(first, UnknownAgentError):
            return Outcome("failed", f"{self.plan.name}: {first.detail}")
        if isinstance(first, ReplayMismatchError):
            return Outcome("failed", f"{self.plan.name} cannot resume this run: {first.detail}")
        logger.error("workflow %s failed on task %s", self.plan.name, self.record.task_id, exc_info=exc)
        return Outcome("failed", f"{self.plan.name} failed: {type(first).__name__}: {first}")

    # -- one step --------------------------------------------------------------------------

    def _key(self, agent: str, request: StepInput, label: str) -> str:
        digest = step_key(agent, request, label)
        again = self._asked.get(digest, 0)
        self._asked[digest] = again + 1
        return f"{digest}.{again}" if again else digest

    def _find(self, key: str, agent: str) -> tuple[int, StepResult | None]:
        """The step's number and, when the checkpoint holds it, its result; a new number when it does not."""
        number = self._recorded.pop(key, None)
        if number is not None:
            return number, self.record.steps[number]
        saved = self._unkeyed(self._numbered, agent)
        if saved is not None:
            self.record.keys[self._numbered] = key  # the next checkpoint saves it with its key
            return self._numbered, saved
        while self._lowest_free in self._taken:
            self._lowest_free += 1
        self._taken.add(self._lowest_free)
        return self._lowest_free, None

    def _unkeyed(self, number: int, agent: str) -> StepResult | None:
        """Step ``number`` of a checkpoint written before steps had keys: matched by number and agent, as then."""
        saved = self.record.steps.get(number)
        if saved is None or number in self.record.keys:
            return None
        if saved.agent not in (agent, *self.plan.fallbacks.get(agent, ())):
            raise ReplayMismatchError(f"step {number} was {saved.agent}'s, and the pattern now asks {agent}")
        return saved

    def _follow_up(self, saved: StepResult | None) -> tuple[str, str] | None:
        """The child task the caller's answer continues: the first replayed step that asked for input."""
        if self._answer is None or saved is None or saved.state != "input-required" or not saved.task_id:
            return None
        return saved.task_id, self.record.context_id

    async def _fallback_chain(
        self, number: int, agent: str, request: StepInput, label: str, follow_up: tuple[str, str] | None
    ) -> StepResult:
        candidates = (agent, *self.plan.fallbacks.get(agent, ()))
        failures: list[StepResult] = []
        refusals: list[PermissionDeniedError] = []
        usage: Usage | None = None
        why = ""
        for index, candidate in enumerate(candidates):
            if index:
                await self.progress(f"{label} · {candidates[index - 1]} {why}; {candidate} takes over")
            try:
                self._authorize(candidate, request)
                degrade = index < len(candidates) - 1  # a busy agent hands the step to its fallback at once
                answer = follow_up if not index else None
                result = await self._with_retries(number, candidate, request, label, answer, degrade=degrade)
            except PermissionDeniedError as exc:
                refusals.append(exc)
                why = "may not be run by this caller"
                continue
            why = "failed"
            usage = add_usage(usage, result.usage)
            if result.state != "failed":
                return dataclasses.replace(result, usage=usage)
            failures.append(result)
        if refusals:
            raise refusals[0]  # nothing the caller may run did the step: the run fails with the reason
        if len(failures) == 1:
            return failures[0]
        why = "; ".join(f"{failure.agent}: {failure.error}" for failure in failures)
        return dataclasses.replace(failures[0], usage=usage, error=f"{agent} and its fallbacks failed ({why})")

    def _refusal(self, agent: str, skill: str | None = None) -> str | None:
        """Why the run's caller could not call ``agent`` (``skill`` of it) directly; None when it could."""
        spec = self._host.spec(agent)
        if spec is None:
            return None  # not hosted: the step fails as an unknown agent
        return self._host.auth.may_call(self._caller, spec, skill=skill)

    def _authorize(self, agent: str, request: StepInput) -> None:
        """``PermissionDeniedError`` when the run's caller could not call ``agent`` with this step's message."""
        skill = request.metadata.get("skill")
        refusal = self._refusal(agent, skill if isinstance(skill, str) else None)
        if refusal is not None:
            logger.warning("run %s of %s: step to %s refused: %s", self.record.task_id, self.plan.name, agent, refusal)
            raise PermissionDeniedError(refusal)

    async def _with_retries(
        self,
        number: int,
        agent: str,
        request: StepInput,
        label: str,
        follow_up: tuple[str, str] | None,
        *,
        degrade: bool = False,
    ) -> StepResult:
        limits = self.limits
        breaker = self._host.breakers(agent)
        usage: Usage | None = None
        for attempt in range(limits.retries + 1):
            if not breaker.acquire(limits.breaker_threshold, limits.breaker_reset_s):
                metrics.BREAKER_REFUSALS.labels(agent).inc()
                return StepResult(agent, "failed", usage=usage, error=f"circuit open for {agent}")
            try:
                outcome = await self._attempt(number, agent, request, label, follow_up)
            except BaseException:
                breaker.release()
                raise
            self._reported[number] = add_usage(self._reported.get(number), outcome.result.usage)
            usage = add_usage(usage, outcome.result.usage)
            result = dataclasses.replace(outcome.result, usage=usage)  # what every try of this agent reported
            if outcome.busy:
                breaker.release()  # a busy agent is not a failing one
                if degrade:
                    return result
            elif result.state == "failed":
                breaker.record(ok=False)
            elif result.state in ("completed", "rejected"):
                breaker.record(ok=True)
            else:
                breaker.release()
            metrics.breaker_state(agent, breaker.state(limits.breaker_threshold, limits.breaker_reset_s))
            if result.state != "failed" or not outcome.retryable or attempt == limits.retries:
                return result
            delay = self._rng.uniform(0, min(limits.backoff_max_s, limits.backoff_base_s * 2**attempt))
            if delay >= self.remaining():
                return result
            await self.progress(
                f"{label} · {agent}: {result.error}; retry {attempt + 1} of {limits.retries} in {delay:.2f}s"
            )
            metrics.RETRIES.inc()
            await asyncio.sleep(delay)
            follow_up = None  # a retry starts a fresh child task
        raise AssertionError("unreachable: the last attempt returns")

    async def _attempt(
        self, number: int, agent: str, request: StepInput, label: str, follow_up: tuple[str, str] | None
    ) -> ChildOutcome:
        if self._host.stopping or self.lease_lost:
            raise RunInterruptedError
        try:
            child = self._child(agent)
        except UnknownAgentError as exc:
            return ChildOutcome(StepResult(agent, "failed", error=exc.detail))
        record = self.record
        via, traceparent = self._carried
        traceparent = tracing.current_traceparent() or traceparent  # the step's span, when traced
        link = StepLink(
            record.task_id,
            record.context_id,
            record.run_id,
            number,
            record.hops + 1,
            via,
            traceparent,
            self.limits.max_hops,
        )
        timeout = min(self.limits.step_timeout_s, self.remaining())

        async def forward(text: str) -> None:
            await self.progress(f"{label} · {agent}: {_without_speaker(text, agent)}")

        await self.progress(f"{label} · {agent}: {'answer sent' if follow_up else 'started'}")
        message = child_message(request, link, follow_up=follow_up)
        self._attempts += 1
        key = self._attempts
        self._running[key] = child
        try:
            if isinstance(child, LocalChild):
                outcome = await self._run_local(child, message, forward, timeout)
            else:
                outcome = await self._run_remote(child, message, forward, timeout)
        finally:
            self._running.pop(key, None)
        if outcome is not None and outcome.refused:
            raise PermissionDeniedError(outcome.result.error)  # refused further down: never retried
        if outcome is not None:
            return outcome
        if timeout < self.limits.step_timeout_s:
            raise self._deadline_error()
        error = f"{agent} did not finish within {timeout:g}s"
        return ChildOutcome(StepResult(agent, "failed", task_id=child.task_id, error=error), retryable=True)

    async def _run_local(
        self, child: LocalChild, message: Message, forward: Progress, within: float
    ) -> ChildOutcome | None:
        """Run a local child in this task (no task of its own to follow); None when it timed out.

        Cancelling this task (a timeout, the run stopping) reaches the runner, which leaves the
        child canceled before the cancel goes on; ``cancel`` (the run's cancel) ends it with a result.
        """
        try:
            async with asyncio.timeout(max(within, 0.0)) as limit:
                return await child.run(message, forward)
        except TimeoutError:
            if not limit.expired():
                raise
            return None
        except Exception as exc:
            return _broken(child, exc)

    async def _run_remote(
        self, child: ChildTask | SharedChild, message: Message, forward: Progress, within: float
    ) -> ChildOutcome | None:
        """Follow a child through its agent's handler, in a task of its own; None when it timed out."""
        consumer = asyncio.create_task(child.run(message, forward))
        try:
            done, _ = await asyncio.wait({consumer}, timeout=max(within, 0.0))
        except asyncio.CancelledError:
            await finish(self._abandon(child, consumer))
            raise
        if consumer in done:
            exc = consumer.exception()
            return consumer.result() if exc is None else _broken(child, exc)
        await self._abandon(child, consumer)
        return None

    def _child(self, agent: str) -> Child:
        """The step's child: run in-process on the agent's runner when it has one, else through its handler.

        A distributed run's step of an in-process agent is a shared work item (when replicas share PostgreSQL).
        """
        runner = self._host.local_runner(agent)
        items = self._host.work_items if self._distribute and runner is not None else None
        if items is not None and items.active:
            return SharedChild(agent, items, self.record.run_id, self._context)
        if runner is not None:
            return LocalChild(agent, runner, self._context)
        return ChildTask(agent, self._host.handler(agent), self._context)

    async def _abandon(self, child: ChildTask | SharedChild, consumer: asyncio.Task[ChildOutcome]) -> None:
        """Cancel the child on its agent (best effort, bounded), then stop following it."""
        await self._cancel_child(child)
        if not consumer.done():
            consumer.cancel()
        await asyncio.wait({consumer}, timeout=CANCEL_TIMEOUT_S)
        if consumer.done() and not consumer.cancelled():
            consumer.exception()  # retrieved, so an abandoned child's error is not logged as unhandled

    @staticmethod
    async def _cancel_child(child: Child) -> bool:
        try:
            return await finish(child.cancel(), CANCEL_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("could not cancel %s task %s: %s", child.agent, child.task_id, exc)
            return False

    def _publish(self, number: int, label: str, result: StepResult) -> None:
        self._publish_output(number, label, result)
        ending = f"{label} · {result.agent}: {result.state}"
        self._updates.progress(f"{ending} ({result.error})" if result.error else ending)

    def _publish_output(self, number: int, label: str, result: StepResult) -> None:
        if result.text or result.data is not None:
            text = result.text or None
            self._updates.step(StepOutput(number, result.agent, result.state, result.task_id, text, result.data, label))


async def cancel_waiting_children(host: Host, record: RunRecord, context: ServerCallContext) -> int:
    """Cancel the child tasks a paused run left waiting for input; how many were canceled."""
    waiting = [r for r in record.steps.values() if r.state == "input-required" and r.task_id]
    count = 0
    for result in waiting:
        try:
            count += await cancel_task(host.handler(result.agent), result.task_id, context)
        except UnknownAgentError:
            continue
    return count
