"""Concurrent workflows end to end: fan-out child tasks, fan-in merges, and the bundled code-review team."""

from __future__ import annotations

from pathlib import Path

from a2a.types.a2a_pb2 import TaskState

from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import data_of, get_task, request, run_workflow

PLANTED = Path(__file__).resolve().parents[1] / "samples" / "planted.py"
SEVERITY_ORDER = ["critical", "high", "medium", "low", "info"]
VOTERS = {"alice": ("yes", 0.2), "bob": ("yes", 0.3), "carol": ("no", 0.9)}


async def test_fan_out_runs_every_participant_as_a_child_and_votes(tmp_path: Path) -> None:
    voters = [python_agent(name, "answer", text=text, confidence=c) for name, (text, c) in VOTERS.items()]
    agents = agents_folder(
        tmp_path / "agents",
        [
            *voters,
            workflow("vote", "concurrent", list(VOTERS), {"merge": "majority-vote"}),
            workflow("weigh", "concurrent", list(VOTERS), {"merge": "confidence-weighted"}),
        ],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        vote = await run_workflow(gateway, "vote", "ship it?")
        weigh = await run_workflow(gateway, "weigh", "ship it?")
        children = {
            name: await get_task(gateway, name, vote.step(f"step-{n}-{name}").task_id)
            for n, name in enumerate(VOTERS, 1)
        }

    assert vote.task.status.state == TaskState.TASK_STATE_COMPLETED, vote.text
    assert vote.text == "yes" and data_of(vote.artifact("result"))["agreeing"] == ["alice", "bob"]
    assert weigh.text == "no", "carol's confidence outweighs the two others"
    assert sorted(vote.artifacts[:3]) == ["step-1-alice", "step-2-bob", "step-3-carol"]
    for name, child in children.items():
        assert child.status.state == TaskState.TASK_STATE_COMPLETED, name
        assert list(child.history[0].reference_task_ids) == [vote.task.id]
    for n, name in enumerate(VOTERS, 1):
        assert f"step {n}/3 · {name}: started" in vote.progress


async def test_partial_failure_is_tolerated_up_to_min_successes(tmp_path: Path) -> None:
    agents = agents_folder(
        tmp_path / "agents",
        [
            python_agent("broken", "fail"),
            python_agent("alice", "answer", text="fine"),
            workflow("lenient", "concurrent", ["broken", "alice"], limits={"retries": 0}),
            workflow("strict", "concurrent", ["broken", "alice"], {"min_successes": 2}, {"retries": 0}),
        ],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        lenient = await run_workflow(gateway, "lenient", "go")
        strict = await run_workflow(gateway, "strict", "go")

    assert lenient.task.status.state == TaskState.TASK_STATE_COMPLETED and lenient.text == "alice: fine"
    assert strict.task.status.state == TaskState.TASK_STATE_FAILED
    assert "1 of 2 completed, 2 needed (broken: broken on purpose)" in strict.text


async def review(gateway: RunningGateway) -> tuple[str, dict[str, object], list[str], list[str]]:
    log = await run_workflow(gateway, "code-review", request("Please review this file.", [PLANTED]), within=60)
    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    return log.text, data_of(log.artifact("result")), log.artifacts, log.progress


async def test_code_review_returns_the_leads_ranked_report(gateway: RunningGateway) -> None:
    text, result, artifacts, progress = await review(gateway)

    report = result["output"]
    assert isinstance(report, dict)
    rules = {f["rule"].split()[0] for f in report["findings"]}
    assert {"SEC001", "SEC002", "SEC003", "CPX001", "F401", "F821"} <= rules
    ranks = [SEVERITY_ORDER.index(f["severity"]) for f in report["findings"]]
    assert ranks == sorted(ranks), "ranked by severity"
    assert report["findings"][0]["rule"].startswith("SEC001"), "the hard-coded secret comes first"
    assert text.startswith("## Code review report")
    specialists = {"step-1-security-reviewer", "step-2-complexity-reviewer", "step-3-style-reviewer"}
    assert set(artifacts[:3]) == specialists and artifacts[3:] == ["step-4-review-lead", "result"]
    assert [r["agent"] for r in result["results"]] == ["security-reviewer", "complexity-reviewer", "style-reviewer"]
    assert "step 4/4 · review-lead: merging 6 findings" in progress, "the lead merged the specialists' findings"
