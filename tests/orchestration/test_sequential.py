"""The sequential pattern over scripted agents."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.orchestration.api import LimitExceededError, Limits, StepInput
from gateway.orchestration.catalog import pattern
from gateway.orchestration.sequential import SPEC, SequentialOptions, run, step_input
from gateway.runtime import FileInput
from tests.orchestration.scripted_run import data_of, result, scripted

SOURCE = FileInput(name="app.py", media_type="text/x-python", text="print('hi')\n")


def options(**values: object) -> SequentialOptions:
    return SequentialOptions.model_validate(values)


def test_catalog_names_sequential() -> None:
    assert pattern("sequential") is SPEC


async def test_each_step_gets_the_previous_output_and_the_original_request() -> None:
    team = scripted(
        {"a": result("draft", data={"words": 1}), "b": "edited", "c": "published"},
        request=StepInput(text="write", files=(SOURCE,)),
    )

    outcome = await run(team, options())

    assert team.agents_called == ["a", "b", "c"]
    assert team.inputs_of("a") == [team.request]
    second = team.inputs_of("b")[0]
    assert second.text == "draft" and second.files == (SOURCE,)
    assert second.data == ({"words": 1}, {"sequential": {"request": "write", "step": 2, "previous_agent": "a"}})
    assert team.inputs_of("c")[0].text == "edited"
    assert (outcome.state, outcome.text) == ("completed", "published")
    assert [s["state"] for s in data_of(outcome)["steps"]] == ["completed"] * 3
    assert [s.label for s in team.steps] == ["step 1/3", "step 2/3", "step 3/3"]


def test_an_empty_previous_text_passes_the_request_text_on() -> None:
    request = StepInput(text="the ask")
    assert step_input(request, None, 1) is request
    assert step_input(request, result("", data=[1, 2], agent="a"), 2).text == "the ask"
    assert step_input(request, result("", data=[1, 2], agent="a"), 2).data[0] == {"items": [1, 2]}


async def test_a_failed_step_stops_the_pipeline_by_default() -> None:
    team = scripted({"a": result("no", state="failed", error="disk full"), "b": "never"})

    outcome = await run(team, options())

    assert team.agents_called == ["a"]
    assert outcome.state == "failed" and outcome.text == "a failed while step 1 of 2: disk full"


async def test_without_failure_in_early_exit_a_failed_step_is_passed_over() -> None:
    team = scripted({"a": "good", "b": result(state="failed", error="flaky"), "c": "done"})

    outcome = await run(team, options(early_exit_on=[]))

    assert team.inputs_of("c")[0].text == "good", "the last completed output"
    assert outcome.state == "completed" and outcome.text == "done"
    assert [s["state"] for s in data_of(outcome)["steps"]] == ["completed", "failed", "completed"]


async def test_a_keyword_ends_the_pipeline_early() -> None:
    team = scripted({"a": "all DONE here", "b": "never"})

    outcome = await run(team, options(early_exit_on="done"))

    assert team.agents_called == ["a"]
    assert outcome.state == "completed" and data_of(outcome)["exited_early"] == {"step": 1, "keyword": "done"}


async def test_skip_if_skips_on_a_keyword_in_the_previous_output_but_not_a_negated_one() -> None:
    skipping = scripted({"lint": "Clean: nothing to fix", "fix": "fixed", "ship": "shipped"})
    running = scripted({"lint": "not clean", "fix": "fixed", "ship": "shipped"})

    skipped = await run(skipping, options(skip_if={"fix": "clean"}))
    ran = await run(running, options(skip_if={"fix": "clean"}))

    assert skipping.agents_called == ["lint", "ship"] and skipping.inputs_of("ship")[0].text == "Clean: nothing to fix"
    assert data_of(skipped)["steps"][1] == {
        "step": 2,
        "agent": "fix",
        "state": "skipped",
        "text": "",
        "error": "'clean' in the previous output",
    }
    assert "step 2/3 · fix: skipped ('clean' in the previous output)" in skipping.progress_messages
    assert running.agents_called == ["lint", "fix", "ship"] and ran.text == "shipped"


async def test_a_step_asking_for_input_pauses_the_run() -> None:
    team = scripted({"a": result("Which file?", state="input-required"), "b": "never"})

    outcome = await run(team, options())

    assert outcome.state == "input-required" and outcome.text == "Which file?"
    assert data_of(outcome)["waiting_on"] == "a"


async def test_the_step_limit_is_the_engines_and_propagates() -> None:
    team = scripted(["a", "b"], limits=Limits(max_steps=1))

    with pytest.raises(LimitExceededError):
        await run(team, options())


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValidationError, match="stop_on"):
        options(stop_on="x")
