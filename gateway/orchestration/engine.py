"""The run engine: the ``Run`` a pattern sees, over child A2A tasks, with limits, resilience and checkpoints.

``EngineRun.step`` numbers steps in call order (the n-th call is step n, fixed before the first
await, so concurrent fan-outs number deterministically). A step whose result the checkpoint
holds returns it without calling the agent again: re-running a pattern from the start replays
every finished step and resumes after the last one. Otherwise the step runs as a child task
(``child_tasks``) under these rules, in order:

- limits: the step count, the run's deadline, the token and cost budgets (``LimitExceededError``);
- the agent's circuit breaker (``breaker``): an open circuit fails the step at once;
- a per-step timeout, after which the child task is canceled on its agent;
- retries with exponential backoff and full jitter, for retryable failures only (a timeout, or a
  failure the participant marked retryable); a task that failed or was rejected for a reason of
  its own is not retried;
- fallbacks: when the agent's step still fails, each alternate in ``fallbacks`` gets the request.

After each step the checkpoint is saved, the step's output is published as an artifact of the
run (``step-<n>-<agent>``) and its progress as status updates of the run's task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Message

from gateway.errors import UnknownAgentError
from gateway.executor import METADATA_KEY, message_input
from gateway.federation.hops import carried
from gateway.orchestration.api import (
    AgentInfo,
    LimitExceededError,
    Limits,
    OrchestrationError,
    Outcome,
    StepInput,
    StepResult,
)
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.child_tasks import ChildOutcome, ChildTask, StepLink, cancel_task, child_message
from gateway.orchestration.workflows import WorkflowPlan
from gateway.runtime import Usage
from gateway.runtimes import Host

logger = logging.getLogger(__name__)

CANCEL_TIMEOUT_S = 10.0
"""How long canceling one child task may take before the engine stops waiting."""
DEADLINE_GRACE_S = 5.0
"""Past the deadline, how long a pattern gets to notice (its next step raises) before it is stopped."""


class RunCanceledError(OrchestrationError):
    """The run was canceled while a step was running; the cancel request ends its task."""

    message = "the run was canceled"
    reason = "run-canceled"


class RunEvents(Protocol):
    """Where a run publishes: status updates and artifacts of the run's task (``UpdaterEmitter``)."""

    async def progress(self, text: str) -> None:
        """A working status update."""

    async def artifact(
        self,
        name: str,
        *,
        text: str | None = None,
        data: dict[str, Any] | list[Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """An artifact of the run's task."""


def step_links(record: RunRecord) -> list[dict[str, Any]]:
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


def step_input(message: Message) -> StepInput:
    """A request message as a step's input."""
    text, files, data = message_input(message)
    return StepInput(text=text, data=data, files=files)


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    """The sum of two usages (None when neither reported any)."""
    if more is None:
        return total
    if total is None:
        return more
    return Usage(
        total.input_tokens + more.input_tokens, total.output_tokens + more.output_tokens, total.cost + more.cost
    )


def _without_speaker(text: str, agent: str) -> str:
    """``"security: scanning"`` from agent ``security-reviewer`` reads ``"scanning"`` (no name twice)."""
    head, sep, rest = text.partition(":")
    if sep and rest and (head == agent or head in agent.split("-")):
        return rest.strip()
    return text


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
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.plan = plan
        self.record = record
        self.participants = plan.participants
        self.limits: Limits = plan.limits
        self.request = step_input(record.request)
        self.canceled = False
        self._host = host
        self._store = SqlRunStore(host.db)
        self._context = call_context
        self._emit = emit
        self._answer = answer
        self._clock = clock
        self._rng = rng or random.Random()
        self._numbered = 0
        self._tokens = 0
        self._cost = 0.0
        self._running: dict[int, ChildTask] = {}
        self._attempts = 0
        self._save_lock = asyncio.Lock()
        self._carried = carried(record.request)  # gateway path and trace context, passed to every step

    # -- the Run protocol ------------------------------------------------------------------

    async def step(self, agent: str, request: StepInput, *, label: str = "") -> StepResult:
        """Run ``agent`` on ``request`` as a child task, or replay its checkpointed result (see the module)."""
        if self.canceled:
            raise RunCanceledError
        if agent not in self.participants:
            raise UnknownAgentError(f"{agent!r} is not a participant of {self.plan.name}")
        self._numbered += 1
        number = self._numbered
        if number > self.limits.max_steps:
            raise LimitExceededError("step", f"{self.limits.max_steps} steps")
        label = label or f"step {number}"
        saved = self.record.steps.get(number)
        if saved is not None and saved.agent not in (agent, *self.plan.fallbacks.get(agent, ())):
            raise ReplayMismatchError(f"step {number} was {saved.agent}'s, and the pattern now asks {agent}")
        follow_up = self._follow_up(saved)
        if saved is not None and follow_up is None:
            self._account(saved.usage)
            return saved
        if follow_up is not None and self._answer is not None:
            request, self._answer = step_input(self._answer), None  # the caller's answer goes to the step that asked
        self._check_budget()
        self._check_deadline()
        result = await self._fallback_chain(number, agent, request, label, follow_up)
        if self.canceled:
            raise RunCanceledError
        if self._host.stopping:
            raise RunInterruptedError  # the step ended because its agent stopped: not a result to keep
        self.record.steps[number] = result
        await self.checkpoint()
        await self._publish(number, label, result)
        self._account(result.usage)
        return result

    async def progress(self, text: str) -> None:
        """A working status update on the run's task (none once the run is canceled: its task has ended)."""
        if not self.canceled:
            await self._emit.progress(text)

    def describe(self, agent: str) -> AgentInfo:
        """What the card of ``agent`` says about it."""
        return self._host.describe(agent)

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
            async with asyncio.timeout(max(self.remaining(), 0.0) + DEADLINE_GRACE_S) as deadline:
                outcome = await self.plan.pattern.run(self, self.plan.options)
        except TimeoutError:
            if not deadline.expired():
                raise
            outcome = self._limit_outcome(self._deadline_error())
        except Exception as exc:
            outcome = self._error_outcome(exc)
        if self.canceled:
            raise RunCanceledError
        if not isinstance(outcome, Outcome):
            return Outcome("failed", f"{self.plan.name}: the pattern returned {type(outcome).__name__}, not an Outcome")
        return outcome

    async def cancel(self) -> int:
        """Stop the run: no step starts again, every running child task is canceled; how many were."""
        self.canceled = True
        children = list(self._running.values())
        canceled = await asyncio.gather(*(self._cancel_child(c) for c in children))
        self.record.state = "canceled"
        await self.checkpoint()
        return sum(canceled)

    async def checkpoint(self) -> None:
        """Save the run's state (one write at a time, so a later save never loses to an earlier one)."""
        async with self._save_lock:
            await self._store.save(self.record)

    def remaining(self) -> float:
        """Seconds left before the run's deadline."""
        elapsed = self._clock() - self.record.started_ns / 1e9
        return self.limits.deadline_s - elapsed

    # -- limits ----------------------------------------------------------------------------

    def _deadline_error(self) -> LimitExceededError:
        return LimitExceededError("time", f"the run's {self.limits.deadline_s:g}s deadline passed")

    def _check_deadline(self) -> None:
        if self.remaining() <= 0:
            raise self._deadline_error()

    def _account(self, usage: Usage | None) -> None:
        if usage is not None:
            self._tokens += usage.input_tokens + usage.output_tokens
            self._cost += usage.cost
        limits = self.limits
        if limits.max_tokens is not None and self._tokens > limits.max_tokens:
            raise LimitExceededError("token", f"{self._tokens} tokens used of a {limits.max_tokens}-token budget")
        if limits.max_cost is not None and self._cost > limits.max_cost:
            raise LimitExceededError("cost", f"{self._cost:g} spent of a {limits.max_cost:g} budget")

    def _check_budget(self) -> None:
        limits = self.limits
        if limits.max_tokens is not None and self._tokens >= limits.max_tokens:
            raise LimitExceededError("token", f"all {limits.max_tokens} tokens of the budget are used")
        if limits.max_cost is not None and self._cost >= limits.max_cost:
            raise LimitExceededError("cost", f"the budget of {limits.max_cost:g} is spent")

    def _limit_outcome(self, exc: LimitExceededError) -> Outcome:
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
        first = leaves[0]
        if isinstance(first, UnknownAgentError):
            return Outcome("failed", f"{self.plan.name}: {first.detail}")
        if isinstance(first, ReplayMismatchError):
            return Outcome("failed", f"{self.plan.name} cannot resume this run: {first.detail}")
        logger.error("workflow %s failed on task %s", self.plan.name, self.record.task_id, exc_info=exc)
        return Outcome("failed", f"{self.plan.name} failed: {type(first).__name__}: {first}")

    # -- one step --------------------------------------------------------------------------

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
        usage: Usage | None = None
        for index, candidate in enumerate(candidates):
            if index:
                await self.progress(f"{label} · {candidates[index - 1]} failed; {candidate} takes over")
            result = await self._with_retries(number, candidate, request, label, follow_up if not index else None)
            usage = add_usage(usage, result.usage)
            if result.state != "failed":
                return dataclasses.replace(result, usage=usage)
            failures.append(result)
        if len(failures) == 1:
            return failures[0]
        why = "; ".join(f"{failure.agent}: {failure.error}" for failure in failures)
        return dataclasses.replace(failures[0], usage=usage, error=f"{agent} and its fallbacks failed ({why})")

    async def _with_retries(
        self, number: int, agent: str, request: StepInput, label: str, follow_up: tuple[str, str] | None
    ) -> StepResult:
        limits = self.limits
        breaker = self._host.breakers(agent)
        usage: Usage | None = None
        for attempt in range(limits.retries + 1):
            if not breaker.acquire(limits.breaker_threshold, limits.breaker_reset_s):
                return StepResult(agent, "failed", usage=usage, error=f"circuit open for {agent}")
            try:
                outcome = await self._attempt(number, agent, request, label, follow_up)
            except BaseException:
                breaker.release()
                raise
            result = outcome.result
            if result.state == "failed":
                breaker.record(ok=False)
            elif result.state in ("completed", "rejected"):
                breaker.record(ok=True)
            else:
                breaker.release()
            usage = add_usage(usage, result.usage)
            result = dataclasses.replace(result, usage=usage)
            if result.state != "failed" or not outcome.retryable or attempt == limits.retries:
                return result
            delay = self._rng.uniform(0, min(limits.backoff_max_s, limits.backoff_base_s * 2**attempt))
            if delay >= self.remaining():
                return result
            await self.progress(
                f"{label} · {agent}: {result.error}; retry {attempt + 1} of {limits.retries} in {delay:.2f}s"
            )
            await asyncio.sleep(delay)
            follow_up = None  # a retry starts a fresh child task
        raise AssertionError("unreachable: the last attempt returns")

    async def _attempt(
        self, number: int, agent: str, request: StepInput, label: str, follow_up: tuple[str, str] | None
    ) -> ChildOutcome:
        if self._host.stopping:
            raise RunInterruptedError
        try:
            handler = self._host.handler(agent)
        except UnknownAgentError as exc:
            return ChildOutcome(StepResult(agent, "failed", error=exc.detail))
        record = self.record
        link = StepLink(record.task_id, record.context_id, record.run_id, number, record.hops + 1, *self._carried)
        child = ChildTask(agent, handler, self._context)
        timeout = min(self.limits.step_timeout_s, self.remaining())

        async def forward(text: str) -> None:
            await self.progress(f"{label} · {agent}: {_without_speaker(text, agent)}")

        await self.progress(f"{label} · {agent}: {'answer sent' if follow_up else 'started'}")
        self._attempts += 1
        key = self._attempts
        self._running[key] = child
        consumer = asyncio.create_task(child.run(child_message(request, link, follow_up=follow_up), forward))
        try:
            done, _ = await asyncio.wait({consumer}, timeout=max(timeout, 0.0))
        except asyncio.CancelledError:
            await self._abandon(child, consumer)
            raise
        finally:
            self._running.pop(key, None)
        if consumer in done:
            return self._consumed(agent, child, consumer)
        await self._abandon(child, consumer)
        if timeout < self.limits.step_timeout_s:
            raise self._deadline_error()
        error = f"{agent} did not finish within {timeout:g}s"
        return ChildOutcome(StepResult(agent, "failed", task_id=child.task_id, error=error), retryable=True)

    @staticmethod
    def _consumed(agent: str, child: ChildTask, consumer: asyncio.Task[ChildOutcome]) -> ChildOutcome:
        exc = consumer.exception()
        if exc is None:
            return consumer.result()
        # A participant that breaks the protocol, or a handler error: the step fails with the reason.
        detail = str(exc) or type(exc).__name__
        logger.warning("step on %s failed: %s", agent, detail, exc_info=exc)
        result = StepResult(agent, "failed", task_id=child.task_id, error=f"{agent}: {detail}")
        return ChildOutcome(result, retryable=getattr(exc, "retryable", False) is True)

    async def _abandon(self, child: ChildTask, consumer: asyncio.Task[ChildOutcome]) -> None:
        """Cancel the child on its agent (best effort, bounded), then stop following it."""
        await self._cancel_child(child)
        if not consumer.done():
            consumer.cancel()
        await asyncio.wait({consumer}, timeout=CANCEL_TIMEOUT_S)
        if consumer.done() and not consumer.cancelled():
            consumer.exception()  # retrieved, so an abandoned child's error is not logged as unhandled

    @staticmethod
    async def _cancel_child(child: ChildTask) -> bool:
        try:
            return await asyncio.wait_for(asyncio.shield(child.cancel()), CANCEL_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("could not cancel %s task %s: %s", child.agent, child.task_id, exc)
            return False

    async def _publish(self, number: int, label: str, result: StepResult) -> None:
        if result.text or result.data is not None:
            link = {"step": number, "agent": result.agent, "state": result.state, "task_id": result.task_id}
            await self._emit.artifact(
                f"step-{number}-{result.agent}",
                text=result.text or None,
                data=result.data,
                metadata={METADATA_KEY: link},
            )
        ending = f"{label} · {result.agent}: {result.state}"
        await self.progress(f"{ending} ({result.error})" if result.error else ending)


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
