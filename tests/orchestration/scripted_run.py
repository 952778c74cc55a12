"""``ScriptedRun``: a ``Run`` whose agents are scripted, for testing patterns without the engine.

Each agent is a responder ``(agent, StepInput) -> StepResult`` (plain or async). The run records
every step in order and every progress message, and enforces ``limits.max_steps`` the way the
engine does: the step past the limit raises ``LimitExceededError`` instead of running.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.errors import PermissionDeniedError, UnknownAgentError
from gateway.orchestration.api import (
    AgentInfo,
    LimitExceededError,
    Limits,
    Outcome,
    StepInput,
    StepResult,
    StepState,
)
from gateway.runtime import AgentCall, Emitter, Runtime

Responder = Callable[[str, StepInput], StepResult | Awaitable[StepResult]]
Answer = str | StepResult | Responder


@dataclass(frozen=True)
class RecordedStep:
    """One step the pattern took: who, what was sent, under which label, and what came back."""

    agent: str
    request: StepInput
    label: str
    result: StepResult


@dataclass
class ScriptedRun:
    """A ``Run`` over scripted agents; see the module docstring."""

    participants: tuple[str, ...]
    responders: Mapping[str, Responder]
    request: StepInput = field(default_factory=lambda: StepInput(text=""))
    limits: Limits = field(default_factory=Limits)
    infos: Mapping[str, AgentInfo] = field(default_factory=dict)
    refusals: Mapping[str, str] = field(default_factory=dict)  # may_run's answers
    steps: list[RecordedStep] = field(default_factory=list)
    progress_messages: list[str] = field(default_factory=list)
    artifacts: list[tuple[str, Any]] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    started: int = 0
    name: str = "scripted"

    async def step(self, agent: str, request: StepInput, *, label: str = "") -> StepResult:
        """Answer with ``agent``'s responder; raises ``LimitExceededError`` past ``limits.max_steps``."""
        if agent not in self.participants:
            raise UnknownAgentError(f"{agent!r} is not a participant of this run")
        if self.started >= self.limits.max_steps:
            raise LimitExceededError("step", f"{self.limits.max_steps} steps")
        if agent in self.refusals:
            raise PermissionDeniedError(self.refusals[agent])
        self.started += 1
        responder = self.responders.get(agent)
        if responder is None:
            raise UnknownAgentError(f"no script for {agent!r}")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            answer = responder(agent, request)
            result = await answer if inspect.isawaitable(answer) else answer
        finally:
            self.in_flight -= 1
        assert isinstance(result, StepResult), f"{agent}'s script answered {result!r}"
        self.steps.append(RecordedStep(agent, request, label, result))
        return result

    async def progress(self, text: str) -> None:
        """Remember a progress message."""
        self.progress_messages.append(text)

    async def artifact(self, name: str, data: Any) -> None:
        """Remember an artifact's new value."""
        self.artifacts.append((name, data))

    def describe(self, agent: str) -> AgentInfo:
        """The scripted card facts of ``agent`` (a bare description when none were given)."""
        return self.infos.get(agent) or AgentInfo(name=agent, description=f"the {agent} agent")

    def may_run(self, agent: str) -> str | None:
        """Why the caller may not run ``agent``: as ``refusals`` says (none by default)."""
        return self.refusals.get(agent)

    def recorded(self, agents: Sequence[str], request: StepInput, label: str = "") -> str | None:
        """Nothing is checkpointed here."""
        return None

    @property
    def agents_called(self) -> list[str]:
        """Every step's agent, in order."""
        return [step.agent for step in self.steps]

    def inputs_of(self, agent: str) -> list[StepInput]:
        """What ``agent`` was sent, in order."""
        return [step.request for step in self.steps if step.agent == agent]


def data_of(outcome: Outcome) -> dict[str, Any]:
    """An outcome's data, which every pattern here gives as an object."""
    assert isinstance(outcome.data, dict), f"outcome data is {outcome.data!r}"
    return outcome.data


def result(
    text: str = "", *, data: Any = None, state: StepState = "completed", error: str = "", agent: str = ""
) -> StepResult:
    """A step result, briefly (as a scripted answer, ``agent`` is filled in with the answering agent)."""
    return StepResult(agent=agent, state=state, text=text, data=data, error=error)


def _responder(answer: Answer) -> Responder:
    if callable(answer):
        return answer
    fixed = answer if isinstance(answer, StepResult) else result(answer)
    return lambda agent, _request: dataclasses.replace(fixed, agent=agent)


def always(answer: Answer) -> Responder:
    """A responder giving the same answer every time (a text, a result, or a responder)."""
    return _responder(answer)


def in_order(*answers: Answer, then: Answer | None = None) -> Responder:
    """A responder giving ``answers`` one per call, then ``then`` forever (or failing the test)."""
    queue = [_responder(answer) for answer in answers]
    fallback = _responder(then) if then is not None else None

    def respond(agent: str, request: StepInput) -> StepResult | Awaitable[StepResult]:
        if queue:
            return queue.pop(0)(agent, request)
        assert fallback is not None, f"{agent} was called more often than scripted"
        return fallback(agent, request)

    return respond


def scripted(
    participants: Sequence[str] | Mapping[str, Answer],
    *,
    request: str | StepInput = "",
    limits: Limits | None = None,
    infos: Iterable[AgentInfo] = (),
) -> ScriptedRun:
    """A ``ScriptedRun``: ``participants`` maps each agent to its answer(s), in participant order."""
    answers = participants if isinstance(participants, Mapping) else {name: f"{name} here" for name in participants}
    return ScriptedRun(
        participants=tuple(answers),
        responders={name: _responder(answer) for name, answer in answers.items()},
        request=request if isinstance(request, StepInput) else StepInput(text=request),
        limits=limits or Limits(),
        infos={info.name: info for info in infos},
    )


def from_runtime(runtime: Runtime, emit: Emitter) -> Responder:
    """A responder that calls a real agent runtime, as the engine's child task would."""

    async def respond(agent: str, request: StepInput) -> StepResult:
        call = AgentCall(text=request.text, files=request.files, data=request.data, metadata=dict(request.metadata))
        reply = await runtime(call, emit)
        return StepResult(
            agent=agent,
            state=reply.state,
            text=reply.text,
            data=reply.data,
            usage=reply.usage,
            handoff_to=reply.handoff_to,
            handoff_note=reply.handoff_note,
            error=reply.text if reply.state == "failed" else "",
        )

    return respond
