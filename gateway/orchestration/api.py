"""The contract between patterns and the engine.

A pattern is ``async def pattern(run: Run, options: XOptions) -> Outcome``. It sees agents only by name and
calls them through ``run.step``, which does not tell it whether an agent is local or remote:
the engine turns each step into a child A2A task and owns limits, timeouts, retries, the
circuit breakers, fallbacks, cancellation and checkpoints. Patterns decide only what to do
with results, so they stay small, typed and testable against a scripted ``Run``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from gateway.errors import GatewayError
from gateway.runtime import FileInput, Usage

StepState = Literal["completed", "failed", "input-required", "rejected", "canceled", "skipped"]
OutcomeState = Literal["completed", "failed", "input-required"]


@dataclass(frozen=True)
class StepInput:
    """What one step sends to an agent."""

    text: str
    data: tuple[dict[str, Any], ...] = ()
    files: tuple[FileInput, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepResult:
    """What one step (one child task) produced."""

    agent: str
    state: StepState
    text: str = ""
    data: dict[str, Any] | list[Any] | None = None
    task_id: str = ""
    usage: Usage | None = None
    handoff_to: str = ""
    handoff_note: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the step completed."""
        return self.state == "completed"


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as the pattern sees it; the engine publishes it as the run's final artifact.

    ``reason`` is a failure's stable reason when the engine knows one (``permission-denied``: the
    caller may not run a step), published in the final status's metadata for an enclosing run.
    """

    state: OutcomeState
    text: str
    data: dict[str, Any] | list[Any] | None = None
    reason: str = ""


@dataclass(frozen=True)
class AgentInfo:
    """What a pattern may know about a participant (for routing and manager prompts)."""

    name: str
    description: str
    skills: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    circuit: str = "closed"
    """The agent's circuit breaker in this gateway (closed, half-open, open): how its recent calls went."""


@dataclass(frozen=True)
class Limits:
    """Bounds every run has by default; exceeding one ends the run with a clear message."""

    max_steps: int = 50
    max_rounds: int = 10
    max_hops: int = 8
    deadline_s: float = 600.0
    max_tokens: int | None = None
    max_cost: float | None = None
    reserve_tokens: int | None = None  # what a step holds of the budget while it runs (``budget``)
    reserve_cost: float | None = None
    over_budget: Literal["refuse", "trim"] = "refuse"
    step_timeout_s: float = 120.0
    retries: int = 2
    backoff_base_s: float = 0.2
    backoff_max_s: float = 5.0
    breaker_threshold: int = 5
    breaker_reset_s: float = 30.0


class OrchestrationError(GatewayError):
    """Base of the engine's errors."""

    message = "orchestration error"
    reason = "orchestration-error"


class LimitExceededError(OrchestrationError):
    """A run went past one of its limits; ``limit`` names which."""

    message = "limit exceeded"
    reason = "limit-exceeded"

    def __init__(self, limit: str, detail: str) -> None:
        super().__init__(f"{limit} limit reached: {detail}")
        self.limit = limit


class HandoffCycleError(OrchestrationError):
    """A handoff would return to an agent already on the path."""

    message = "handoff cycle"
    reason = "handoff-cycle"


class Run(Protocol):
    """One run of a workflow, as a pattern sees it."""

    name: str
    """The workflow's name (a hosted agent's: a bounded metrics label)."""
    request: StepInput
    participants: tuple[str, ...]
    limits: Limits

    async def step(self, agent: str, request: StepInput, *, label: str = "") -> StepResult:
        """Run ``agent`` on ``request`` as a child task and return its result.

        Retries, timeouts, the breaker and fallbacks are applied here; a step that still fails
        comes back with ``state="failed"`` and ``error`` set (the pattern's policy decides).
        Raises ``LimitExceededError`` when the run is out of steps, time or budget, and
        ``PermissionDeniedError`` when the run's caller may not run ``agent`` (nor a fallback).
        """
        ...

    async def progress(self, text: str) -> None:
        """Report run-level progress (a working status update on the run's task)."""
        ...

    def describe(self, agent: str) -> AgentInfo:
        """What the card of ``agent`` says about it."""
        ...

    def may_run(self, agent: str) -> str | None:
        """Why the run's caller may not have ``agent`` take a step (``step`` would raise ``PermissionDeniedError``).

        None when it may (the agent, or one of its fallbacks). A pattern whose model picks the next agent offers
        the model only agents the caller may run (``turns.runnable``); a step to another is still refused.
        """
        ...

    async def artifact(self, name: str, data: dict[str, Any] | list[Any]) -> None:
        """Replace the run's artifact ``name`` with ``data`` while the run goes on (a live view, e.g. a blackboard).

        ``steps`` and ``result`` are the engine's own (``ValueError``). A resumed run publishes it again.
        """
        ...

    def recorded(self, agents: Sequence[str], request: StepInput, label: str = "") -> str | None:
        """Which of ``agents`` the run's checkpoint holds the result of this very step for (a resumed run), else None.

        A pattern that picks an agent by what is happening now (which agent is idle) asks this first, so a
        resumed run gives each step to the agent whose finished result it holds instead of doing the step again.
        """
        ...


class PatternOptions(BaseModel):
    """Base of each pattern's options model: unknown options are refused at load."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Pattern = Callable[[Run, Any], Awaitable[Outcome]]


@dataclass(frozen=True)
class PatternSpec:
    """A named pattern: its function ``(run, options) -> Outcome`` and its options model.

    Each pattern module exports one ``SPEC``, registered under the ``switchboard.patterns`` entry points
    or named by import string (``gateway.orchestration.catalog``).
    """

    name: str
    run: Pattern
    options: type[PatternOptions]
    min_participants: int = 1
    check: Callable[[Any, tuple[str, ...]], None] | None = None
    """Checks at load what the options alone cannot: ``(options, participants)``; a ``ValueError`` refuses the file."""
