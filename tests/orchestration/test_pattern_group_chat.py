"""Group chat over scripted agents: speaker selection, termination, limits and failure policy."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.orchestration.api import LimitExceededError, Limits, StepInput, StepResult
from gateway.orchestration.catalog import pattern
from gateway.orchestration.group_chat import SPEC, GroupChatOptions, run
from tests.orchestration.scripted_run import always, data_of, in_order, result, scripted


def options(**values: object) -> GroupChatOptions:
    return GroupChatOptions.model_validate(values)


def test_catalog_names_the_group_chat() -> None:
    assert pattern("group-chat") is SPEC
    assert SPEC.options is GroupChatOptions and SPEC.min_participants == 2


async def test_round_robin_until_a_keyword() -> None:
    chat = scripted(
        {
            "writer": in_order("draft one", "draft two"),
            "critic": in_order("the intro is weak", "APPROVED, ship it"),
        },
        request="write a haiku",
    )

    outcome = await run(chat, options())

    assert chat.agents_called == ["writer", "critic", "writer", "critic"]
    assert outcome.state == "completed"
    assert outcome.text == "APPROVED, ship it"
    assert data_of(outcome)["stopped_by"] == "keyword"
    assert data_of(outcome)["rounds"] == 4
    assert [turn["speaker"] for turn in data_of(outcome)["transcript"]] == ["writer", "critic", "writer", "critic"]
    assert "round 2: critic speaking" in chat.progress_messages


async def test_each_speaker_sees_the_request_and_only_the_last_turns() -> None:
    chat = scripted({"a": always("from a"), "b": always("from b"), "c": always("from c")}, request="topic: tides")

    await run(chat, options(max_rounds=4, context_turns=2))

    fourth = chat.steps[3].request
    assert fourth.text.startswith("Request: topic: tides")
    assert "(1 earlier turns omitted)" in fourth.text
    assert "[b] from b\n[c] from c" in fourth.text
    context = fourth.data[0]["group_chat"]
    assert [turn["speaker"] for turn in context["transcript"]] == ["b", "c"]
    assert (context["round"], context["speaker"], context["omitted"]) == (4, "a", 1)


async def test_request_data_and_files_reach_every_speaker() -> None:
    request = StepInput("review this", data=({"ticket": 7},))
    chat = scripted({"a": always("ok"), "b": always("DONE")}, request=request)

    await run(chat, options())

    assert all({"ticket": 7} in step.request.data for step in chat.steps)


async def test_rules_pick_the_speaker_and_fall_back_to_turn_order() -> None:
    chat = scripted(
        {
            "planner": always("we need code for the parser"),
            "coder": always("review please: parser done"),
            "reviewer": in_order("looks odd", "DONE"),
        },
        request="build a parser",
    )
    rules = [{"when": "CODE", "speaker": "coder"}, {"when": r"^review", "speaker": "reviewer", "regex": True}]

    outcome = await run(chat, options(speaker_selection="rules", rules=rules))

    # request matches no rule -> planner (turn order); "code" -> coder; "^review" -> reviewer;
    # "looks odd" matches nothing -> the next after reviewer in turn order is planner.
    assert chat.agents_called == ["planner", "coder", "reviewer", "planner", "coder", "reviewer"]
    assert data_of(outcome)["stopped_by"] == "keyword"


async def test_manager_chooses_speakers_and_may_end_the_chat() -> None:
    manager = in_order("critic", result(data={"speaker": "writer"}), "Let us have **nobody**", "DONE")
    chat = scripted({"host": manager, "writer": always("a line"), "critic": always("a remark")}, request="poem")

    outcome = await run(chat, options(speaker_selection="manager", manager="host"))

    assert chat.agents_called == ["host", "critic", "host", "writer", "host", "critic", "host"]
    assert "round 3: host named no speaker; critic is next in turn" in chat.progress_messages
    assert outcome.state == "completed"
    assert data_of(outcome)["stopped_by"] == "manager"
    asked = chat.inputs_of("host")[0].text
    assert "Who speaks next? Answer with exactly one of: writer, critic" in asked


async def test_manager_defaults_to_the_first_participant_and_is_not_a_speaker() -> None:
    chat = scripted({"host": always("writer"), "writer": always("DONE")})

    await run(chat, options(speaker_selection="manager"))

    assert chat.agents_called == ["host", "writer"]


async def test_consensus_needs_the_last_speakers_all_agreeing() -> None:
    chat = scripted(
        {
            "a": in_order("DONE", "DONE"),
            "b": in_order("not yet", "DONE"),
            "c": in_order("DONE", "no"),
        }
    )

    outcome = await run(chat, options(consensus=2))

    # a DONE, b no, c DONE (b's latest disagrees), a DONE (c and a agree) -> ends after 4 turns.
    assert chat.agents_called == ["a", "b", "c", "a"]
    assert data_of(outcome)["stopped_by"] == "consensus"


async def test_a_data_flag_decides_and_a_negated_keyword_does_not_end_the_chat() -> None:
    refused = result("APPROVED", data={"approved": False})
    chat = scripted({"a": in_order("NOT APPROVED yet", refused, result(data={"done": True})), "b": always("hmm")})

    outcome = await run(chat, options())

    assert chat.agents_called == ["a", "b", "a", "b", "a"]
    assert data_of(outcome)["stopped_by"] == "keyword"


async def test_max_rounds_option_completes_the_chat() -> None:
    chat = scripted({"a": always("more"), "b": always("more")})

    outcome = await run(chat, options(max_rounds=3))

    assert outcome.state == "completed"
    assert len(chat.steps) == 3
    assert data_of(outcome)["stopped_by"] == "max_rounds"


async def test_the_run_round_limit_raises() -> None:
    chat = scripted({"a": always("more"), "b": always("more")}, limits=Limits(max_rounds=2))

    with pytest.raises(LimitExceededError) as caught:
        await run(chat, options(max_rounds=5))

    assert caught.value.limit == "round"
    assert "the group chat needs round 3 but the run allows 2" in str(caught.value)
    assert len(chat.steps) == 2


async def test_the_step_limit_propagates() -> None:
    chat = scripted(
        {"host": always("a"), "a": always("more"), "b": always("more")},
        limits=Limits(max_steps=3),
    )

    with pytest.raises(LimitExceededError, match="step limit reached"):
        await run(chat, options(speaker_selection="manager", manager="host"))
    assert len(chat.steps) == 3


async def test_a_failing_speaker_fails_the_run_by_default() -> None:
    chat = scripted({"a": always("hello"), "b": always(result(state="failed", error="model overloaded"))})

    outcome = await run(chat, options())

    assert outcome.state == "failed"
    assert outcome.text == "b failed while speaking in round 2: model overloaded"
    assert len(data_of(outcome)["transcript"]) == 2


async def test_a_failing_speaker_can_be_skipped() -> None:
    chat = scripted(
        {
            "a": in_order("first", "DONE"),
            "b": always(result(state="failed", error="timeout")),
        }
    )

    outcome = await run(chat, options(on_speaker_failure="skip"))

    assert outcome.state == "completed"
    assert outcome.text == "DONE"
    assert "round 2: b failed, skipped" in chat.progress_messages


async def test_a_speaker_asking_for_input_pauses_the_run() -> None:
    chat = scripted({"a": always("hi"), "b": always(result("Which language?", state="input-required"))})

    outcome = await run(chat, options(on_speaker_failure="skip"))

    assert outcome.state == "input-required"
    assert outcome.text == "Which language?"
    assert data_of(outcome)["waiting_on"] == "b"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"speaker_selection": "rules"}, "needs at least one rule"),
        ({"rules": [{"when": "(", "speaker": "a", "regex": True}]}, "not a valid regex"),
        ({"consensus": 2, "keywords": [], "flags": []}, "consensus needs a keyword"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options(**values)


def test_step_results_from_scripts_carry_the_agent() -> None:
    respond = always(result("x"))
    answer = respond("named", StepInput(""))
    assert isinstance(answer, StepResult) and answer.agent == "named"
