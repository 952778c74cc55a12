"""Magentic: a manager keeps a task ledger and a progress ledger and delegates one step at a time.

The manager is asked for the task ledger, ``{"facts": [...], "plan": [...]}``, then once per
iteration for the progress ledger: ``is_request_satisfied``, ``is_in_loop``,
``is_progress_being_made``, ``next_speaker`` and ``instruction_or_question`` (each a value or
``{"answer": ..., "reason": ...}``), optionally ``final_answer``; both as JSON in ``data`` or in the
text. The manager is shown only the team members the run's caller may run (``turns.runnable``: a
run whose caller may run none fails at once); naming another anyway fails the run with the reason
(the engine's check). The named agent gets the instruction. An iteration stalls when the manager reports a loop or
no progress, repeats the previous speaker and instruction, names no agent, answers without a
ledger, or the last delegated step failed; ``max_stalls`` stalls in a row make the manager re-plan
(a new task ledger), at most ``max_replans`` times, after which the run fails. The run completes
when the manager says the request is satisfied; ``max_iterations`` unsatisfied iterations fail it,
and an iteration past ``run.limits.max_rounds`` raises ``LimitExceededError``.

The ledgers are published live as the run's ``ledgers`` artifact (``Ledgers.view``: the task
ledger, each progress ledger, each stall's reason, the plans and the re-plan count), replaced each
time one arrives, so a subscriber (the dashboard) reads them as data rather than from the progress
text.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.turns import clip, ended, guard_round, json_object, require_participants, runnable

STEP_CHARS = 2000
ARTIFACT = "ledgers"
LEDGER_FORMAT = json.dumps(
    {
        "is_request_satisfied": {"answer": False, "reason": "..."},
        "is_in_loop": {"answer": False, "reason": "..."},
        "is_progress_being_made": {"answer": True, "reason": "..."},
        "next_speaker": {"answer": "AGENT", "reason": "..."},
        "instruction_or_question": {"answer": "...", "reason": "..."},
        "final_answer": "(only when the request is satisfied)",
    }
)


class MagenticOptions(PatternOptions):
    """The manager, its team, and the bounds on stalls, re-plans and iterations."""

    manager: str = ""  # default: the first participant
    agents: tuple[str, ...] = ()  # default: every participant but the manager
    max_stalls: int = Field(default=3, ge=1)
    max_replans: int = Field(default=2, ge=0)
    max_iterations: int | None = Field(default=None, ge=1)  # None: until run.limits.max_rounds
    context_steps: int = Field(default=5, ge=1)


@dataclass(frozen=True)
class TaskLedger:
    """What the manager knows and plans."""

    facts: list[str]
    plan: list[str]


@dataclass(frozen=True)
class ProgressLedger:
    """The manager's view after an iteration; ``valid`` is false when its reply held no ledger."""

    satisfied: bool = False
    in_loop: bool = False
    progress: bool = True
    speaker: str = ""
    instruction: str = ""
    final_answer: str = ""
    valid: bool = True


@dataclass
class Ledgers:
    """Everything the run has learnt, as its outcome data."""

    task: TaskLedger
    progress: list[dict[str, Any]] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    replans: int = 0
    stalls: list[dict[str, Any]] = field(default_factory=list)  # {iteration, reason, count}, for the live view

    def data(self, stopped_by: str) -> dict[str, Any]:
        """The outcome data."""
        return {
            "task_ledger": asdict(self.task),
            "progress_ledgers": self.progress,
            "steps": self.steps,
            "plans": self.plans,
            "replans": self.replans,
            "stopped_by": stopped_by,
        }

    def view(self) -> dict[str, Any]:
        """The live ``ledgers`` artifact: the ledgers so far, not the steps' outputs (the steps artifact has those)."""
        return {
            "task_ledger": asdict(self.task),
            "progress_ledgers": list(self.progress),  # copies: the entries are never changed, the lists grow
            "stalls": list(self.stalls),
            "plans": list(self.plans),
            "replans": self.replans,
        }


def _answer(ledger: dict[str, Any], key: str) -> Any:
    value = ledger.get(key)
    return value.get("answer") if isinstance(value, dict) else value


def _truth(value: Any, default: bool) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in {"true", "yes", "false", "no"}:
        return value.strip().lower() in {"true", "yes"}
    return default


def _strings(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(item) for item in value if str(item).strip()]
    return [line.strip() for line in str(value or "").splitlines() if line.strip()]


def task_ledger(reply: StepResult) -> TaskLedger:
    """The task ledger in a manager's reply; a reply without JSON is taken as the plan itself."""
    found = json_object(reply)
    if found is None:
        return TaskLedger([], _strings(reply.text))
    return TaskLedger(_strings(found.get("facts")), _strings(found.get("plan")))


def progress_ledger(reply: StepResult) -> ProgressLedger:
    """The progress ledger in a manager's reply (``valid=False`` when there is none)."""
    found = json_object(reply)
    if found is None or not ({"next_speaker", "is_request_satisfied"} & found.keys()):
        return ProgressLedger(valid=False)
    return ProgressLedger(
        satisfied=_truth(_answer(found, "is_request_satisfied"), False),
        in_loop=_truth(_answer(found, "is_in_loop"), False),
        progress=_truth(_answer(found, "is_progress_being_made"), True),
        speaker=str(_answer(found, "next_speaker") or "").strip(),
        instruction=str(_answer(found, "instruction_or_question") or "").strip(),
        final_answer=str(_answer(found, "final_answer") or ""),
    )


def _team(run: Run, agents: tuple[str, ...]) -> str:
    return "\n".join(f"- {name}: {run.describe(name).description}" for name in agents)


def plan_input(run: Run, agents: tuple[str, ...], ledgers: Ledgers | None, why: str) -> StepInput:
    """Ask the manager for a task ledger: the first one, or a new plan after a stall."""
    lines = [f"Request:\n{run.request.text}", "", f"Team:\n{_team(run, agents)}", ""]
    if ledgers is not None:
        lines += [f"We are stalled ({why}). Facts so far: {json.dumps(ledgers.task.facts)}"]
        lines += [f"Old plan: {json.dumps(ledgers.task.plan)}", f"Recent steps:\n{_recent(ledgers, 5)}", ""]
    lines.append('Reply with JSON only: {"facts": ["what we know or must find out", ...], "plan": ["step", ...]}')
    context = {"role": "replan" if ledgers else "plan", "request": run.request.text, "agents": list(agents)}
    return StepInput("\n".join(lines), ({"magentic": context}, *run.request.data), run.request.files)


def ledger_input(run: Run, agents: tuple[str, ...], ledgers: Ledgers, context_steps: int) -> StepInput:
    """Ask the manager for the progress ledger of the next iteration."""
    lines = [f"Request:\n{run.request.text}", "", f"Facts: {json.dumps(ledgers.task.facts)}"]
    lines += [f"Plan: {json.dumps(ledgers.task.plan)}", f"Team: {', '.join(agents)}"]
    lines += [f"Recent steps:\n{_recent(ledgers, context_steps) or '(none yet)'}", ""]
    lines.append(f"Reply with JSON only, in this shape: {LEDGER_FORMAT}")
    context = {"role": "progress", "task_ledger": asdict(ledgers.task), "steps": ledgers.steps[-context_steps:]}
    return StepInput("\n".join(lines), ({"magentic": context},))


def _recent(ledgers: Ledgers, count: int) -> str:
    return "\n".join(_line(step) for step in ledgers.steps[-count:])


def _line(step: dict[str, Any]) -> str:
    head = f"{step['iteration']}. [{step['agent']}] {step['instruction']}"
    return f"{head} -> {step['state']}: {clip(step['text'], STEP_CHARS)}"


def stall_reason(ledger: ProgressLedger, agents: tuple[str, ...], ledgers: Ledgers, failed: bool) -> str:
    """Why this iteration counts as a stall (``failed``: the step just before it failed), else empty."""
    last = ledgers.steps[-1] if ledgers.steps else None
    reasons = {
        "the manager's reply held no progress ledger": not ledger.valid,
        f"the manager named no agent of the team ({ledger.speaker or 'nobody'})": ledger.speaker not in agents,
        "the manager reports a loop": ledger.in_loop,
        "the manager reports no progress": not ledger.progress,
        "the last step failed": failed,
        "the same instruction to the same agent again": last is not None
        and (last["agent"], last["instruction"]) == (ledger.speaker, ledger.instruction),
    }
    return next((reason for reason, stalled in reasons.items() if stalled), "")


def team(participants: tuple[str, ...], options: MagenticOptions) -> tuple[str, tuple[str, ...]]:
    """The manager and the agents it delegates to: as named, else the first participant and the others."""
    manager = options.manager or participants[0]
    return manager, options.agents or tuple(name for name in participants if name != manager)


def check(options: MagenticOptions, participants: tuple[str, ...]) -> None:
    """At load: the manager and its team are participants, and the team is not empty."""
    require_participants(participants, (options.manager, *options.agents), "manager/agents")
    if not team(participants, options)[1]:
        raise ValueError("the manager has no team: name agents other than the manager")


async def run(run: Run, options: MagenticOptions) -> Outcome:
    """Plan, then ask for progress and delegate until the manager is satisfied or the bounds are hit."""
    manager, members = team(run.participants, options)
    agents = runnable(run, members, f"{manager}'s team")  # what the manager is told of and may pick
    await run.progress(f"{manager} planning")
    planned = await run.step(manager, plan_input(run, agents, None, ""), label="task ledger")
    if not planned.ok:
        return ended(planned, "planning", {})
    orchestrator = Orchestrator(run, options, manager, agents, Ledgers(task_ledger(planned)), members)
    orchestrator.ledgers.plans.append({"iteration": 0, **asdict(orchestrator.ledgers.task)})
    await run.artifact(ARTIFACT, orchestrator.ledgers.view())
    iteration = 0
    while options.max_iterations is None or iteration < options.max_iterations:
        iteration += 1
        outcome = await orchestrator.iterate(iteration)
        if outcome is not None:
            return outcome
    text = f"magentic: the request was not satisfied after {options.max_iterations} iterations"
    return Outcome("failed", text, orchestrator.ledgers.data("max_iterations"))


@dataclass
class Orchestrator:
    """The manager's loop state between iterations."""

    run: Run
    options: MagenticOptions
    manager: str
    agents: tuple[str, ...]
    ledgers: Ledgers
    members: tuple[str, ...] = ()  # the whole team: a member the manager was not shown is still delegated to
    stalls: int = 0
    failed: bool = False  # the step just delegated failed

    async def iterate(self, number: int) -> Outcome | None:
        """One iteration: the progress ledger, then a delegation or a re-plan; an outcome ends the run."""
        guard_round(self.run, number, "magentic")
        message = ledger_input(self.run, self.agents, self.ledgers, self.options.context_steps)
        reply = await self.run.step(self.manager, message, label=f"round {number}: progress ledger")
        if not reply.ok:
            return ended(reply, f"keeping the progress ledger (round {number})", self.ledgers.data("manager"))
        ledger = progress_ledger(reply)
        self.ledgers.progress.append({"iteration": number, **asdict(ledger)})
        team = self.members or self.agents
        why = "" if ledger.satisfied else stall_reason(ledger, team, self.ledgers, self.failed)
        self.stalls = self.stalls + 1 if why else 0
        if why:
            self.ledgers.stalls.append({"iteration": number, "reason": why, "count": self.stalls})
        await self.run.artifact(ARTIFACT, self.ledgers.view())
        if ledger.satisfied:
            return Outcome("completed", _final(ledger, self.ledgers), self.ledgers.data("satisfied"))
        if self.stalls >= self.options.max_stalls:
            return await self.replan(number, why)
        if why:
            await self.run.progress(f"round {number}: stalled ({why}), {self.stalls}/{self.options.max_stalls}")
        if ledger.speaker not in team:
            return None
        done = await self.delegate(ledger, number)
        self.failed = not done.ok
        if done.state == "input-required":
            return ended(done, f"working on {ledger.instruction!r}", self.ledgers.data("input-required"))
        return None

    async def replan(self, number: int, why: str) -> Outcome | None:
        """Ask the manager for a new task ledger, or fail the run when it may re-plan no more."""
        if self.ledgers.replans >= self.options.max_replans:
            text = f"magentic: stalled ({why}) after {self.ledgers.replans} re-plans"
            return Outcome("failed", text, self.ledgers.data("stalled"))
        await self.run.progress(f"round {number}: stalled ({why}); {self.manager} re-planning")
        message = plan_input(self.run, self.agents, self.ledgers, why)
        replanned = await self.run.step(self.manager, message, label=f"round {number}: re-plan")
        if not replanned.ok:
            return ended(replanned, "re-planning", self.ledgers.data("manager"))
        self.ledgers.task = task_ledger(replanned)
        self.ledgers.replans += 1
        self.ledgers.plans.append({"iteration": number, **asdict(self.ledgers.task)})
        self.stalls, self.failed = 0, False
        await self.run.artifact(ARTIFACT, self.ledgers.view())
        return None

    async def delegate(self, ledger: ProgressLedger, number: int) -> StepResult:
        """Send the manager's instruction to the agent it named and record the step."""
        request = self.run.request
        await self.run.progress(f"round {number}: {ledger.speaker}: {clip(ledger.instruction, 80)}")
        text = f"{ledger.instruction}\n\n(This is part of the request: {request.text})"
        context = {"request": request.text, "instruction": ledger.instruction, **asdict(self.ledgers.task)}
        message = StepInput(text, ({"magentic": context}, *request.data), request.files)
        done = await self.run.step(ledger.speaker, message, label=f"round {number}: {ledger.speaker}")
        step = {"iteration": number, "agent": ledger.speaker, "instruction": ledger.instruction}
        self.ledgers.steps.append({**step, "state": done.state, "text": done.text or done.error})
        return done


def _final(ledger: ProgressLedger, ledgers: Ledgers) -> str:
    done = [step for step in ledgers.steps if step["state"] == "completed"]
    return ledger.final_answer or (done[-1]["text"] if done else "")


SPEC = PatternSpec(name="magentic", run=run, options=MagenticOptions, min_participants=2, check=check)
