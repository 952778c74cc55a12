"""Supervisor (hierarchical): a planner splits the request into steps, workers do them, a reviewer
approves the combined results or asks for a revision.

The plan is ``data.steps`` (a list of ``{agent?, task}`` or strings) or a numbered/bulleted list in
the planner's text, where ``worker: task`` assigns a step. An unassigned step goes to the worker
whose card (description, skills, tags, examples) best matches the task (``matching``). The planner
is told only of the workers the run's caller may run, and an unassigned step goes only to one of
them (``turns.runnable``: a caller who may run none fails the run at once); a step the planner
assigns to another anyway fails the run with the reason (the engine's check). Workers run
in plan order, each seeing the results so far; a worker may itself be a workflow. The reviewer
revises with ``REVISE`` in its text or ``data.approved == false`` (feedback from ``data.feedback``
or its text); the planner then plans the revision. Still unapproved after ``max_revisions`` ends
the run ``failed`` with every result in data. Each review round counts against
``run.limits.max_rounds`` (``LimitExceededError`` past it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from pydantic import Field

from gateway.orchestration.api import AgentInfo, Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.matching import best
from gateway.orchestration.turns import (
    clip,
    ended,
    flag,
    guard_round,
    has_keyword,
    require_participants,
    runnable,
    unfinished,
)

RESULT_CHARS = 4000
_LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+(.+?)\s*$")
_ASSIGNED = re.compile(r"^\**\[?([A-Za-z][\w.-]*)\]?\**\s*:\s*(.+)$")


class SupervisorOptions(PatternOptions):
    """Who plans, who works, who reviews, and how many revisions the reviewer may ask for."""

    planner: str = ""  # default: the first participant
    workers: tuple[str, ...] = ()  # default: every participant but the planner
    reviewer: str = ""  # default: the planner
    max_revisions: int = Field(default=1, ge=0)
    revise_keyword: str = Field(default="REVISE", min_length=1)
    on_worker_failure: Literal["fail", "continue"] = "fail"


@dataclass(frozen=True)
class PlannedStep:
    """One step of the plan: its task and the worker it went to."""

    task: str
    agent: str


@dataclass(frozen=True)
class StepReport:
    """What one worker did with one step."""

    round: int
    step: int
    agent: str
    task: str
    state: str
    text: str


@dataclass(frozen=True)
class Roles:
    """The resolved planner, workers and reviewer."""

    planner: str
    workers: tuple[str, ...]
    reviewer: str


def roles(participants: tuple[str, ...], options: SupervisorOptions) -> Roles:
    """The planner, workers and reviewer: as named, else by participant order."""
    planner = options.planner or participants[0]
    workers = options.workers or tuple(name for name in participants if name != planner)
    return Roles(planner, workers, options.reviewer or planner)


def check(options: SupervisorOptions, participants: tuple[str, ...]) -> None:
    """At load: the planner, workers and reviewer are participants, and there are workers."""
    named = (options.planner, *options.workers, options.reviewer)
    require_participants(participants, named, "planner/workers/reviewer")
    if not roles(participants, options).workers:
        raise ValueError("the supervisor has no workers: name participants other than the planner")


def best_worker(task: str, workers: tuple[str, ...], cards: Mapping[str, AgentInfo], index: int) -> str:
    """The worker whose card best matches ``task`` (``matching``); ties go to the first, no match to turn order."""
    found = best(task, [cards[worker] for worker in workers])
    return found.agent if found else workers[index % len(workers)]


def parse_plan(
    reply: StepResult, workers: tuple[str, ...], cards: Mapping[str, AgentInfo], offered: tuple[str, ...] = ()
) -> list[PlannedStep]:
    """The planner's steps, each assigned to a worker (named, else the best match of ``offered``, default all)."""
    raw = reply.data.get("steps") if isinstance(reply.data, dict) else None
    by_name = {worker.lower(): worker for worker in workers}
    pairs = _data_steps(raw) if isinstance(raw, list) else _text_steps(reply.text, by_name)
    matched = offered or workers
    return [
        PlannedStep(task, by_name.get(agent.lower()) or best_worker(task, matched, cards, index))
        for index, (agent, task) in enumerate(pairs)
    ]


def _data_steps(raw: list[Any]) -> list[tuple[str, str]]:
    pairs = []
    for item in raw:
        if isinstance(item, dict):
            pairs.append((str(item.get("agent") or ""), str(item.get("task") or "").strip()))
        else:
            pairs.append(("", str(item).strip()))
    return [(agent, task) for agent, task in pairs if task]


def _text_steps(text: str, workers: dict[str, str]) -> list[tuple[str, str]]:
    pairs = []
    for line in text.splitlines():
        item = _LIST_ITEM.match(line)
        if item is None:
            continue
        assigned = _ASSIGNED.match(item.group(1))
        # "Note: be brief" is a task; only a worker's name before the colon assigns the step.
        if assigned and assigned.group(1).lower() in workers:
            pairs.append((assigned.group(1), assigned.group(2)))
        else:
            pairs.append(("", item.group(1)))
    return pairs


def _team(run: Run, workers: tuple[str, ...]) -> str:
    lines = []
    for worker in workers:
        info = run.describe(worker)
        skills = f" (skills: {', '.join(info.skills)})" if info.skills else ""
        lines.append(f"- {worker}: {info.description}{skills}")
    return "\n".join(lines)


def plan_input(run: Run, team: Roles, feedback: str, reports: list[StepReport]) -> StepInput:
    """Ask the planner for steps: the first plan, or a revision's steps given the reviewer's feedback."""
    ask = (
        "Plan this request for the team below. Reply with a numbered list of steps, one per line; "
        'start a step with a worker\'s name and a colon to assign it ("2. writer: draft the summary").'
    )
    lines = [ask, "", f"Request:\n{run.request.text}", "", f"Team:\n{_team(run, team.workers)}"]
    if feedback:
        lines += ["", f"The reviewer asked for a revision:\n{feedback}", "", "Results so far:", _render(reports)]
        lines += ["", "Reply with only the steps still needed."]
    context = {"role": "plan", "request": run.request.text, "workers": list(team.workers), "feedback": feedback}
    return StepInput("\n".join(lines), ({"supervisor": context}, *run.request.data), run.request.files)


def work_input(run: Run, step: PlannedStep, number: int, reports: list[StepReport]) -> StepInput:
    """A worker's message: its task, the overall request, and the results so far."""
    lines = [step.task, "", f"This is step {number} of the request:\n{run.request.text}"]
    if reports:
        lines += ["", "Results so far:", _render(reports)]
    context = {"role": "work", "task": step.task, "step": number, "request": run.request.text}
    context["previous"] = [asdict(report) for report in reports]
    return StepInput("\n".join(lines), ({"supervisor": context}, *run.request.data), run.request.files)


def review_input(run: Run, keyword: str, plan: list[PlannedStep], reports: list[StepReport]) -> StepInput:
    """The reviewer's message: the request and every result, with how to approve or revise."""
    ask = f"Review these results. Reply APPROVED if they fulfil the request, else {keyword} and what must change."
    lines = [ask, "", f"Request:\n{run.request.text}", "", "Results:", _render(reports)]
    context = {"role": "review", "request": run.request.text, "plan": [asdict(step) for step in plan]}
    context["results"] = [asdict(report) for report in reports]
    return StepInput("\n".join(lines), ({"supervisor": context},))


def _render(reports: list[StepReport]) -> str:
    return "\n\n".join(
        f"{_number(report)}. [{report.agent}] {report.task} ({report.state})\n{clip(report.text, RESULT_CHARS)}"
        for report in reports
    )


def _number(report: StepReport) -> str:
    # Revision rounds continue the numbering visibly: 1, 2, then 2.1, 2.2 for round 2's steps.
    return str(report.step) if report.round == 1 else f"{report.round}.{report.step}"


def verdict(review: StepResult, keyword: str) -> tuple[bool, str]:
    """Whether the reviewer approved, and its feedback when it did not."""
    data = review.data if isinstance(review.data, dict) else {}
    approved = flag(data, ("approved",))
    if approved is None:
        approved = not has_keyword(review.text, (keyword,))
    return approved, "" if approved else str(data.get("feedback") or review.text)


async def run(run: Run, options: SupervisorOptions) -> Outcome:
    """Plan, work, review; revise up to ``max_revisions`` times."""
    members = roles(run.participants, options)
    team = replace(members, workers=runnable(run, members.workers, f"{members.planner}'s workers"))
    cards = {worker: replace(run.describe(worker), name=worker) for worker in team.workers}
    reports: list[StepReport] = []
    revisions: list[dict[str, Any]] = []
    plan: list[PlannedStep] = []
    feedback = ""
    for number in range(1, options.max_revisions + 2):
        guard_round(run, number, "the supervisor")
        await run.progress(f"round {number}: {team.planner} planning")
        planned = await run.step(team.planner, plan_input(run, team, feedback, reports), label=f"round {number}: plan")
        stop = unfinished(planned, "planning", _data(plan, reports, revisions))
        if stop is not None:
            return stop
        plan = parse_plan(planned, members.workers, cards, team.workers)
        if not plan:
            text = f"{team.planner}'s plan held no steps (expected a numbered list or data.steps)"
            return Outcome("failed", text, _data(plan, reports, revisions))
        failed = await _work(run, options, number, plan, reports)
        if failed is not None:
            doing = f"working on step {reports[-1].step} ({clip(reports[-1].task, 80)!r})"
            return ended(failed, doing, _data(plan, reports, revisions))
        await run.progress(f"round {number}: {team.reviewer} reviewing")
        message = review_input(run, options.revise_keyword, plan, reports)
        review = await run.step(team.reviewer, message, label=f"round {number}: review")
        stop = unfinished(review, "reviewing", _data(plan, reports, revisions))
        if stop is not None:
            return stop
        approved, feedback = verdict(review, options.revise_keyword)
        if approved:
            return Outcome("completed", _render(reports), {**_data(plan, reports, revisions), "approved": True})
        revisions.append({"round": number, "feedback": feedback})
        await run.progress(f"round {number}: {team.reviewer} asked for a revision")
    text = f"{team.reviewer} did not approve after {options.max_revisions} revisions; last feedback:\n{feedback}"
    return Outcome("failed", text, {**_data(plan, reports, revisions), "approved": False})


def _data(plan: list[PlannedStep], reports: list[StepReport], revisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "plan": [asdict(step) for step in plan],
        "results": [asdict(report) for report in reports],
        "revisions": list(revisions),
    }


async def _work(
    run: Run, options: SupervisorOptions, number: int, plan: list[PlannedStep], reports: list[StepReport]
) -> StepResult | None:
    """Run the plan's steps in order, adding to ``reports``; the result that stops the run, if any."""
    for index, step in enumerate(plan, start=1):
        await run.progress(f"round {number}, step {index}/{len(plan)}: {step.agent} working on {clip(step.task, 80)!r}")
        message = work_input(run, step, index, reports)
        done = await run.step(step.agent, message, label=f"round {number}, step {index}: {step.agent}")
        reports.append(StepReport(number, index, step.agent, step.task, done.state, done.text or done.error))
        if not done.ok and (done.state == "input-required" or options.on_worker_failure == "fail"):
            return done
        if not done.ok:
            await run.progress(f"round {number}, step {index}: {step.agent} {done.state}; continuing")
    return None


SPEC = PatternSpec(name="supervisor", run=run, options=SupervisorOptions, min_participants=2, check=check)
