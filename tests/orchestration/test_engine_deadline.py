"""A run's deadline is a budget of time spent running, measured on a monotonic clock and kept in its checkpoint.

A wall-clock step (NTP, a VM restored from a snapshot) does not move it; a run resumed after a
restart gets the budget it had left at its last checkpoint, and the time the gateway was down (or
a paused run waited for its answer) does not count. The clock is injected: no test sleeps.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from gateway.orchestration.api import Limits
from gateway.orchestration.checkpoints import RunRecord
from tests.orchestration.replay_harness import Answer, Script, execute, new_record, plan

HOUR_NS = 3600 * 10**9


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def taking(clock: Clock, seconds: float) -> Script:
    """Agents that answer after ``seconds`` on ``clock``."""

    def answer(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        clock.now += seconds
        return Answer(f"{agent} did it")

    return answer


def three_steps(deadline_s: float) -> Any:
    return plan("sequential", ["a", "b", "c"], limits=Limits(deadline_s=deadline_s, retries=0))


def restarted(row: tuple[Any, ...], downtime_ns: int) -> RunRecord:
    """The record a gateway that was down ``downtime_ns`` reads back: the run started that much longer ago."""
    record = RunRecord.from_row(row)
    return dataclasses.replace(record, started_ns=record.started_ns - downtime_ns)


async def test_a_wall_clock_step_does_not_end_a_run() -> None:
    record = new_record("go")
    record.started_ns = time.time_ns() - HOUR_NS  # the wall clock jumped an hour ahead since the run started

    run = await execute(three_steps(600), record, taking(Clock(50.0), 1))

    assert run.outcome.state == "completed", run.outcome.text


async def test_each_checkpoint_keeps_the_time_the_run_has_spent() -> None:
    clock = Clock(1000.0)
    run = await execute(three_steps(600), new_record("go"), taking(clock, 100), clock=clock)

    spent = [RunRecord.from_row(row).elapsed_ns for row in run.checkpoints]
    assert spent[:3] == [100 * 10**9, 200 * 10**9, 300 * 10**9]


async def test_the_time_the_gateway_was_down_does_not_count_against_a_resumed_run() -> None:
    first = Clock(1000.0)
    whole = await execute(three_steps(250), new_record("go"), taking(first, 100), clock=first)
    assert whole.outcome.state == "completed", "the third step starts at 200s, within 250s"

    after_one = restarted(whole.checkpoints[0], downtime_ns=HOUR_NS)
    resumed = await execute(three_steps(250), after_one, taking(Clock(0.0), 100))  # on the process's own clock

    assert resumed.outcome == whole.outcome
    assert [agent for agent, _ in resumed.calls] == ["b", "c"]


async def test_a_resumed_run_does_not_get_a_fresh_budget() -> None:
    first = Clock(1000.0)
    whole = await execute(three_steps(150), new_record("go"), taking(first, 100), clock=first)
    assert whole.outcome.text == "time limit reached: the run's 150s deadline passed"

    second = Clock(0.0)
    resumed = await execute(three_steps(150), restarted(whole.checkpoints[0], 0), taking(second, 100), clock=second)

    assert resumed.outcome == whole.outcome, "50s were left after step 1: step 2 runs, step 3 does not"
    assert [agent for agent, _ in resumed.calls] == ["b"]


def asks_first(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
    if agent == "a" and text == "go":
        return Answer("which colour?", "input-required")
    return Answer(f"{agent} did it with {text}")


async def test_a_run_answered_an_hour_after_it_asked_for_input_goes_on() -> None:
    paused = await execute(three_steps(600), new_record("go"), asks_first)
    assert paused.outcome.state == "input-required"

    continued = await execute(three_steps(600), restarted(paused.checkpoints[-1], HOUR_NS), asks_first, answer="blue")

    assert continued.outcome.state == "completed", continued.outcome.text
    assert [text for _, text in continued.calls] == ["blue", "a did it with blue", "b did it with a did it with blue"]
