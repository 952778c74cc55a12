"""Magentic over a scripted manager: ledgers, delegation, stall detection, re-planning and limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.orchestration.api import LimitExceededError, Limits, StepInput, StepResult
from gateway.orchestration.catalog import pattern
from gateway.orchestration.magentic import SPEC, MagenticOptions, progress_ledger, run
from tests.orchestration.scripted_run import Answer, Responder, ScriptedRun, always, data_of, in_order, result, scripted

PLAN = {"facts": ["the repo uses pytest"], "plan": ["find the bug", "fix it"]}


def ledger(speaker: str = "", instruction: str = "", *, satisfied: bool = False, **flags: Any) -> dict[str, Any]:
    """A progress ledger in Magentic-One's nested shape."""
    entry: dict[str, Any] = {
        "is_request_satisfied": {"answer": satisfied, "reason": "-"},
        "is_in_loop": {"answer": flags.get("in_loop", False), "reason": "-"},
        "is_progress_being_made": {"answer": flags.get("progress", True), "reason": "-"},
        "next_speaker": {"answer": speaker, "reason": "-"},
        "instruction_or_question": {"answer": instruction, "reason": "-"},
    }
    if "final_answer" in flags:
        entry["final_answer"] = flags["final_answer"]
    return entry


def manager(plans: list[Answer], ledgers: list[Answer]) -> Responder:
    """A manager that answers plan requests and progress requests from separate scripts."""
    plan, progress = in_order(*plans), in_order(*ledgers)

    def respond(agent: str, request: StepInput) -> StepResult:
        role = request.data[0]["magentic"]["role"]
        answer = progress(agent, request) if role == "progress" else plan(agent, request)
        assert isinstance(answer, StepResult)
        return answer

    return respond


def team(boss: Responder, coder: Answer = "patched", searcher: Answer = "found it", **limits: int) -> ScriptedRun:
    return scripted(
        {"boss": boss, "coder": coder, "searcher": searcher},
        request="fix the flaky test",
        limits=Limits(**limits) if limits else None,
    )


def data(item: dict[str, Any]) -> StepResult:
    return result(data=item)


def test_catalog_names_magentic() -> None:
    assert pattern("magentic") is SPEC


async def test_the_manager_plans_delegates_and_finishes() -> None:
    boss = manager(
        [data(PLAN)],
        [
            data(ledger("searcher", "find the flaky test")),
            f"Here you go:\n```json\n{json.dumps(ledger('coder', 'fix test_io'))}\n```",
            data(ledger(satisfied=True, final_answer="fixed test_io")),
        ],
    )
    crew = team(boss)

    outcome = await run(crew, MagenticOptions())

    assert crew.agents_called == ["boss", "boss", "searcher", "boss", "coder", "boss"]
    assert outcome.state == "completed"
    assert outcome.text == "fixed test_io"
    assert data_of(outcome)["task_ledger"] == PLAN
    assert [step["agent"] for step in data_of(outcome)["steps"]] == ["searcher", "coder"]
    assert data_of(outcome)["steps"][1] == {
        "iteration": 2,
        "agent": "coder",
        "instruction": "fix test_io",
        "state": "completed",
        "text": "patched",
    }
    assert len(data_of(outcome)["progress_ledgers"]) == 3
    assert data_of(outcome)["stopped_by"] == "satisfied"
    sent = crew.inputs_of("coder")[0]
    assert sent.text.startswith("fix test_io")
    assert sent.data[0]["magentic"]["plan"] == PLAN["plan"]
    asked = crew.inputs_of("boss")[3].text
    assert "1. [searcher] find the flaky test -> completed: found it" in asked
    assert "round 2: coder: fix test_io" in crew.progress_messages


async def test_without_a_final_answer_the_last_result_is_the_answer() -> None:
    crew = team(manager([data(PLAN)], [data(ledger("coder", "fix")), data(ledger(satisfied=True))]))

    outcome = await run(crew, MagenticOptions())

    assert outcome.text == "patched"


async def test_stalls_make_the_manager_replan() -> None:
    new_plan = {"facts": ["the test sleeps"], "plan": ["remove the sleep"]}
    boss = manager(
        [data(PLAN), data(new_plan)],
        [
            data(ledger("searcher", "look around", progress=False)),
            data(ledger("searcher", "look around more", in_loop=True)),
            data(ledger("coder", "remove the sleep")),
            data(ledger(satisfied=True)),
        ],
    )
    crew = team(boss)

    outcome = await run(crew, MagenticOptions(max_stalls=2))

    assert crew.agents_called == ["boss", "boss", "searcher", "boss", "boss", "boss", "coder", "boss"]
    assert outcome.state == "completed"
    assert data_of(outcome)["replans"] == 1
    assert data_of(outcome)["task_ledger"] == new_plan
    assert [plan["iteration"] for plan in data_of(outcome)["plans"]] == [0, 2]
    replan = crew.inputs_of("boss")[3]
    assert replan.data[0]["magentic"]["role"] == "replan"
    assert "We are stalled (the manager reports a loop)" in replan.text
    assert "round 1: stalled (the manager reports no progress), 1/2" in crew.progress_messages
    assert "round 2: stalled (the manager reports a loop); boss re-planning" in crew.progress_messages


async def test_each_ledger_is_published_live_as_the_ledgers_artifact() -> None:
    new_plan = {"facts": ["the test sleeps"], "plan": ["remove the sleep"]}
    boss = manager(
        [data(PLAN), data(new_plan)],
        [
            data(ledger("searcher", "look around", progress=False)),
            data(ledger("searcher", "look around more", in_loop=True)),
            data(ledger(satisfied=True, final_answer="done")),
        ],
    )
    crew = team(boss)

    outcome = await run(crew, MagenticOptions(max_stalls=2))

    views = [view for name, view in crew.artifacts if name == "ledgers"]
    assert [name for name, _ in crew.artifacts] == ["ledgers"] * 5
    assert views[0] == {
        "task_ledger": PLAN,
        "progress_ledgers": [],
        "stalls": [],
        "plans": [views[0]["plans"][0]],
        "replans": 0,
    }
    assert [len(view["progress_ledgers"]) for view in views] == [0, 1, 2, 2, 3]
    assert views[1]["progress_ledgers"][0]["speaker"] == "searcher"
    assert views[1]["progress_ledgers"][0]["progress"] is False
    assert views[2]["stalls"] == [
        {"iteration": 1, "reason": "the manager reports no progress", "count": 1},
        {"iteration": 2, "reason": "the manager reports a loop", "count": 2},
    ]
    assert (views[3]["task_ledger"], views[3]["replans"]) == (new_plan, 1)
    assert views[4]["progress_ledgers"][-1]["satisfied"] is True
    assert views[4]["task_ledger"] == data_of(outcome)["task_ledger"]
    assert views[4]["progress_ledgers"] == data_of(outcome)["progress_ledgers"]


async def test_a_failed_step_stalls_then_replans_are_exhausted() -> None:
    boss = manager([data(PLAN)], [data(ledger("coder", "fix")), data(ledger("coder", "try again"))])
    crew = team(boss, coder=always(result(state="failed", error="compile error")))

    outcome = await run(crew, MagenticOptions(max_stalls=1, max_replans=0))

    assert crew.agents_called == ["boss", "boss", "coder", "boss"]
    assert outcome.state == "failed"
    assert outcome.text == "magentic: stalled (the last step failed) after 0 re-plans"
    assert data_of(outcome)["stopped_by"] == "stalled"
    assert data_of(outcome)["steps"][0]["text"] == "compile error"


async def test_the_same_instruction_again_is_a_stall() -> None:
    boss = manager([data(PLAN)], [data(ledger("coder", "fix")), data(ledger("coder", "fix"))])
    crew = team(boss)

    outcome = await run(crew, MagenticOptions(max_stalls=1, max_replans=0))

    assert outcome.text == "magentic: stalled (the same instruction to the same agent again) after 0 re-plans"


async def test_an_unknown_speaker_or_no_ledger_is_a_stall_without_delegation() -> None:
    boss = manager([data(PLAN)], [data(ledger("ghost", "boo")), "I am not sure what to do", data(ledger("coder", "x"))])
    crew = team(boss)

    outcome = await run(crew, MagenticOptions(max_stalls=2, max_replans=0))

    assert crew.agents_called == ["boss", "boss", "boss"]
    assert outcome.text == "magentic: stalled (the manager's reply held no progress ledger) after 0 re-plans"
    assert "round 1: stalled (the manager named no agent of the team (ghost)), 1/2" in crew.progress_messages


async def test_max_iterations_fails_the_run() -> None:
    boss = manager([data(PLAN)], [data(ledger("coder", f"step {n}")) for n in range(3)])
    crew = team(boss)

    outcome = await run(crew, MagenticOptions(max_iterations=3))

    assert len(crew.inputs_of("coder")) == 3
    assert outcome.state == "failed"
    assert outcome.text == "magentic: the request was not satisfied after 3 iterations"


async def test_the_run_round_limit_raises() -> None:
    boss = manager([data(PLAN)], [data(ledger("coder", f"step {n}")) for n in range(2)])
    crew = team(boss, max_rounds=2)

    with pytest.raises(LimitExceededError, match="magentic needs round 3 but the run allows 2"):
        await run(crew, MagenticOptions())


async def test_the_step_limit_propagates() -> None:
    boss = manager([data(PLAN)], [data(ledger("coder", f"step {n}")) for n in range(5)])
    crew = team(boss, max_steps=4)

    with pytest.raises(LimitExceededError, match="step limit reached"):
        await run(crew, MagenticOptions())
    assert crew.agents_called == ["boss", "boss", "coder", "boss"]


async def test_a_failing_manager_fails_the_run() -> None:
    crew = team(manager([data(PLAN)], [result(state="failed", error="rate limited")]))

    outcome = await run(crew, MagenticOptions())

    assert outcome.state == "failed"
    assert outcome.text == "boss failed while keeping the progress ledger (round 1): rate limited"


async def test_a_plan_in_prose_is_kept_as_the_plan() -> None:
    crew = team(manager(["1. look\n2. fix"], [data(ledger(satisfied=True, final_answer="done"))]))

    outcome = await run(crew, MagenticOptions())

    assert data_of(outcome)["task_ledger"] == {"facts": [], "plan": ["1. look", "2. fix"]}


def test_flat_ledgers_and_string_booleans_are_read() -> None:
    flat = {"is_request_satisfied": "no", "is_progress_being_made": "false", "next_speaker": "coder"}
    read = progress_ledger(result(data=flat))
    assert (read.satisfied, read.progress, read.speaker, read.valid) == (False, False, "coder", True)
    assert not progress_ledger(result("{not json")).valid
