"""Agents for the cluster tests: ``(call, emit)`` runtimes on the ``LocalRunner``, and an executor on the SDK's path."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any, cast

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue import EventQueue
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import Part, TaskState

from gateway.agents.echo import EchoExecutor
from gateway.errors import PermissionDeniedError
from gateway.runtime import AgentCall, Emitter, Reply

TICK_S = 0.25
HOLDS_ENV = "SWITCHBOARD_TEST_HOLDS"  # the folder of the held agents' gates, shared by the test and its replicas
HOLD_S = 60.0  # a held step never released gives up: the test has failed by then
_HOLD_POLL_S = 0.02


async def ticker(call: AgentCall, emit: Emitter) -> Reply:
    """Counts to the number it is sent, one progress update every ``TICK_S``."""
    count = int(call.text)
    for n in range(count):
        await emit.progress(f"tick {n + 1} of {count}")
        await asyncio.sleep(TICK_S)
    return Reply(text=f"ticked {count}")


async def hold(task_id: str, step: int) -> None:
    """Wait until the test has released step ``step`` of task ``task_id`` (``release``), at most ``HOLD_S``.

    A gate across processes: the test, not the clock, decides how far a held agent gets, so it can put a
    subscriber or a push config in place before the events it must see are produced.
    """
    gates = Path(os.environ[HOLDS_ENV]) / task_id
    async with asyncio.timeout(HOLD_S):
        while not ((gates / str(step)).exists() or (gates / "all").exists()):  # noqa: ASYNC110 (across processes)
            await asyncio.sleep(_HOLD_POLL_S)


def release(holds: Path, task_id: str, through: int | None = None) -> None:
    """Let task ``task_id``'s held agent go on through step ``through`` (every step when None)."""
    gates = holds / task_id
    gates.mkdir(parents=True, exist_ok=True)
    for name in [str(step) for step in range(1, through + 1)] if through is not None else ["all"]:
        (gates / name).touch()


async def held_ticker(call: AgentCall, emit: Emitter) -> Reply:
    """``ticker``, each tick held until the test releases it (``hold``)."""
    count = int(call.text)
    for n in range(count):
        await hold(call.task_id, n + 1)
        await emit.progress(f"tick {n + 1} of {count}")
        await asyncio.sleep(TICK_S)
    return Reply(text=f"ticked {count}")


class _HeldQueue:
    """An event queue whose every event after the first (the task) waits for its step's release (``hold``)."""

    def __init__(self, queue: EventQueue, task_id: str) -> None:
        self._queue = queue
        self._task_id = task_id
        self._sent = 0

    async def enqueue_event(self, event: Any) -> None:
        self._sent += 1
        if self._sent > 1:
            await hold(self._task_id, self._sent - 1)
        await self._queue.enqueue_event(event)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._queue, name)


class _HeldExecutor(AgentExecutor):
    """An executor on the SDK's path whose events after the first are held until the test releases them."""

    def __init__(self, inner: AgentExecutor) -> None:
        self._inner = inner

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """The inner executor's work, one held step per event."""
        await self._inner.execute(context, cast(EventQueue, _HeldQueue(event_queue, context.task_id or "")))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """The inner executor's cancel, not held."""
        await self._inner.cancel(context, event_queue)


class HeldEchoExecutor(_HeldExecutor):
    """The bundled ``echo`` agent, held step by step (``_HeldExecutor``)."""

    def __init__(self) -> None:
        super().__init__(EchoExecutor())


class HeldStepperExecutor(_HeldExecutor):
    """``StepperExecutor``, held step by step (``_HeldExecutor``)."""

    def __init__(self) -> None:
        super().__init__(StepperExecutor())


async def stamper(call: AgentCall, emit: Emitter) -> Reply:
    """After ``settle`` seconds, ``count`` progress updates each carrying the time it was sent (ns since the epoch).

    Sent ``"count settle gap"``: the latency benchmark's probe (``tests/benchmarks/bench_cluster.py``).
    """
    count, settle, gap = call.text.split()
    await asyncio.sleep(float(settle))
    for _ in range(int(count)):
        await emit.progress(str(time.time_ns()))
        await asyncio.sleep(float(gap))
    return Reply(text="stamped")


PROBE_TICK_S = 0.1


def _probe_log(key: str, kind: str) -> None:
    """One line ``key pid kind ns`` appended to the file named by ``SWITCHBOARD_PROBE_LOG`` (shared by processes)."""
    with open(os.environ["SWITCHBOARD_PROBE_LOG"], "a") as log:
        log.write(f"{key} {os.getpid()} {kind} {time.time_ns()}\n")


async def _probe(name: str, call: AgentCall, emit: Emitter) -> Reply:
    """Sent ``"label ticks"``: works ``ticks`` times ``PROBE_TICK_S``, stamping each moment it runs; replies the same.

    Every moment its code runs is a stamp (start, each tick, end), so two executions of one step
    that overlap in time show as interleaved stamps; a cancel is stamped as such (no work after it).
    """
    label, ticks = call.text.split()
    key = f"{label}:{name}"
    _probe_log(key, "start")
    try:
        for n in range(int(ticks)):
            await asyncio.sleep(PROBE_TICK_S)
            _probe_log(key, "tick")
            if n % 5 == 0:
                await emit.progress(f"{name} tick {n + 1}")
    except asyncio.CancelledError:
        _probe_log(key, "canceled")
        raise
    _probe_log(key, "end")
    return Reply(text=call.text)


async def probe_a(call: AgentCall, emit: Emitter) -> Reply:
    """Step a of the failover tests' pipeline (``_probe``)."""
    return await _probe("a", call, emit)


async def probe_b(call: AgentCall, emit: Emitter) -> Reply:
    """Step b (``_probe``)."""
    return await _probe("b", call, emit)


async def probe_c(call: AgentCall, emit: Emitter) -> Reply:
    """Step c (``_probe``)."""
    return await _probe("c", call, emit)


async def asker(call: AgentCall, emit: Emitter) -> Reply:
    """Asks for a name (the task waits for input), then greets whoever answered: a follow-up on any replica."""
    if not call.history:
        return Reply(text="who is there?", state="input-required")
    return Reply(text=f"hello {call.text}")


class StepperExecutor(AgentExecutor):
    """An executor on the SDK's path: sent a number, that many progress updates ``TICK_S`` apart, then done.

    Sent ``ask``, it waits for input; the answer's turn (whose first event is a status update, not
    a ``Task``) works in four steps and completes greeting the answer, or, answered ``ask``, asks again.
    """

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Work in steps, or ask, as the message says."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        text = context.get_user_input().strip()
        if context.current_task is None:
            history = [context.message] if context.message else []
            await event_queue.enqueue_event(
                new_task(updater.task_id, updater.context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
        elif context.current_task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED and text != "ask":
            await _steps(updater, 4)
            await updater.complete(updater.new_agent_message([Part(text=f"hello {text}")]))
            return
        if text == "ask":
            await updater.requires_input(updater.new_agent_message([Part(text="who is there?")]))
            return
        await _steps(updater, int(text))
        await updater.complete(updater.new_agent_message([Part(text=f"stepped {text}")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task canceled."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(updater.new_agent_message([Part(text="canceled on request")]))


async def _steps(updater: TaskUpdater, count: int) -> None:
    for n in range(count):
        await updater.update_status(
            TaskState.TASK_STATE_WORKING, updater.new_agent_message([Part(text=f"step {n + 1} of {count}")])
        )
        await asyncio.sleep(TICK_S)


async def probe_lead(call: AgentCall, emit: Emitter) -> Reply:
    """Runs ``probe_a``'s logic in-process (``_probe`` as "a"), as the review lead reuses the specialists': only
    for a caller that the agents serving ``probe_a`` would admit (``AgentCall.may_reuse``), else refused unrun."""
    refusal = call.may_reuse(probe_a)
    if refusal is not None:
        raise PermissionDeniedError(refusal)
    return await _probe("a", call, emit)
