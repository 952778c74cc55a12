"""The concurrent pattern over scripted agents: fan-out, each merge, partial failure."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from gateway.orchestration.api import LimitExceededError, Limits, StepInput, StepResult
from gateway.orchestration.catalog import pattern
from gateway.orchestration.concurrent import SPEC, ConcurrentOptions, run
from gateway.runtime import FileInput
from tests.orchestration.scripted_run import Responder, data_of, result, scripted

SOURCE = FileInput(name="app.py", media_type="text/x-python", text="print('hi')\n")


def options(**values: object) -> ConcurrentOptions:
    return ConcurrentOptions.model_validate(values)


def voter(text: str, confidence: float | None = None, key: str = "answer") -> StepResult:
    data: dict[str, object] = {key: text}
    if confidence is not None:
        data["confidence"] = confidence
    return result(f"I say {text}", data=data)


def stalled(canceled: list[str]) -> Responder:
    """A responder that never answers, and notes when it is canceled."""

    async def respond(agent: str, request: StepInput) -> StepResult:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            canceled.append(agent)
            raise
        raise AssertionError("unreachable")

    return respond


def test_catalog_names_concurrent() -> None:
    assert pattern("concurrent") is SPEC


def together(count: int, text: str) -> Responder:
    """A responder that answers only once ``count`` steps are in flight at once (bounded wait)."""
    everyone: list[str] = []
    arrived = asyncio.Event()

    async def respond(agent: str, request: StepInput) -> StepResult:
        everyone.append(agent)
        if len(everyone) == count:
            arrived.set()
        async with asyncio.timeout(5):
            await arrived.wait()
        return result(f"{agent} {text}", agent=agent)

    return respond


async def test_every_participant_gets_the_request_at_once_and_results_concatenate() -> None:
    meet = together(3, "done")
    team = scripted({"a": meet, "b": meet, "c": meet}, request="go")

    outcome = await run(team, options())

    assert team.max_in_flight == 3, "all three steps ran at the same time"
    assert all(team.inputs_of(name) == [team.request] for name in "abc")
    assert outcome.state == "completed" and outcome.text == "a: a done\n\nb: b done\n\nc: c done"
    assert [r["agent"] for r in data_of(outcome)["results"]] == ["a", "b", "c"]
    assert sorted(s.label for s in team.steps) == ["step 1/3", "step 2/3", "step 3/3"]


async def test_majority_vote_wins_and_a_tie_goes_to_the_first_answer() -> None:
    majority = scripted({"a": voter("Yes"), "b": voter("no"), "c": voter(" yes ")})
    tie = scripted({"a": voter("red"), "b": voter("blue")})

    won = await run(majority, options(merge="majority-vote"))
    tied = await run(tie, options(merge="majority-vote"))

    assert won.text == "I say Yes" and data_of(won)["winner"] == "yes" and data_of(won)["agreeing"] == ["a", "c"]
    assert tied.text == "I say red" and data_of(tied)["tied_with"] == ["blue"]


async def test_votes_fall_back_to_the_text_and_honour_vote_key() -> None:
    by_text = scripted({"a": "Ship  it", "b": "ship it", "c": "wait"})
    by_key = scripted({"a": voter("x", key="verdict"), "b": voter("y", key="verdict"), "c": voter("y", key="verdict")})

    text_vote = await run(by_text, options(merge="majority-vote"))
    key_vote = await run(by_key, options(merge="majority-vote", vote_key="verdict"))

    assert data_of(text_vote)["winner"] == "ship it"
    assert data_of(key_vote)["winner"] == "y"


async def test_confidence_weighs_each_vote() -> None:
    team = scripted({"a": voter("yes", 0.3), "b": voter("yes", 0.3), "c": voter("no", 0.9), "d": voter("no")})
    unweighted = scripted({"a": voter("yes"), "b": voter("yes"), "c": voter("no")})

    weighed = await run(team, options(merge="confidence-weighted"))
    counted = await run(unweighted, options(merge="confidence-weighted"))

    assert weighed.text == "I say no" and data_of(weighed)["scores"] == {"yes": 0.6, "no": 0.9}
    assert counted.text == "I say yes", "with no confidence anywhere every result weighs the same"


async def test_first_success_takes_the_first_completed_result_and_cancels_the_rest() -> None:
    canceled: list[str] = []
    team = scripted({"slow": stalled(canceled), "broken": result(state="failed", error="x"), "fast": "got it"})

    outcome = await run(team, options(merge="first-success"))

    assert outcome.state == "completed" and outcome.text == "got it" and data_of(outcome)["winner"] == "fast"
    assert canceled == ["slow"]


async def test_synthesis_gives_the_synthesizer_every_result_as_data() -> None:
    team = scripted(
        {
            "a": result("found 1", data={"findings": [1]}),
            "b": result(state="failed", error="crashed"),
            "lead": result("merged", data={"report": True}),
        },
        request=StepInput(text="review", files=(SOURCE,)),
    )

    outcome = await run(team, options(merge="synthesis", synthesizer="lead"))

    assert sorted(team.agents_called[:2]) == ["a", "b"] and team.agents_called[2] == "lead"
    sent = team.inputs_of("lead")[0]
    assert sent.text == "review" and sent.files == (SOURCE,)
    assert sent.data == (
        {"agent": "a", "state": "completed", "text": "found 1", "data": {"findings": [1]}, "error": ""},
        {"agent": "b", "state": "failed", "text": "", "data": None, "error": "crashed"},
    )
    assert team.steps[-1].label == "step 3/3"
    assert outcome.text == "merged" and data_of(outcome)["output"] == {"report": True}


async def test_too_few_successes_fail_the_run() -> None:
    team = scripted({"a": "ok", "b": result(state="failed", error="boom"), "c": result(state="rejected")})

    outcome = await run(team, options(min_successes=2))

    assert outcome.state == "failed"
    assert outcome.text == "1 of 3 completed, 2 needed (b: boom; c: rejected)"


async def test_fail_fast_cancels_the_others_at_the_first_failure() -> None:
    canceled: list[str] = []
    team = scripted({"slow": stalled(canceled), "broken": result(state="failed", error="boom")})

    outcome = await run(team, options(fail_fast=True))

    assert outcome.state == "failed" and outcome.text.startswith("broken failed while working on the request")
    assert canceled == ["slow"]


async def test_a_participant_asking_for_input_pauses_the_run() -> None:
    team = scripted({"a": "fine", "b": result("Which branch?", state="input-required")})

    outcome = await run(team, options())

    assert outcome.state == "input-required" and outcome.text == "Which branch?"


async def test_a_run_limit_raised_by_one_step_cancels_the_others() -> None:
    canceled: list[str] = []
    team = scripted({"slow": stalled(canceled), "b": "x"}, limits=Limits(max_steps=1))

    with pytest.raises(LimitExceededError):
        await run(team, options())
    assert canceled == ["slow"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"merge": "synthesis"}, "needs a synthesizer"),
        ({"merge": "concatenate", "synthesizer": "lead"}, "only used by merge 'synthesis'"),
        ({"merge": "average"}, "merge"),
        ({"min_successes": 0}, "min_successes"),
    ],
)
def test_bad_options_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options(**values)
