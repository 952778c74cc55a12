"""Concurrent (fan-out/fan-in): every participant gets the request at once; their results merge.

Merges:

- ``concatenate``: every completed result, in participant order;
- ``majority-vote``: the answer most results give (``data[vote_key]``, else the text, compared
  case- and space-insensitively); a tie goes to the answer given first in participant order;
- ``confidence-weighted``: as the vote, each result weighing its ``data.confidence`` (0..1;
  missing counts 0, and when no result gives one every result weighs 1);
- ``first-success``: the first result to complete; the other steps are canceled;
- ``synthesis``: the ``synthesizer`` (a participant that is not fanned out to) gets the request's
  text and files and every result as a data part ``{agent, state, text, data, error}``; its
  answer is the run's.

Partial failure: fewer than ``min_successes`` completed results fail the run; with ``fail_fast``
the first failed step cancels the others and fails the run. A step that asks for input pauses it.

``first-success`` and ``fail_fast`` decide by which step finishes first. A resumed run replays
its finished steps at once (``engine``): when two had finished before the gateway stopped (the
second before the run got to cancel it), the replay sees them together and takes the first in
participant order, which may not be the one the interrupted run took. Each result is still its
own agent's; every other merge is the same however steps finish.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.turns import ended, require_participants

Merge = Literal["concatenate", "majority-vote", "confidence-weighted", "first-success", "synthesis"]
_SPACE = re.compile(r"\s+")


class ConcurrentOptions(PatternOptions):
    """How results merge, and how many must complete."""

    merge: Merge = "concatenate"
    synthesizer: str = Field(default="", description="the participant that merges the others' results (synthesis)")
    min_successes: int = Field(default=1, ge=1, description="completed results needed, else the run fails")
    fail_fast: bool = Field(default=False, description="the first failed step cancels the others and fails the run")
    vote_key: str = Field(default="answer", min_length=1, description="data key holding a result's answer for votes")

    @model_validator(mode="after")
    def _synthesizer_for_synthesis(self) -> ConcurrentOptions:
        if self.merge == "synthesis" and not self.synthesizer:
            raise ValueError("merge 'synthesis' needs a synthesizer")
        if self.synthesizer and self.merge != "synthesis":
            raise ValueError(f"a synthesizer is only used by merge 'synthesis', not {self.merge!r}")
        return self


def summary(result: StepResult) -> dict[str, Any]:
    """A result as plain values, for the outcome's data and the synthesizer."""
    return {
        "agent": result.agent,
        "state": result.state,
        "text": result.text,
        "data": result.data,
        "error": result.error,
    }


async def fan_out(
    run: Run, jobs: Sequence[tuple[str, StepInput, str]], stop: Callable[[StepResult], bool]
) -> list[StepResult | None]:
    """Run every ``(agent, input, label)`` at once; once ``stop`` holds for a result, cancel the rest.

    Steps are started in ``jobs`` order, so the engine numbers them the same way on every replay.
    A step that raises (a run limit) cancels the others and the error propagates.
    """
    tasks = [asyncio.create_task(run.step(agent, request, label=label)) for agent, request, label in jobs]
    position = {task: index for index, task in enumerate(tasks)}
    results: list[StepResult | None] = [None] * len(tasks)
    arrived: list[asyncio.Task[StepResult]] = []  # finished since the last look (no asyncio.wait over all pending)
    woken = asyncio.Event()

    def finished(task: asyncio.Task[StepResult]) -> None:
        arrived.append(task)
        woken.set()

    for task in tasks:
        task.add_done_callback(finished)
    left = len(tasks)
    try:
        while left:
            await woken.wait()
            woken.clear()
            done = arrived[:]
            arrived.clear()
            left -= len(done)
            errors = [task.exception() for task in done if not task.cancelled() and task.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]
            completed = [(position[task], task.result()) for task in done if not task.cancelled()]
            for index, result in completed:
                results[index] = result
            if any(stop(result) for _, result in completed):
                break
    finally:
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    return results


def vote_of(result: StepResult, key: str) -> str:
    """What a result answers: ``data[key]`` when it has one, else its text, normalised."""
    value = result.data.get(key) if isinstance(result.data, dict) else None
    answer = result.text if value is None else str(value)
    return _SPACE.sub(" ", answer).strip().casefold()


def weight_of(result: StepResult) -> float | None:
    """A result's ``data.confidence``, clipped to 0..1; None when it gives none."""
    value = result.data.get("confidence") if isinstance(result.data, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return min(max(float(value), 0.0), 1.0)


def tally(results: Sequence[StepResult], key: str, weighted: bool) -> Outcome:
    """The winning answer of a (weighted) vote; ties go to the answer given first."""
    weights = [weight_of(r) for r in results] if weighted else [1.0] * len(results)
    if all(w is None for w in weights):
        weights = [1.0] * len(results)
    scores: dict[str, float] = {}
    first: dict[str, StepResult] = {}
    for result, weight in zip(results, weights, strict=True):
        vote = vote_of(result, key)
        scores[vote] = scores.get(vote, 0.0) + (weight or 0.0)
        first.setdefault(vote, result)
    winner = max(scores, key=lambda vote: scores[vote])  # max keeps the first of equal scores
    tied = sorted(vote for vote, score in scores.items() if score == scores[winner] and vote != winner)
    agreeing = [r.agent for r in results if vote_of(r, key) == winner]
    data = {"winner": winner, "scores": scores, "agreeing": agreeing, "tied_with": tied, "output": first[winner].data}
    return Outcome("completed", first[winner].text, data)


def merge(results: Sequence[StepResult], options: ConcurrentOptions) -> Outcome:
    """The merged outcome of the completed ``results`` (every merge but synthesis)."""
    if options.merge in ("majority-vote", "confidence-weighted"):
        return tally(results, options.vote_key, weighted=options.merge == "confidence-weighted")
    if options.merge == "first-success":
        winner = results[0]
        return Outcome("completed", winner.text, {"winner": winner.agent, "output": winner.data})
    text = "\n\n".join(f"{r.agent}: {r.text}" if r.text else r.agent for r in results)
    return Outcome("completed", text, {"results": [summary(r) for r in results]})


def check(options: ConcurrentOptions, participants: tuple[str, ...]) -> None:
    """At load: the synthesizer is a participant, and enough others run for ``min_successes``."""
    require_participants(participants, (options.synthesizer,), "synthesizer")
    workers = [agent for agent in participants if agent != options.synthesizer]
    if not workers:
        raise ValueError("no participant to fan out to besides the synthesizer")
    if options.min_successes > len(workers):
        raise ValueError(f"min_successes is {options.min_successes} but only {len(workers)} agents run")


async def run(run: Run, options: ConcurrentOptions) -> Outcome:
    """Fan the request out to every participant but the synthesizer, then merge (see the module docstring)."""
    workers = [agent for agent in run.participants if agent != options.synthesizer]
    total = len(workers) + (1 if options.synthesizer else 0)
    jobs = [(agent, run.request, f"step {n}/{total}") for n, agent in enumerate(workers, 1)]
    first_success = options.merge == "first-success"
    stop: Callable[[StepResult], bool] = (
        (lambda r: r.ok) if first_success else (lambda r: options.fail_fast and not r.ok)
    )
    finished = [r for r in await fan_out(run, jobs, stop) if r is not None]
    summaries = [summary(r) for r in finished]
    successes = [r for r in finished if r.ok]
    waiting = next((r for r in finished if r.state == "input-required"), None)
    if waiting is not None:
        return ended(waiting, "working on the request", {"results": summaries})
    failed = next((r for r in finished if not r.ok), None)
    if failed is not None and options.fail_fast and not first_success:
        return ended(failed, "working on the request (fail_fast)", {"results": summaries})
    if len(successes) < options.min_successes:
        why = "; ".join(f"{r.agent}: {r.error or r.state}" for r in finished if not r.ok)
        text = f"{len(successes)} of {len(workers)} completed, {options.min_successes} needed ({why})"
        return Outcome("failed", text, {"results": summaries})
    if options.merge != "synthesis":
        return merge(successes, options)
    request = StepInput(text=run.request.text, data=tuple(summaries), files=run.request.files)
    synthesized = await run.step(options.synthesizer, request, label=f"step {total}/{total}")
    if not synthesized.ok:
        return ended(synthesized, "merging the results", {"results": summaries})
    return Outcome("completed", synthesized.text, {"output": synthesized.data, "results": summaries})


SPEC = PatternSpec(name="concurrent", run=run, options=ConcurrentOptions, min_participants=1, check=check)
