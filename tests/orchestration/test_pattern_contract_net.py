"""Contract-net end to end: bids as child tasks, scores, a coalition award, re-announcement, bad and late bids."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import TaskState

from gateway.orchestration.api import AgentInfo, StepResult
from gateway.orchestration.bids import Bid, derive, read_bid
from gateway.orchestration.workflows import InvalidWorkflowError, plan_workflow
from gateway.spec import AgentSpec
from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.kill_and_resume import kill_mid_run
from tests.orchestration.mcp_run import call_workflow
from tests.orchestration.run_client import data_of, get_task, list_tasks, run_workflow

BIDDER = "tests.orchestration.bidders:bidder"
BIDDERS = ["flaky", "cheap", "pricey", "broken", "shy", "plain"]


def bidders() -> list[dict[str, Any]]:
    return [
        python_agent("flaky", BIDDER, cost=1, capability=1.0, confidence=1.0, fail_award=True),
        python_agent("cheap", BIDDER, cost=1, capability=0.9, confidence=0.9),
        python_agent("pricey", BIDDER, cost=10, capability=["translation", "review"], confidence=0.9),
        python_agent("broken", BIDDER, raw={"capability": 2, "cost": -1}),
        python_agent("shy", BIDDER, raw=None),
        python_agent("plain", "tests.team_patterns.fixtures:upper"),
    ]


OPTIONS = {"award": 2, "required_capabilities": ["translation"], "bid_deadline_s": 30}


def by_agent(bids: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {bid["agent"]: bid for bid in bids}


async def test_bids_are_scored_a_coalition_is_awarded_and_a_failed_contractor_is_replaced(tmp_path: Path) -> None:
    agents = agents_folder(tmp_path / "agents", [*bidders(), workflow("tender", "contract-net", BIDDERS, OPTIONS)])
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        log = await run_workflow(gateway, "tender", "translate the manual")
        bid_task = await get_task(gateway, "cheap", log.step("step-2-cheap").task_id)
        tool = await call_workflow(gateway, "tender", {"text": "translate it over mcp"})

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    result = data_of(log.artifact("result"))
    first, second = result["rounds"]
    bids = by_agent(first["bids"])
    assert bids["flaky"]["status"] == "bid" and bids["flaky"]["score"] == pytest.approx(1.95)
    assert bids["cheap"]["score"] == pytest.approx(1.75)
    assert bids["pricey"]["capability"] == 1.0, "it offers the required capability"
    assert (
        bids["broken"]["status"] == "malformed"
        and "cost: Input should be greater than or equal to 0" in (bids["broken"]["reason"])
    )
    assert bids["shy"]["status"] == "declined"
    assert bids["plain"]["status"] == "derived" and bids["plain"]["bid"]["cost"] == 1.0, "no bid: derived from its card"
    assert first["awarded"] == ["flaky", "cheap"]
    assert first["failed"] == [{"agent": "flaky", "reason": "could not do it after all"}]
    assert [b["agent"] for b in second["bids"]] == ["pricey", "broken", "shy", "plain"], "re-announced to the rest"
    assert second["awarded"] == ["pricey"]
    assert result["contractors"] == ["cheap", "pricey"]
    assert log.text == ("cheap: done at cost 1: translate the manual\n\npricey: done at cost 10: translate the manual")
    assert "contract-net round 1: 6 bidders; awarded to flaky (1.95), cheap (1.75)" in log.progress
    assert "contract-net round 1: flaky failed the contract; announcing again" in log.progress
    assert list(bid_task.history[0].reference_task_ids) == [log.task.id], "each bid is a child task of the run"
    assert "award cheap (round 1) · cheap: working on round 1's award" in log.progress
    assert not tool.is_error and tool.result["state"] == "completed", tool.result
    assert tool.artifact("result")["data"]["contractors"] == ["cheap", "pricey"]
    assert any("awarded to flaky (1.95), cheap (1.75)" in m for m in tool.progress), tool.progress


async def test_a_late_bid_is_left_out_and_its_step_canceled(tmp_path: Path) -> None:
    files = [
        python_agent("cheap", BIDDER, cost=1),
        python_agent("sleepy", BIDDER, cost=0, hang=True),
        workflow("tender", "contract-net", ["sleepy", "cheap"], {"bid_deadline_s": 2}),
    ]
    async with running_gateway(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files))) as gateway:
        log = await run_workflow(gateway, "tender", "do it")
        late = await list_tasks(gateway, "sleepy")

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    assert [t.status.state for t in late] == [TaskState.TASK_STATE_CANCELED], "the late bid's task was canceled"
    bids = by_agent(data_of(log.artifact("result"))["rounds"][0]["bids"])
    assert bids["sleepy"] == {
        "agent": "sleepy",
        "status": "late",
        "reason": "no bid within the 2s deadline",
    }
    assert data_of(log.artifact("result"))["contractors"] == ["cheap"]


async def test_no_eligible_bid_fails_the_run_naming_each_bidders_reason(tmp_path: Path) -> None:
    files = [
        python_agent("broken", BIDDER, raw={"cost": 1}),
        python_agent("shy", BIDDER, raw=None),
        python_agent("pricey", BIDDER, cost=50),
        workflow("tender", "contract-net", ["broken", "shy", "pricey"], {"max_cost": 20}),
    ]
    async with running_gateway(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files))) as gateway:
        log = await run_workflow(gateway, "tender", "do it")

    assert log.task.status.state == TaskState.TASK_STATE_FAILED
    assert log.text == (
        "round 1: no eligible bid (broken: malformed (malformed bid: capability: Field required); "
        "shy: declined (my bid); pricey: ineligible (cost 50 > 20))"
    )


async def test_contractors_that_keep_failing_end_the_run_after_the_last_announcement(tmp_path: Path) -> None:
    files = [
        python_agent("flaky", BIDDER, fail_award=True),
        python_agent("flakier", BIDDER, fail_award=True, cost=2),
        workflow("tender", "contract-net", ["flaky", "flakier"], {"max_announcements": 2}, {"retries": 0}),
    ]
    async with running_gateway(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files))) as gateway:
        log = await run_workflow(gateway, "tender", "do it")

    assert log.task.status.state == TaskState.TASK_STATE_FAILED
    assert log.text == "every contractor failed after 2 announcement(s): flaky, flakier"
    assert [r["awarded"] for r in data_of(log.task.status.message)["rounds"]] == [["flaky"], ["flakier"]]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"award": 3}, "award is 3 but only 2 participants can bid"),
        ({"derive_bids_for": ["nobody"]}, "derive_bids_for names agents that are not participants: nobody"),
        ({"bid_deadline_s": 0}, "runtime.options.bid_deadline_s: Input should be greater than 0"),
        ({"weights": {"price": 1}}, "runtime.options.weights.price: Extra inputs are not permitted"),
    ],
)
def test_bad_contract_net_options_are_refused_at_load(options: dict[str, Any], says: str) -> None:
    spec = AgentSpec.model_validate(workflow("tender", "contract-net", ["a", "b"], options))
    with pytest.raises(InvalidWorkflowError) as refused:
        plan_workflow(spec)
    assert says in refused.value.detail


def test_a_derived_bid_comes_from_the_card_and_how_the_agents_calls_went() -> None:
    card = AgentInfo("translator", "Translates documents.", skills=("Translation",), tags=("translation", "french"))

    assert derive(card, "translate the manual", ["translation", "french"], 2.0, 0) == Bid(
        capability=1.0, cost=2.0, confidence=0.5
    )
    assert derive(card, "anything", ["translation", "review"], 2.0, 0).capability == 0.5  # type: ignore[union-attr]
    assert derive(card, "translate the french manual", [], 1.0, 1).confidence == 0.25  # type: ignore[union-attr]
    half_open = dataclasses.replace(card, circuit="half-open")
    assert derive(half_open, "x", ["translation"], 1.0, 1).confidence == 0.125  # type: ignore[union-attr]
    assert derive(dataclasses.replace(card, circuit="open"), "x", ["translation"], 1.0, 0) is None


async def test_a_tender_killed_while_a_bid_is_out_resumes_without_asking_finished_bidders_again(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls.txt"
    files = [
        python_agent("steady", "tests.orchestration.bidders:logging_bidder", log=str(calls)),
        workflow("tender", "contract-net", ["steady", "echo"]),
    ]
    agents = agents_folder(tmp_path / "agents", files, bundled=["echo"])
    run = await kill_mid_run(tmp_path, agents, "tender", "wait: 3", "step-1-steady")  # echo's bid takes 3 s

    assert run.mid_run["status"]["state"] == "TASK_STATE_WORKING" and "step-2-echo" not in run.shown_before_kill
    assert run.done["status"]["state"] == "TASK_STATE_COMPLETED", run.done["status"]
    assert run.shown == ["step-1-steady", "step-2-echo", "step-3-steady", "result"]
    assert calls.read_text().splitlines() == ["call-for-bids", "award"], "steady's bid was not asked for again"


def test_a_bid_of_infinite_cost_is_malformed_not_a_nan_score() -> None:
    result = StepResult("pricey", "completed", data={"bid": {"capability": 1.0, "cost": float("inf")}})

    report = read_bid(result, [])

    assert report.status == "malformed" and report.bid is None
    assert report.reason.startswith("malformed bid: cost: Input should be a finite number")
