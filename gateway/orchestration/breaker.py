"""Circuit breakers, one per agent, shared by every run in the process.

Closed: calls pass; each failure counts, a success resets the count. After ``threshold``
consecutive failures the circuit opens: calls fail at once, without reaching the agent. After
``reset_s`` it is half-open: one trial call passes (others still fail at once); its success
closes the circuit, its failure opens it again for another ``reset_s``.

The thresholds are each run's own (``Limits.breaker_threshold`` / ``breaker_reset_s``); the
count and the clock are the agent's, whoever called it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

BreakerState = Literal["closed", "open", "half-open"]


@dataclass
class CircuitBreaker:
    """The breaker of one agent."""

    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    trial_running: bool = False

    def state(self, threshold: int, reset_s: float) -> BreakerState:
        """Where the circuit is, judged with the caller's ``threshold`` and ``reset_s``."""
        if self.failures < threshold or self.opened_at is None:
            return "closed"
        return "half-open" if self.clock() - self.opened_at >= reset_s else "open"

    def acquire(self, threshold: int, reset_s: float) -> bool:
        """Whether a call may go ahead now; in half-open, only the one trial call may."""
        state = self.state(threshold, reset_s)
        if state == "closed":
            return True
        if state == "half-open" and not self.trial_running:
            self.trial_running = True
            return True
        return False

    def record(self, ok: bool) -> None:
        """The outcome of a call that was let through."""
        self.trial_running = False
        if ok:
            self.failures, self.opened_at = 0, None
            return
        self.failures += 1
        self.opened_at = self.clock()

    def release(self) -> None:
        """A call that was let through ended without an outcome that counts (canceled, input needed)."""
        self.trial_running = False


@dataclass
class BreakerBoard:
    """Every agent's breaker, created on first use."""

    clock: Callable[[], float] = time.monotonic
    breakers: dict[str, CircuitBreaker] = field(default_factory=dict)

    def __call__(self, agent: str) -> CircuitBreaker:
        """The breaker of ``agent``."""
        breaker = self.breakers.get(agent)
        if breaker is None:
            breaker = self.breakers[agent] = CircuitBreaker(clock=self.clock)
        return breaker
