"""Supervisor over scripted agents: planning, routing to workers, review and revision, limits, failures."""

from __future__ import annotations

import pytest

from gateway.orchestration.api import AgentInfo, LimitExceededError, Limits, StepInput, StepResult
from gateway.orchestration.catalog import pattern
from gateway.orchestration.supervisor import SPEC, SupervisorOptions, best_worker, parse_plan, run
from tests.orchestration.scripted_run import Answer, Responder, ScriptedRun, always, data_of, in_order, result, scripted

CARDS = (
    AgentInfo("lead", "Plans work and reviews it."),
    AgentInfo("writer", "Writes prose.", skills=("Write documentation",), tags=("docs", "prose")),
    AgentInfo("tester", "Writes unit tests.", skills=("Testing",), tags=("pytest", "tests"), examples=("add tests",)),
)


def options(**values: object) -> SupervisorOptions:
    return SupervisorOptions.model_validate(values)


def team(
    lead: Answer, writer: Answer = "writer's part", tester: Answer = "tester's part", limits: Limits | None = None
) -> ScriptedRun:
    agents = {"lead": lead, "writer": writer, "tester": tester}
    return scripted(agents, request="ship the parser", infos=CARDS, limits=limits)


def by_role(plans: list[Answer], reviews: list[Answer]) -> Responder:
    """A lead that plans when asked to plan and reviews when asked to review."""
    plan, review = in_order(*plans), in_order(*reviews)

    def respond(agent: str, request: StepInput) -> StepResult:
        role = request.data[0]["supervisor"]["role"]
        answer = plan(agent, request) if role == "plan" else review(agent, request)
        assert isinstance(answer, StepResult)
        return answer

    return respond


def test_catalog_names_the_supervisor() -> None:
    assert pattern("supervisor") is SPEC


async def test_plan_is_routed_to_workers_and_approved() -> None:
    crew = team(by_role(["Plan:\n1. writer: document the API\n2) add unit tests with pytest"], ["APPROVED"]))

    outcome = await run(crew, options())

    assert crew.agents_called == ["lead", "writer", "tester", "lead"]
    assert outcome.state == "completed"
    assert data_of(outcome)["plan"] == [
        {"task": "document the API", "agent": "writer"},
        {"task": "add unit tests with pytest", "agent": "tester"},
    ]
    assert [(r["agent"], r["state"], r["text"]) for r in data_of(outcome)["results"]] == [
        ("writer", "completed", "writer's part"),
        ("tester", "completed", "tester's part"),
    ]
    assert data_of(outcome)["revisions"] == [] and data_of(outcome)["approved"] is True
    assert "1. [writer] document the API (completed)\nwriter's part" in outcome.text
    tester_input = crew.inputs_of("tester")[0]
    assert tester_input.text.startswith("add unit tests with pytest")
    assert "writer's part" in tester_input.text
    assert tester_input.data[0]["supervisor"]["previous"][0]["agent"] == "writer"
    assert "Team:\n- writer: Writes prose. (skills: Write documentation)" in crew.inputs_of("lead")[0].text
    assert "round 1, step 2/2: tester working on 'add unit tests with pytest'" in crew.progress_messages


async def test_a_structured_plan_names_its_agents() -> None:
    steps = {"steps": [{"agent": "tester", "task": "write the docs"}, "explain the prose"]}
    crew = team(by_role([result("here is the plan", data=steps)], ["fine"]))

    outcome = await run(crew, options())

    assert crew.agents_called == ["lead", "tester", "writer", "lead"]
    assert outcome.state == "completed"


async def test_the_reviewer_asks_for_a_revision_and_the_planner_replans() -> None:
    reviews: list[Answer] = ["REVISE: the docs lack examples", result("good now", data={"approved": True})]
    crew = team(by_role(["1. writer: document the API", "1. writer: add examples to the docs"], reviews))

    outcome = await run(crew, options(max_revisions=1))

    assert crew.agents_called == ["lead", "writer", "lead", "lead", "writer", "lead"]
    assert outcome.state == "completed"
    assert data_of(outcome)["revisions"] == [{"round": 1, "feedback": "REVISE: the docs lack examples"}]
    assert [(r["round"], r["task"]) for r in data_of(outcome)["results"]] == [
        (1, "document the API"),
        (2, "add examples to the docs"),
    ]
    replan = [message for message in crew.inputs_of("lead") if message.data[0]["supervisor"]["role"] == "plan"][1]
    assert "The reviewer asked for a revision:\nREVISE: the docs lack examples" in replan.text
    assert "2.1. [writer] add examples to the docs" in outcome.text
    assert "round 1: lead asked for a revision" in crew.progress_messages


async def test_a_separate_reviewer_with_structured_feedback() -> None:
    crew = scripted(
        {
            "lead": in_order("1. writer: draft", "1. writer: shorten the draft"),
            "writer": always("text"),
            "judge": in_order(result("meh", data={"approved": False, "feedback": "too long"}), "ok"),
        },
        request="a blurb",
    )

    outcome = await run(crew, options(planner="lead", workers=["writer"], reviewer="judge"))

    assert crew.agents_called == ["lead", "writer", "judge", "lead", "writer", "judge"]
    assert data_of(outcome)["revisions"][0]["feedback"] == "too long"


async def test_still_unapproved_after_max_revisions_fails() -> None:
    crew = team(by_role(["1. writer: draft"] * 3, ["REVISE more"] * 3), writer=always("text"))

    outcome = await run(crew, options(max_revisions=2))

    assert len(crew.steps) == 9
    assert outcome.state == "failed"
    assert outcome.text == "lead did not approve after 2 revisions; last feedback:\nREVISE more"
    assert data_of(outcome)["approved"] is False and len(data_of(outcome)["revisions"]) == 3


async def test_revision_rounds_count_against_the_crewround_limit() -> None:
    crew = team(by_role(["1. writer: draft"] * 2, ["REVISE"] * 2), limits=Limits(max_rounds=1))

    with pytest.raises(LimitExceededError, match="the supervisor needs round 2 but the run allows 1"):
        await run(crew, options(max_revisions=3))
    assert crew.agents_called == ["lead", "writer", "lead"]


async def test_the_step_limit_propagates() -> None:
    crew = scripted(
        {"lead": always("1. a\n2. b\n3. c"), "writer": always("x")},
        limits=Limits(max_steps=3),
    )

    with pytest.raises(LimitExceededError, match="step limit reached"):
        await run(crew, options())
    assert crew.agents_called == ["lead", "writer", "writer"]


async def test_a_failing_worker_fails_the_crewby_default() -> None:
    crew = team(
        by_role(["1. writer: draft\n2. tester: test"], ["ok"]), writer=always(result(state="failed", error="boom"))
    )

    outcome = await run(crew, options())

    assert crew.agents_called == ["lead", "writer"]
    assert outcome.state == "failed"
    assert outcome.text == "writer failed while working on step 1 ('draft'): boom"
    assert data_of(outcome)["results"][0]["state"] == "failed"


async def test_a_failing_worker_can_be_tolerated() -> None:
    crew = team(
        by_role(["1. writer: draft\n2. tester: test"], ["ok"]), writer=always(result(state="failed", error="boom"))
    )

    outcome = await run(crew, options(on_worker_failure="continue"))

    assert crew.agents_called == ["lead", "writer", "tester", "lead"]
    assert outcome.state == "completed"
    assert "1. [writer] draft (failed)\nboom" in crew.inputs_of("lead")[1].text


async def test_a_plan_without_steps_fails_clearly() -> None:
    crew = team(always("I would rather not plan."))

    outcome = await run(crew, options())

    assert outcome.state == "failed"
    assert outcome.text == "lead's plan held no steps (expected a numbered list or data.steps)"


async def test_a_worker_asking_for_input_pauses_the_run() -> None:
    crew = team(by_role(["1. writer: draft"], ["ok"]), writer=always(result("Which tone?", state="input-required")))

    outcome = await run(crew, options(on_worker_failure="continue"))

    assert outcome.state == "input-required" and outcome.text == "Which tone?"


def test_best_worker_matches_card_words_and_falls_back_to_turn_order() -> None:
    cards = {card.name: card for card in CARDS}
    workers = ("writer", "tester")
    assert best_worker("Add pytest unit tests", workers, cards, 0) == "tester"
    assert best_worker("polish the docs", workers, cards, 1) == "writer"
    assert [best_worker("cook dinner", workers, cards, index) for index in range(3)] == ["writer", "tester", "writer"]


def test_plan_lines_name_workers_only_when_they_are_workers() -> None:
    reply = StepResult("lead", "completed", "1. Note: be brief\n- **tester**: run it\n* plain step\nnot a step")
    plan = parse_plan(reply, ("writer", "tester"), {name: AgentInfo(name, "") for name in ("writer", "tester")})
    assert [(step.agent, step.task) for step in plan] == [
        ("writer", "Note: be brief"),
        ("tester", "run it"),
        ("writer", "plain step"),
    ]
