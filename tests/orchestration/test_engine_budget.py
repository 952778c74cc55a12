"""The run's budget in the engine: every ending of a step gives back what it held; a trimmed step is no duration."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import AgentBusyError
from gateway.orchestration.api import Limits
from gateway.telemetry import metrics
from tests.orchestration.replay_harness import Answer, execute, new_record, plan

RACE = "tests.team_patterns.race:SPEC"


@pytest.mark.parametrize("late", range(12))
async def test_a_step_canceled_by_a_fan_out_gives_back_its_reservation_to_a_later_step(late: int) -> None:
    # fast answers and spends 30 tokens; slow answers `late` loop passes later, and is canceled when fast wins,
    # whatever it is doing then: waiting on its agent, or (for some values of `late`) having its answer saved.
    # The reporter then reserves 40: 30 spent + 40 fits in 100, but not with slow's 40 still held.
    def script(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        if agent == "fast":
            return Answer("fast answer", tokens=30)
        if agent == "slow":
            return Answer("slow answer", delay=late)
        return Answer(f"report: {text}")

    flow = plan(RACE, ["fast", "slow", "reporter"], limits=Limits(max_tokens=100, reserve_tokens=40))
    run = await execute(flow, new_record("go"), script)

    assert run.outcome.state == "completed", run.outcome.text
    assert run.outcome.text == "report: fast won: fast answer"


@pytest.mark.parametrize("late", range(12))
async def test_the_tokens_of_a_step_canceled_after_its_agent_answered_count_against_the_budget(late: int) -> None:
    # As above, but slow reports 50 tokens when it answers. Canceled before it answered, it spent nothing: the
    # reporter's 40 fit beside fast's 30. Canceled once it answered (its answer being saved), its 50 were spent all
    # the same: 30 + 50 spent leave 20 of 100, and the reporter is refused.
    def script(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        if agent == "fast":
            return Answer("fast answer", tokens=30)
        if agent == "slow":
            return Answer("slow answer", tokens=50, delay=late)
        return Answer(f"report: {text}")

    flow = plan(RACE, ["fast", "slow", "reporter"], limits=Limits(max_tokens=100, reserve_tokens=40))
    run = await execute(flow, new_record("go"), script)

    if "slow" in run.answered:
        assert run.outcome.state == "failed", run.outcome.text
        assert "report · reporter is estimated at 40 tokens, and 80 spent and 0 held" in run.outcome.text
    else:
        assert run.outcome.state == "completed", run.outcome.text
        assert run.outcome.text == "report: fast won: fast answer"


async def test_the_tokens_of_a_failed_try_count_when_its_agent_turns_busy_and_a_fallback_takes_over() -> None:
    # a fails retryably having spent 70 tokens, is busy when retried, and its fallback b does the step: the step
    # spent a's 70, so c's 40 no longer fit in 100.
    def script(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        if agent == "a" and call == 1:
            return Answer("a slipped", state="failed", retryable=True, tokens=70)
        if agent == "a":
            raise AgentBusyError("agent 'a' is busy", retry_after_s=1)
        return Answer(f"{agent} did it")

    limits = Limits(max_tokens=100, reserve_tokens=40, retries=1, backoff_base_s=0.001)
    flow = plan("sequential", ["a", "c"], limits=limits, fallbacks={"a": ["b"]})
    run = await execute(flow, new_record("go"), script)

    assert [agent for agent, _ in run.calls] == ["a", "a", "b"], "c never ran"
    assert run.outcome.state == "failed", run.outcome.text
    assert "c is estimated at 40 tokens, and 70 spent" in run.outcome.text, run.outcome.text


def step_durations(pattern: str) -> float:
    name = "switchboard_workflow_step_duration_seconds_count"
    return metrics.REGISTRY.get_sample_value(name, {"pattern": pattern}) or 0.0


async def test_a_trimmed_step_is_not_counted_as_a_step_duration() -> None:
    def script(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        return Answer(f"{agent} did it", tokens=10)

    limits = Limits(max_tokens=800, reserve_tokens=250, over_budget="trim")
    flow = plan("concurrent", ["a", "b", "c", "d"], {"min_successes": 3}, limits)
    before = step_durations("concurrent")
    run = await execute(flow, new_record("go"), script)

    assert run.outcome.state == "completed", run.outcome.text
    assert [agent for agent, _ in run.calls] == ["a", "b", "c"], "three reservations of 250 fit in 800"
    assert any(line.startswith("trimmed: step 4/4 · d is estimated at 250") for line in run.events.lines)
    assert step_durations("concurrent") - before == 3, "the trimmed step never ran: it has no duration"
