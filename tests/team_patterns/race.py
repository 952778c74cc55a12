"""A pattern that goes on after a fan-out canceled a step: the first of the runners to answer wins, then the
last participant reports on the winner's answer.

Every participant but the last runs at once (``fan_out``); the first completed answer cancels the others,
wherever they are (waiting on their agent, or with their answer being saved). The reporter's step comes
after, so it needs whatever budget the canceled steps held. Written against ``gateway.orchestration`` only.
"""

from __future__ import annotations

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput
from gateway.orchestration.concurrent import fan_out


async def run(run: Run, options: PatternOptions) -> Outcome:
    """Race the runners, then ask the reporter."""
    *runners, reporter = run.participants
    jobs = [(agent, run.request, f"race {agent}") for agent in runners]
    results = await fan_out(run, jobs, lambda result: result.ok)
    winner = next((result for result in results if result is not None and result.ok), None)
    if winner is None:
        return Outcome("failed", "no runner finished")
    report = await run.step(reporter, StepInput(f"{winner.agent} won: {winner.text}"), label="report")
    if not report.ok:
        return Outcome("failed", report.error or report.text)
    return Outcome("completed", report.text, {"winner": winner.agent})


SPEC = PatternSpec(name="race", run=run, options=PatternOptions, min_participants=2)
