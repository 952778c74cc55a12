"""A workflow file, checked and resolved: its pattern, options, limits and fallbacks.

The registry checks every workflow when it loads the agents folder (``check_workflows``), so a
workflow that names an unknown pattern, option or agent, or that includes itself through nested
workflows, stops the gateway from starting with a message naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.orchestration.api import Limits, OrchestrationError, PatternOptions, PatternSpec
from gateway.orchestration.catalog import PatternNotFoundError
from gateway.orchestration.catalog import pattern as find_pattern
from gateway.spec import NAME_PATTERN, AgentSpec, WorkflowRuntime

ENGINE_OPTIONS = frozenset({"fallbacks"})
"""Options the engine takes for itself before the pattern validates the rest."""


class InvalidWorkflowError(OrchestrationError):
    """A workflow file that cannot run; ``field`` names the part of the file at fault."""

    message = "invalid workflow"
    reason = "invalid-workflow"

    def __init__(self, field: str, detail: str, *, workflow: str = "") -> None:
        super().__init__(detail)
        self.field = field
        self.workflow = workflow


class _EngineOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fallbacks: dict[Annotated[str, Field(pattern=NAME_PATTERN)], list[Annotated[str, Field(pattern=NAME_PATTERN)]]] = {}


def engine_options_schema(ref_template: str) -> dict[str, Any]:
    """The JSON Schema of the options the engine takes for itself (``ENGINE_OPTIONS``)."""
    return _EngineOptions.model_json_schema(ref_template=ref_template)


@dataclass(frozen=True)
class WorkflowPlan:
    """A workflow ready to run."""

    name: str
    pattern: PatternSpec
    participants: tuple[str, ...]
    options: PatternOptions
    limits: Limits
    fallbacks: Mapping[str, tuple[str, ...]]
    fingerprint: str

    def agents(self) -> tuple[str, ...]:
        """Every agent a run may call: the participants, then their fallbacks."""
        extra = (alt for alts in self.fallbacks.values() for alt in alts)
        return tuple(dict.fromkeys((*self.participants, *extra)))


def _problems(exc: ValidationError, prefix: str) -> str:
    return "; ".join(f"{'.'.join(map(str, (prefix, *e['loc'])))}: {e['msg']}" for e in exc.errors())


def fingerprint(runtime: WorkflowRuntime) -> str:
    """What a checkpoint must match to be resumed: the pattern, participants and options (not the limits)."""
    shape = {"pattern": runtime.pattern, "participants": runtime.participants, "options": runtime.options}
    return hashlib.sha256(json.dumps(shape, sort_keys=True, default=str).encode()).hexdigest()[:32]


def plan_workflow(spec: AgentSpec) -> WorkflowPlan:
    """Resolve the pattern and validate the options of workflow ``spec``; ``InvalidWorkflowError`` if they fail."""
    runtime = spec.runtime
    if not isinstance(runtime, WorkflowRuntime):
        raise InvalidWorkflowError("runtime.kind", f"{spec.name} is not a workflow")
    try:
        pattern = find_pattern(runtime.pattern, spec.file.parent if spec.file is not None else None)
    except PatternNotFoundError as exc:
        raise InvalidWorkflowError("runtime.pattern", exc.detail) from exc
    participants = tuple(runtime.participants)
    if len(participants) < pattern.min_participants:
        raise InvalidWorkflowError(
            "runtime.participants", f"{pattern.name} needs at least {pattern.min_participants} participants"
        )
    engine_values = {k: v for k, v in runtime.options.items() if k in ENGINE_OPTIONS}
    pattern_values = {k: v for k, v in runtime.options.items() if k not in ENGINE_OPTIONS}
    try:
        engine = _EngineOptions.model_validate(engine_values)
        options = pattern.options.model_validate(pattern_values)
    except ValidationError as exc:
        raise InvalidWorkflowError("runtime.options", _problems(exc, "runtime.options")) from exc
    if pattern.check is not None:
        try:
            pattern.check(options, participants)
        except ValueError as exc:
            raise InvalidWorkflowError("runtime.options", str(exc)) from exc
    strays = sorted(set(engine.fallbacks) - set(participants))
    if strays:
        raise InvalidWorkflowError("runtime.options.fallbacks", f"fallbacks for non-participants: {', '.join(strays)}")
    limits = dataclasses.replace(Limits(), **runtime.limits.model_dump(exclude_none=True))
    return WorkflowPlan(
        name=spec.name,
        pattern=pattern,
        participants=participants,
        options=options,
        limits=limits,
        fallbacks={agent: tuple(alts) for agent, alts in engine.fallbacks.items()},
        fingerprint=fingerprint(runtime),
    )


def check_workflows(specs: Mapping[str, AgentSpec]) -> dict[str, WorkflowPlan]:
    """Plan every workflow among ``specs``; checks that each names known agents and that none includes itself.

    Raises ``InvalidWorkflowError`` whose ``workflow`` and ``field`` name the workflow and the field at fault.
    """
    plans: dict[str, WorkflowPlan] = {}
    for name, spec in specs.items():
        if not isinstance(spec.runtime, WorkflowRuntime):
            continue
        try:
            plans[name] = plan = plan_workflow(spec)
        except InvalidWorkflowError as exc:
            raise _at(name, exc) from exc
        for field, agents in (
            ("runtime.participants", plan.participants),
            ("runtime.options.fallbacks", plan.agents()),
        ):
            unknown = [agent for agent in agents if agent not in specs]
            if unknown:
                raise _at(name, InvalidWorkflowError(field, f"unknown agent(s): {', '.join(unknown)}"))
    for name in plans:
        cycle = _cycle_from(name, plans, [])
        if cycle:
            path = " -> ".join(cycle)
            raise _at(name, InvalidWorkflowError("runtime.participants", f"workflows include each other: {path}"))
    return plans


def _at(name: str, exc: InvalidWorkflowError) -> InvalidWorkflowError:
    return InvalidWorkflowError(exc.field, exc.detail, workflow=name)


def _cycle_from(name: str, plans: Mapping[str, WorkflowPlan], path: list[str]) -> list[str]:
    if name in path:
        return [*path[path.index(name) :], name]
    plan = plans.get(name)
    if plan is None:
        return []
    for agent in plan.agents():
        cycle = _cycle_from(agent, plans, [*path, name])
        if cycle:
            return cycle
    return []
