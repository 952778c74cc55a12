"""Maker-checker over scripted agents, and over the real lint-fix agents' runtimes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.agents import lint_fix
from gateway.orchestration.api import LimitExceededError, Limits, StepInput
from gateway.orchestration.catalog import pattern
from gateway.orchestration.maker_checker import SPEC, MakerCheckerOptions, run
from gateway.runtime import FileInput
from gateway.testing import RecordingEmitter
from tests.orchestration.scripted_run import (
    ScriptedRun,
    always,
    data_of,
    from_runtime,
    in_order,
    result,
    scripted,
)

FIXABLE = "import sys\nimport os\nfrom typing import List\ndef total(xs: List[int]):\n  return  sum(xs)+len(os.sep)\n"
UNFIXABLE = "def greet(name):\n    return salutation + name\n"


def options(**values: object) -> MakerCheckerOptions:
    return MakerCheckerOptions.model_validate(values)


def test_catalog_names_maker_checker() -> None:
    assert pattern("maker-checker") is SPEC


async def test_the_maker_revises_on_feedback_until_approved() -> None:
    team = scripted(
        {
            "writer": in_order("draft 1", result("draft 2", data={"words": 2})),
            "editor": in_order("too short", "APPROVED"),
        },
        request="write a slogan",
    )

    outcome = await run(team, options())

    assert team.agents_called == ["writer", "editor", "writer", "editor"]
    assert outcome.state == "completed"
    assert outcome.text == "draft 2"
    assert (data_of(outcome)["iterations"], data_of(outcome)["approved"]) == (2, True)
    assert data_of(outcome)["final_output"] == {"agent": "writer", "text": "draft 2", "data": {"words": 2}}
    assert len(data_of(outcome)["transcript"]) == 4
    first, second = team.inputs_of("writer")
    assert first == team.request
    revision = second.data[0]["maker_checker"]
    assert revision["feedback"]["text"] == "too short"
    assert revision["previous_output"]["text"] == "draft 1"
    assert "too short" in second.text and "draft 1" in second.text and "write a slogan" in second.text
    checked = team.inputs_of("editor")[1]
    assert checked.text == "draft 2"
    assert checked.data[0] == {"words": 2}
    assert checked.data[1]["maker_checker"]["request"] == "write a slogan"
    assert team.progress_messages[-1] == "round 2: editor approved"


async def test_a_false_flag_refuses_and_a_clean_flag_approves() -> None:
    team = scripted(
        {
            "maker": always("thing"),
            "checker": in_order(result("APPROVED?", data={"approved": False}), result("", data={"clean": True})),
        }
    )

    outcome = await run(team, options())

    assert data_of(outcome)["iterations"] == 2 and data_of(outcome)["approved"]


async def test_not_approved_at_the_cap_fails_with_the_last_output() -> None:
    team = scripted({"maker": always("attempt"), "checker": always("still wrong")})

    outcome = await run(team, options(max_iterations=3))

    assert len(team.steps) == 6
    assert outcome.state == "failed"
    assert outcome.text == "checker did not approve after 3 iterations; last feedback:\nstill wrong"
    assert (data_of(outcome)["iterations"], data_of(outcome)["approved"]) == (3, False)
    assert data_of(outcome)["final_output"]["text"] == "attempt"


async def test_iterations_past_the_run_round_limit_raise() -> None:
    team = scripted({"maker": always("x"), "checker": always("no")}, limits=Limits(max_rounds=2))

    with pytest.raises(LimitExceededError, match="maker-checker needs round 3 but the run allows 2"):
        await run(team, options(max_iterations=5))


async def test_the_step_limit_propagates() -> None:
    team = scripted({"maker": always("x"), "checker": always("no")}, limits=Limits(max_steps=3))

    with pytest.raises(LimitExceededError, match="step limit reached"):
        await run(team, options(max_iterations=5))
    assert team.agents_called == ["maker", "checker", "maker"]


async def test_a_failing_maker_fails_the_run() -> None:
    team = scripted({"maker": in_order("x", result(state="failed", error="crashed")), "checker": always("no")})

    outcome = await run(team, options())

    assert outcome.state == "failed"
    assert outcome.text == "maker failed while making (iteration 2): crashed"
    assert data_of(outcome)["feedback"]["text"] == "no"


async def test_a_checker_asking_for_input_pauses_the_run() -> None:
    team = scripted({"maker": always("x"), "checker": always(result("Which style guide?", state="input-required"))})

    outcome = await run(team, options())

    assert outcome.state == "input-required" and outcome.text == "Which style guide?"


async def test_roles_can_be_named() -> None:
    team = scripted({"a": always("APPROVED"), "b": always("made")})

    outcome = await run(team, options(maker="b", checker="a"))
    assert team.agents_called == ["b", "a"] and outcome.state == "completed"


def test_maker_and_checker_must_differ() -> None:
    with pytest.raises(ValidationError, match="different agents"):
        options(maker="a", checker="a")


def lint_run(code: str, limits: Limits | None = None) -> tuple[ScriptedRun, RecordingEmitter]:
    emit = RecordingEmitter()
    team = scripted(
        {"lint-fixer": from_runtime(lint_fix.fix, emit), "lint-checker": from_runtime(lint_fix.check, emit)},
        request=StepInput("fix my lint", files=(FileInput("calc.py", "text/x-python", text=code),)),
        limits=limits,
    )
    return team, emit


async def test_real_lint_agents_reach_approval_on_fixable_code() -> None:
    team, _ = lint_run(FIXABLE)

    outcome = await run(team, options(max_iterations=3))

    assert outcome.state == "completed"
    assert data_of(outcome)["approved"] and data_of(outcome)["iterations"] == 1
    fixed = data_of(outcome)["final_output"]["data"]["files"]
    assert fixed[0]["name"] == "calc.py"
    assert fixed[0]["code"] == "import os\n\n\ndef total(xs: list[int]):\n    return sum(xs) + len(os.sep)\n"
    assert outcome.text == fixed[0]["code"]
    assert data_of(outcome)["feedback"]["text"].startswith("APPROVED")


async def test_real_lint_agents_stop_at_the_cap_on_unfixable_code() -> None:
    team, _ = lint_run(UNFIXABLE)

    outcome = await run(team, options(max_iterations=2))

    assert outcome.state == "failed"
    assert outcome.text.startswith("lint-checker did not approve after 2 iterations")
    assert "F821 undefined-name" in outcome.text
    assert data_of(outcome)["approved"] is False
    findings = data_of(outcome)["feedback"]["data"]["findings"]
    assert [(f["file"], f["line"], f["rule"]) for f in findings] == [("calc.py", 2, "F821 undefined-name")]


async def test_real_lint_agents_apply_unsafe_fixes_when_the_checker_still_reports_fixable() -> None:
    team, emit = lint_run("def add(item, into=[]):\n    into.append(item)\n    return into\n")

    outcome = await run(team, options(max_iterations=3))

    assert outcome.state == "completed"
    assert data_of(outcome)["iterations"] == 2
    assert "lint-fix: fixing 1 file with ruff (with unsafe fixes)" in emit.progress_messages
    assert "if into is None:" in outcome.text
