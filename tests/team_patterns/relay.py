"""A pattern a team adds without touching the gateway: a relay that passes the baton round the participants.

It is written only against ``gateway.orchestration.api``, as a team's own package would be, and
is found either through the ``switchboard.patterns`` entry point group (the tests register it
with a ``*.dist-info`` on the gateway's path, as ``pip install`` would) or by its import string
``tests.team_patterns.relay:SPEC`` in the agent file.

Each lap runs every participant in order, each getting the previous one's text; after ``laps``
laps the last text is the run's answer. A step that fails or asks for input ends the run so.
"""

from __future__ import annotations

from pydantic import Field

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput


class RelayOptions(PatternOptions):
    """How many times round."""

    laps: int = Field(default=1, ge=1, le=10, description="times round the participants")


async def run(run: Run, options: RelayOptions) -> Outcome:
    """Pass the request round the participants ``laps`` times."""
    text = run.request.text
    path: list[str] = []
    total = options.laps * len(run.participants)
    for lap in range(options.laps):
        for index, agent in enumerate(run.participants):
            number = lap * len(run.participants) + index + 1
            result = await run.step(agent, StepInput(text=text), label=f"leg {number}/{total}")
            path.append(agent)
            if not result.ok:
                state = "input-required" if result.state == "input-required" else "failed"
                return Outcome(state, result.error or result.text or f"{agent} dropped the baton", {"path": path})
            text = result.text or text
        await run.progress(f"lap {lap + 1} of {options.laps} done")
    return Outcome("completed", text, {"path": path, "laps": options.laps})


SPEC = PatternSpec(name="relay", run=run, options=RelayOptions, min_participants=1)
