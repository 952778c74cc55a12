"""A run's token and cost budget, reserved before each step starts.

Reported usage arrives only when a step ends, so a budget checked only then lets a fan-out of ten
steps start all ten on the last token. Each step therefore reserves its estimate first, and the
reservation is released when the step ends, however it ends (a result, a cancel, an interrupt), and
what the step's agents reported is counted, however it ends too (tokens an agent spent are spent):

- the estimate is the run's ``reserve_tokens`` / ``reserve_cost`` limit when set; else, for tokens,
  the larger of the step agent's own ``max_tokens`` (an ``llm`` agent's bound on what it writes) and
  the most any step of this run has reported so far; for cost, the most any step has cost so far.
  Before the first step ends, an agent with no known bound reserves nothing (say ``reserve_*`` for it);
- a step whose estimate does not fit in what is left (the budget less what was spent and what running
  steps hold) is, by ``over_budget``, refused (``refuse``, the default: the run fails with
  ``LimitExceededError`` before the step starts, and its running steps are canceled) or trimmed
  (``trim``: the step is not run; it ends failed, saying why, and the pattern goes on without it).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.orchestration.api import LimitExceededError, Limits
from gateway.runtime import Usage


@dataclass(frozen=True)
class Reservation:
    """What one running step holds of the budget."""

    tokens: int = 0
    cost: float = 0.0


class Trimmed(Exception):
    """The step does not fit in the budget and the run's policy trims it; the message says why."""


class Budget:
    """A run's spending against its ``max_tokens`` and ``max_cost``, with the running steps' reservations."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.tokens = 0
        self.cost = 0.0
        self._held_tokens = 0
        self._held_cost = 0.0
        self._largest_tokens = 0
        self._largest_cost = 0.0

    def check(self) -> None:
        """Raise ``LimitExceededError`` when the budget is used up."""
        limits = self.limits
        if limits.max_tokens is not None and self.tokens >= limits.max_tokens:
            raise LimitExceededError("token", f"all {limits.max_tokens} tokens of the budget are used")
        if limits.max_cost is not None and self.cost >= limits.max_cost:
            raise LimitExceededError("cost", f"the budget of {limits.max_cost:g} is spent")

    def reserve(self, step: str, agent_max_tokens: int | None = None) -> Reservation:
        """Hold ``step``'s estimate; ``LimitExceededError`` (refuse) or ``Trimmed`` (trim) when it does not fit."""
        self.check()
        limits = self.limits
        tokens = limits.reserve_tokens
        if tokens is None:
            tokens = max(agent_max_tokens or 0, self._largest_tokens)
        cost = limits.reserve_cost if limits.reserve_cost is not None else self._largest_cost
        problem = ""
        if limits.max_tokens is not None and self.tokens + self._held_tokens + tokens > limits.max_tokens:
            problem = (
                f"{step} is estimated at {tokens} tokens, and {self.tokens} spent and {self._held_tokens} held "
                f"by running steps leave {max(limits.max_tokens - self.tokens - self._held_tokens, 0)} "
                f"of the {limits.max_tokens}-token budget"
            )
            kind = "token"
        elif limits.max_cost is not None and self.cost + self._held_cost + cost > limits.max_cost:
            left = max(limits.max_cost - self.cost - self._held_cost, 0.0)
            problem = f"{step} is estimated to cost {cost:g}, and {left:g} of the {limits.max_cost:g} budget is left"
            kind = "cost"
        if problem:
            if limits.over_budget == "trim":
                raise Trimmed(f"trimmed: {problem}")
            raise LimitExceededError(kind, problem)
        self._held_tokens += tokens
        self._held_cost += cost
        return Reservation(tokens, cost)

    def release(self, reservation: Reservation) -> None:
        """Give back what a step held, however it ended; what it reported is counted apart (``account``)."""
        self._held_tokens -= reservation.tokens
        self._held_cost -= reservation.cost

    def account(self, usage: Usage | None) -> None:
        """Count a step's reported usage; raises ``LimitExceededError`` when the run went past its budget."""
        self.spend(usage)
        limits = self.limits
        if limits.max_tokens is not None and self.tokens > limits.max_tokens:
            raise LimitExceededError("token", f"{self.tokens} tokens used of a {limits.max_tokens}-token budget")
        if limits.max_cost is not None and self.cost > limits.max_cost:
            raise LimitExceededError("cost", f"{self.cost:g} spent of a {limits.max_cost:g} budget")

    def spend(self, usage: Usage | None) -> None:
        """Count what a step's agent reported, without judging it: the step is ending another way (a cancel)."""
        if usage is not None:
            used = usage.input_tokens + usage.output_tokens
            self.tokens += used
            self.cost += usage.cost
            self._largest_tokens = max(self._largest_tokens, used)
            self._largest_cost = max(self._largest_cost, usage.cost)
