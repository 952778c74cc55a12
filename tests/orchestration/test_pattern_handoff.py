"""Handoff over scripted agents: rules, transfers, the envelope and its filters, cycles, hops, routing;
and the bundled triage workflow routing real requests by the real cards."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gateway.hosting.registry import Registry
from gateway.hosting.runtimes import agent_info
from gateway.orchestration.api import (
    AgentInfo,
    HandoffCycleError,
    LimitExceededError,
    Limits,
    StepInput,
    StepResult,
)
from gateway.orchestration.catalog import pattern
from gateway.orchestration.handoff import SPEC, HandoffOptions, run
from gateway.runtime import FileInput
from gateway.settings import bundled_agents_dir
from gateway.spec import WorkflowRuntime
from tests.orchestration.scripted_run import Responder, ScriptedRun, always, data_of, in_order, result, scripted


def options(**values: object) -> HandoffOptions:
    return HandoffOptions.model_validate(values)


def transfer(to: str, text: str = "", note: str = "", data: Any = None) -> StepResult:
    return StepResult(agent="", state="completed", text=text, data=data, handoff_to=to, handoff_note=note)


def envelope_of(chat: ScriptedRun, agent: str, index: int = 0) -> dict[str, Any]:
    part = chat.inputs_of(agent)[index].data[0]
    assert set(part) == {"handoff"}
    envelope = part["handoff"]
    assert isinstance(envelope, dict)
    return envelope


def test_catalog_names_the_handoff() -> None:
    assert pattern("handoff") is SPEC
    assert SPEC.options is HandoffOptions and SPEC.min_participants == 1


async def test_the_first_participant_answers_when_nobody_hands_off() -> None:
    request = StepInput("hello", data=({"ticket": 7},))
    chat = scripted(
        {"front": always(result("hi there", data={"mood": "good"})), "back": always("unused")}, request=request
    )

    outcome = await run(chat, options())

    assert chat.agents_called == ["front"]
    assert chat.inputs_of("front") == [request], "the first agent gets the request as sent"
    assert outcome.state == "completed" and outcome.text == "hi there"
    assert data_of(outcome)["path"] == ["front"] and data_of(outcome)["hops"] == 0
    assert data_of(outcome)["final"] == {"agent": "front", "data": {"mood": "good"}}
    assert chat.progress_messages == ["start: front"]


async def test_rules_route_on_text_or_a_data_key_and_the_first_match_wins() -> None:
    chat = scripted(
        {
            "intake": always("this needs a SECURITY look and a billing look"),
            "security": always(result("2 findings", data={"summary": {"severity": "critical"}})),
            "billing": always("billed"),
            "lead": always("merged report"),
        },
        request="check my app",
    )
    rules = [
        {"when": "security", "to": "security"},
        {"when": "billing", "to": "billing"},
        {"when": r"crit\w+", "regex": True, "in": "summary.severity", "to": "lead", "note": "escalate"},
    ]

    outcome = await run(chat, options(entry="intake", rules=rules))

    assert chat.agents_called == ["intake", "security", "lead"]
    assert outcome.text == "merged report"
    assert data_of(outcome)["path"] == ["intake", "security", "lead"]
    assert chat.progress_messages == ["start: intake", "hop 1: intake → security", "hop 2: security → lead"]
    assert envelope_of(chat, "security")["note"] == "rule 1 matched ('security' in text)"
    assert envelope_of(chat, "lead")["note"] == "escalate"
    assert [step.label for step in chat.steps] == ["start: intake", "hop 1: security", "hop 2: lead"]


async def test_a_rule_on_a_missing_data_key_does_not_fire() -> None:
    chat = scripted({"a": always(result("text mentions b", data={"other": 1})), "b": always("b")})

    outcome = await run(chat, options(rules=[{"when": "b", "in": "verdict", "to": "b"}]))

    assert chat.agents_called == ["a"] and outcome.state == "completed"


async def test_an_agent_transfers_to_another_with_a_note() -> None:
    chat = scripted(
        {"triage": always(transfer("billing", note="refund order 42")), "billing": always("refunded")},
        request="I want my money back",
    )

    outcome = await run(chat, options())

    assert chat.agents_called == ["triage", "billing"]
    assert outcome.state == "completed" and outcome.text == "refunded"
    envelope = envelope_of(chat, "billing")
    assert envelope["from"] == "triage"
    assert envelope["note"] == "refund order 42" and envelope["remaining_work"] == "refund order 42"
    assert chat.progress_messages[-1] == "hop 1: triage → billing"


async def test_rules_take_precedence_over_a_transfer() -> None:
    chat = scripted({"a": always(transfer("b", text="URGENT")), "b": always("b"), "c": always("c")})

    await run(chat, options(rules=[{"when": "urgent", "to": "c"}]))

    assert chat.agents_called == ["a", "c"]


async def test_the_envelope_carries_request_work_findings_and_criteria() -> None:
    request = StepInput("review app.py", data=({"repo": "shop"},), files=(FileInput("app.py", text="x = 1\n"),))
    finding = {"file": "app.py", "line": 1, "rule": "SEC001", "severity": "high", "message": "secret"}
    handing = transfer("lead", text="1 finding", note="rank it", data={"findings": [finding], "remaining_work": "rank"})
    chat = scripted({"security": always(handing), "lead": always("ranked")}, request=request)

    await run(chat, options(success_criteria="every finding ranked"))

    message = chat.inputs_of("lead")[0]
    assert message.data[0]["handoff"] == {
        "original_request": "review app.py",
        "from": "security",
        "work_done": [{"agent": "security", "summary": "1 finding"}],
        "findings": [finding],
        "remaining_work": "rank",
        "success_criteria": "every finding ranked",
        "note": "rank it",
    }
    assert message.data[1:] == ({"repo": "shop"},) and message.files == request.files
    assert message.text.startswith("review app.py\n\n--- handed off from security to lead ---\nNote: rank it\n")
    assert "Work done so far:\n[security]\n1 finding" in message.text
    assert "Findings so far: 1 (in the handoff data part)" in message.text
    assert "Remaining work: rank" in message.text and "Success criteria: every finding ranked" in message.text


def relay(filter_name: str, **extra: object) -> tuple[ScriptedRun, HandoffOptions]:
    long_text = "first " + "x" * 50
    chat = scripted(
        {
            "a": always(transfer("b", text=long_text, data={"findings": [{"rule": "A1"}]})),
            "b": always(transfer("c", text="second", note="finish", data={"findings": [{"rule": "B1"}]})),
            "c": always("done"),
        },
        request="go",
    )
    return chat, options(input_filter=filter_name, **extra)


@pytest.mark.parametrize(
    ("filter_name", "work_done", "rules"),
    [
        ("full", [("a", "first " + "x" * 50), ("b", "second")], ["A1", "B1"]),
        ("last", [("b", "second")], ["B1"]),
        ("summary", [("a", "first xxxx…"), ("b", "second")], ["A1", "B1"]),
        ("none", [], []),
    ],
)
async def test_each_input_filter_compacts_what_the_next_agent_sees(
    filter_name: str, work_done: list[tuple[str, str]], rules: list[str]
) -> None:
    chat, chosen = relay(filter_name, summary_chars=11)

    outcome = await run(chat, chosen)

    envelope = envelope_of(chat, "c")
    assert [(item["agent"], item["summary"]) for item in envelope["work_done"]] == work_done
    assert [finding["rule"] for finding in envelope["findings"]] == rules
    assert (envelope["from"], envelope["note"], envelope["original_request"]) == ("b", "finish", "go")
    if not work_done:
        assert "Work done so far" not in chat.inputs_of("c")[0].text
    record = data_of(outcome)["envelope"]
    assert [item["agent"] for item in record["work_done"]] == ["a", "b", "c"], "the outcome keeps the whole record"
    assert record["work_done"][0]["summary"] == "first " + "x" * 50


async def test_a_cycle_is_refused_naming_the_path() -> None:
    chat = scripted({"a": always(transfer("b")), "b": always(transfer("c")), "c": always(transfer("a"))})

    with pytest.raises(HandoffCycleError, match="handoff cycle: a → b → c → a"):
        await run(chat, options())
    assert chat.agents_called == ["a", "b", "c"]


async def test_handing_off_to_oneself_is_a_cycle() -> None:
    chat = scripted({"a": always(transfer("a"))})

    with pytest.raises(HandoffCycleError, match="a → a"):
        await run(chat, options())


async def test_allow_revisit_returns_to_an_agent_on_the_path() -> None:
    chat = scripted({"a": in_order(transfer("b"), "a again, finished"), "b": always(transfer("a", note="over to you"))})

    outcome = await run(chat, options(allow_revisit=True))

    assert chat.agents_called == ["a", "b", "a"]
    assert outcome.text == "a again, finished"
    assert data_of(outcome)["path"] == ["a", "b", "a"] and data_of(outcome)["hops"] == 2


async def test_the_hop_option_limits_handoffs() -> None:
    chat = scripted({"a": always(transfer("b")), "b": always(transfer("a"))})

    with pytest.raises(LimitExceededError) as caught:
        await run(chat, options(allow_revisit=True, max_hops=3))

    assert caught.value.limit == "hop"
    assert "handoff a → b → a → b → a needs hop 4 but the run allows 3" in str(caught.value)
    assert len(chat.steps) == 4


async def test_the_run_hop_limit_bounds_the_option() -> None:
    chat = scripted(
        {"a": always(transfer("b")), "b": always(transfer("c")), "c": always("c")}, limits=Limits(max_hops=1)
    )

    with pytest.raises(LimitExceededError, match="needs hop 2 but the run allows 1"):
        await run(chat, options(max_hops=5))
    assert chat.agents_called == ["a", "b"]


async def test_zero_hops_allows_no_handoff() -> None:
    chat = scripted({"a": always(transfer("b")), "b": always("b")})

    with pytest.raises(LimitExceededError, match="hop limit reached"):
        await run(chat, options(max_hops=0))
    assert chat.agents_called == ["a"]


async def test_the_step_limit_propagates() -> None:
    chat = scripted({"a": always(transfer("b")), "b": always(transfer("a"))}, limits=Limits(max_steps=3))

    with pytest.raises(LimitExceededError, match="step limit reached"):
        await run(chat, options(allow_revisit=True))
    assert len(chat.steps) == 3


async def test_a_handoff_to_an_unknown_agent_fails_naming_it() -> None:
    chat = scripted({"a": always(transfer("ghost")), "b": always("b")})

    outcome = await run(chat, options())

    assert outcome.state == "failed"
    assert outcome.text == (
        "handoff: a handed off to 'ghost', which is not a participant of this run (participants: a, b)"
    )
    assert data_of(outcome)["path"] == ["a"]


async def test_a_failing_agent_fails_the_run_with_the_path_so_far() -> None:
    chat = scripted({"a": always(transfer("b", text="looked")), "b": always(result(state="failed", error="crashed"))})

    outcome = await run(chat, options())

    assert outcome.state == "failed"
    assert outcome.text == "b failed while handling the request (hop 1: b): crashed"
    assert data_of(outcome)["path"] == ["a", "b"]
    assert [item["summary"] for item in data_of(outcome)["envelope"]["work_done"]] == ["looked", "crashed"]


async def test_an_agent_asking_for_input_pauses_the_run() -> None:
    chat = scripted({"a": always(transfer("b")), "b": always(result("Which file?", state="input-required"))})

    outcome = await run(chat, options())

    assert outcome.state == "input-required" and outcome.text == "Which file?"
    assert data_of(outcome)["waiting_on"] == "b"


CARDS = (
    AgentInfo("billing", "Handles invoices and payments.", tags=("billing", "invoice"), examples=("refund my order",)),
    AgentInfo("tech", "Fixes technical problems.", tags=("bug", "error"), examples=("the app crashes on start",)),
)


async def test_route_first_starts_at_the_best_matching_card() -> None:
    chat = scripted(
        {"billing": always("refunded"), "tech": always("fixed")}, request="my app crashes with an error", infos=CARDS
    )

    outcome = await run(chat, options(route_first=True))

    assert chat.agents_called == ["tech"]
    assert outcome.text == "fixed"
    routing = data_of(outcome)["routing"]
    assert routing == [{"agent": "tech", "score": 9.0, "terms": ["app", "crash", "error"]}]
    assert chat.progress_messages[0] == "routed to tech (score 9: app, crash, error)"


@pytest.fixture
def helpdesk() -> ScriptedRun:
    return scripted({"billing": always("refunded"), "tech": always("fixed")}, request="refund it", infos=CARDS)


async def test_route_first_below_the_minimum_score_fails_listing_the_candidates(helpdesk: ScriptedRun) -> None:
    outcome = await run(helpdesk, options(route_first=True, min_score=4))

    assert outcome.state == "failed"
    assert outcome.text == (
        "no agent matches this request (minimum score 4); candidates:\n"
        "- billing (score 3): Handles invoices and payments.\n"
        "- tech (score 0): Fixes technical problems."
    )
    assert helpdesk.steps == []


async def test_route_first_falls_back_when_nothing_matches(helpdesk: ScriptedRun) -> None:
    outcome = await run(helpdesk, options(route_first=True, min_score=4, fallback_agent="tech"))

    assert helpdesk.agents_called == ["tech"]
    assert outcome.state == "completed"
    assert helpdesk.progress_messages[0] == "no agent matches this request; falling back to tech"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"route_first": True, "entry": "a"}, "exclude each other"),
        ({"fallback_agent": "a"}, "only with route_first"),
        ({"rules": [{"when": "(", "to": "a", "regex": True}]}, "not a valid regex"),
        ({"rules": [{"when": "x"}]}, "to"),
        ({"input_filter": "most"}, "input_filter"),
        ({"max_hops": -1}, "max_hops"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_options_are_refused(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        options(**values)


# --- the bundled triage workflow, routing by the real cards ---------------------------------------


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(bundled_agents_dir())


def triage_runtime(registry: Registry) -> WorkflowRuntime:
    spec = registry.get("triage")
    assert spec is not None and isinstance(spec.runtime, WorkflowRuntime)
    assert spec.runtime.pattern == "handoff"
    return spec.runtime


def triage(registry: Registry, request: str) -> tuple[ScriptedRun, HandoffOptions]:
    """The triage workflow over scripted participants that know the real cards."""
    runtime = triage_runtime(registry)
    infos = [agent_info(spec) for name in runtime.participants if (spec := registry.get(name)) is not None]
    chat = scripted({name: f"{name} here" for name in runtime.participants}, request=request, infos=infos)
    return chat, HandoffOptions.model_validate(runtime.options)


def test_triage_routes_first_among_the_bundled_agents(registry: Registry) -> None:
    runtime = triage_runtime(registry)
    assert HandoffOptions.model_validate(runtime.options).route_first
    assert "triage" not in runtime.participants
    assert all(registry.get(name) is not None for name in runtime.participants)


@pytest.mark.parametrize(
    ("request_text", "agent"),
    [
        ("is there a hard-coded password in this code?", "security-reviewer"),
        ("which function is too complex?", "complexity-reviewer"),
        ("fix the lint in this file", "lint-fix"),
        ("lint this", "style-reviewer"),
        ("review this pull request for me", "code-review"),
    ],
)
async def test_triage_routes_each_request_to_its_agent(registry: Registry, request_text: str, agent: str) -> None:
    chat, chosen = triage(registry, request_text)

    outcome = await run(chat, chosen)

    assert chat.agents_called == [agent]
    assert outcome.state == "completed" and outcome.text == f"{agent} here"


async def test_triage_lists_the_agents_when_nothing_matches(registry: Registry) -> None:
    chat, chosen = triage(registry, "what's the weather in Lisbon?")

    outcome = await run(chat, chosen)

    assert outcome.state == "failed" and chat.steps == []
    assert outcome.text.startswith("no agent matches this request")
    assert all(f"- {name} (score 0): " in outcome.text for name in chat.participants)


def compact_relay(summariser: Responder) -> ScriptedRun:
    """a -> b -> c, whose history passes 64 characters (16 tokens) at the second hop only; ``sum`` summarises."""
    script = {
        "a": always(transfer("b", text="first " + "x" * 50, data={"findings": [{"rule": "A1"}]})),
        "b": always(transfer("c", text="second", note="finish", data={"findings": [{"rule": "B1"}]})),
        "c": always("done"),
        "sum": summariser,
    }
    return scripted(script, request="go")


async def test_compact_has_a_model_summarise_a_long_history_to_its_budget_as_a_step_of_the_run() -> None:
    chat = compact_relay(always("a and b ranked A1, B1"))

    outcome = await run(chat, options(input_filter="compact", compact_tokens=16, compact_agent="sum"))

    assert outcome.state == "completed"
    assert chat.agents_called == ["a", "b", "sum", "c"], "the first hop's history was within the budget"
    assert [item["agent"] for item in envelope_of(chat, "b")["work_done"]] == ["a"]
    envelope = envelope_of(chat, "c")
    assert envelope["work_done"] == [{"agent": "summary by sum", "summary": "a and b ranked A1, B1"}]
    assert [finding["rule"] for finding in envelope["findings"]] == ["A1", "B1"], "findings are kept whole"
    (asked,) = chat.inputs_of("sum")
    assert "in at most 16 tokens" in asked.text and "[a]\nfirst xxx" in asked.text and "[b]\nsecond" in asked.text
    assert asked.data == ({"compact": {"max_tokens": 16, "for": "c"}},)
    assert "[a]\nfirst" not in chat.inputs_of("c")[0].text, "the next agent reads the summary, not the history"
    assert [item["agent"] for item in data_of(outcome)["envelope"]["work_done"]] == ["a", "b", "c"]


async def test_compact_cuts_the_history_to_its_budget_when_the_summary_fails() -> None:
    chat = compact_relay(always(result(state="failed", error="model down")))

    outcome = await run(chat, options(input_filter="compact", compact_tokens=16, compact_agent="sum"))

    assert outcome.state == "completed"
    assert all(len(item["summary"]) <= 32 for item in envelope_of(chat, "c")["work_done"])
    assert "hop 2: compact by sum failed; history cut to 64 characters instead" in chat.progress_messages


async def test_compact_by_default_asks_the_agent_handed_to() -> None:
    chat = compact_relay(always("unused"))
    chat.responders = {**chat.responders, "c": in_order("summary by c's own model", then="done")}

    await run(chat, options(input_filter="compact", compact_tokens=16))

    assert chat.agents_called == ["a", "b", "c", "c"]
    assert envelope_of(chat, "c", 1)["work_done"] == [{"agent": "summary by c", "summary": "summary by c's own model"}]
