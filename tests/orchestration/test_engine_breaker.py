"""The circuit breaker: closed, open after consecutive failures, half-open for one trial call."""

from __future__ import annotations

from gateway.orchestration.breaker import BreakerBoard, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_open_the_circuit_and_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(clock=Clock())
    for ok in (False, True, False):
        assert breaker.acquire(2, 30)
        breaker.record(ok)
    assert breaker.state(2, 30) == "closed", "the success in between reset the count"
    assert breaker.acquire(2, 30)
    breaker.record(ok=False)
    assert breaker.state(2, 30) == "open" and not breaker.acquire(2, 30)


def test_after_the_reset_time_one_trial_call_decides() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock, failures=2, opened_at=clock.now)
    clock.now += 29.9
    assert not breaker.acquire(2, 30)
    clock.now += 0.1
    assert breaker.state(2, 30) == "half-open"
    assert breaker.acquire(2, 30) and not breaker.acquire(2, 30), "only one trial at a time"
    breaker.record(ok=False)
    assert breaker.state(2, 30) == "open", "a failed trial opens the circuit for another reset time"
    clock.now += 30
    assert breaker.acquire(2, 30)
    breaker.record(ok=True)
    assert breaker.state(2, 30) == "closed" and breaker.acquire(2, 30)


def test_a_trial_that_ends_without_a_verdict_frees_the_next_one() -> None:
    clock = Clock()
    breaker = CircuitBreaker(clock=clock, failures=3, opened_at=clock.now - 60)
    assert breaker.acquire(3, 30)
    breaker.release()
    assert breaker.acquire(3, 30)


def test_each_agent_has_one_breaker_judged_by_each_callers_threshold() -> None:
    board = BreakerBoard(clock=Clock())
    board("a").record(ok=False)
    assert board("a") is board("a") and board("b").failures == 0
    assert board("a").state(1, 30) == "open" and board("a").state(2, 30) == "closed"
