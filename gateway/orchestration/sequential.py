"""Sequential (pipeline): each participant in order, each getting the previous one's output.

Step 1 gets the request as sent. Each later step gets the last completed step's text (the
request's text when that was empty) and data, the request's files, and a ``sequential`` data part
with the original request's text, so no step loses sight of what was asked.

``skip_if: {agent: keyword}`` skips an agent when the last completed step's text says the keyword
(a whole word, any case, not negated). ``early_exit_on`` ends the pipeline early: a keyword the
output says ends it ``completed`` with that output; ``failure`` (the default) ends it ``failed``
at the first step that did not complete; without ``failure`` a failed step is passed over and the
next one gets the last good output. A step that asks for input pauses the run.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.turns import clip, ended, has_keyword, require_participants

FAILURE = "failure"
SUMMARY_CHARS = 2000


def _one_or_many_schema(schema: dict[str, Any]) -> None:
    """The JSON Schema of a list option that also takes one string (``_one_or_many``)."""
    array = {"type": schema.pop("type"), "items": schema.pop("items")}
    schema["anyOf"] = [array, {"type": "string"}]


class SequentialOptions(PatternOptions):
    """When to stop early and which steps to skip."""

    early_exit_on: tuple[str, ...] = Field(
        default=(FAILURE,),
        description="keywords that end the pipeline early; 'failure' stops at a failed step",
        json_schema_extra=_one_or_many_schema,
    )
    skip_if: dict[str, str] = Field(default={}, description="agent -> keyword in the previous output that skips it")

    @field_validator("early_exit_on", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


def says(text: str, keyword: str) -> bool:
    """Whether ``text`` says ``keyword`` as a whole word, in any case, not negated."""
    return has_keyword(text.lower(), [keyword.lower()])


def step_input(request: StepInput, previous: StepResult | None, number: int) -> StepInput:
    """What step ``number`` gets: the request itself first, then the last completed output."""
    if previous is None:
        return request
    data: list[dict[str, Any]] = []
    if isinstance(previous.data, dict):
        data.append(previous.data)
    elif isinstance(previous.data, list):
        data.append({"items": previous.data})
    data.append({"sequential": {"request": request.text, "step": number, "previous_agent": previous.agent}})
    return StepInput(text=previous.text or request.text, data=tuple(data), files=request.files)


def _report(number: int, agent: str, state: str, text: str = "", error: str = "", by: str = "") -> dict[str, Any]:
    """One step's line in the run's data; ``by`` is who did the step when a fallback took over from ``agent``."""
    report = {"step": number, "agent": by or agent, "state": state, "text": clip(text, SUMMARY_CHARS), "error": error}
    if by and by != agent:
        report["fallback_for"] = agent
    return report


def check(options: SequentialOptions, participants: tuple[str, ...]) -> None:
    """At load: the agents ``skip_if`` names are participants."""
    require_participants(participants, options.skip_if, "skip_if")


async def run(run: Run, options: SequentialOptions) -> Outcome:
    """Run the participants in order (see the module docstring)."""
    exits = [keyword for keyword in options.early_exit_on if keyword != FAILURE]
    total = len(run.participants)
    previous: StepResult | None = None
    reports: list[dict[str, Any]] = []

    def data(**extra: Any) -> dict[str, Any]:
        return {"steps": reports, "output": previous.data if previous else None, **extra}

    for number, agent in enumerate(run.participants, 1):
        label = f"step {number}/{total}"
        keyword = options.skip_if.get(agent)
        if keyword and previous is not None and says(previous.text, keyword):
            reports.append(_report(number, agent, "skipped", error=f"{keyword!r} in the previous output"))
            await run.progress(f"{label} · {agent}: skipped ({keyword!r} in the previous output)")
            continue
        result = await run.step(agent, step_input(run.request, previous, number), label=label)
        reports.append(_report(number, agent, result.state, result.text, result.error, by=result.agent))
        if result.state == "input-required" or (not result.ok and FAILURE in options.early_exit_on):
            return ended(result, f"step {number} of {total}", data())
        if not result.ok:
            continue
        previous = result
        hit = next((word for word in exits if says(result.text, word)), None)
        if hit is not None:
            return Outcome("completed", result.text, data(exited_early={"step": number, "keyword": hit}))
    if previous is None:
        return Outcome("failed", "no step of the pipeline completed", data())
    return Outcome("completed", previous.text, data())


SPEC = PatternSpec(name="sequential", run=run, options=SequentialOptions, min_participants=1, check=check)
