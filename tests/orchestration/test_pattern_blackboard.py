"""The blackboard pattern: shared versioned state, refused stale writes retried, history, live views, resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, SubscribeToTaskRequest, Task, TaskState
from a2a.utils.errors import UnsupportedOperationError
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import ResourceUpdatedNotification

from gateway.orchestration.api import Limits
from gateway.orchestration.workflows import InvalidWorkflowError, plan_workflow
from gateway.spec import AgentSpec
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import a2a_client
from tests.conftest import make_settings
from tests.mcp.conftest import MODERN
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.kill_and_resume import kill_mid_run
from tests.orchestration.mcp_run import call_workflow
from tests.orchestration.replay_harness import Answer, execute, new_record, plan, resume
from tests.orchestration.run_client import STREAMING, data_of, get_task, run_workflow

AGENTS = "tests.orchestration.board_agents"
TIMEOUT_S = 30
TEAM = ["writer", "editor", "reviewer"]
TEAM_OPTIONS: dict[str, Any] = {
    "contributors": {
        "writer": {"watches": ["request"]},
        "editor": {"watches": ["draft"]},
        "reviewer": {"watches": ["draft"]},
    },
    "done_when": {"field": "verdict", "op": "eq", "value": "approved"},
    "answer_key": "answer",
}


def team() -> list[dict[str, Any]]:
    return [
        python_agent("writer", f"{AGENTS}:drafter", key="draft", text="a first draft"),
        python_agent("editor", f"{AGENTS}:appender", key="draft", suffix=" (edited)"),
        python_agent("reviewer", f"{AGENTS}:approver", key="draft", needs="(edited)"),
    ]


def kinds(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["kind"], e["agent"]) for e in events]


async def test_contributors_take_turns_on_what_changed_until_done(tmp_path: Path) -> None:
    agents = agents_folder(tmp_path / "agents", [*team(), workflow("desk", "blackboard", TEAM, TEAM_OPTIONS)])
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        log = await run_workflow(gateway, "desk", "write the release note")
        turn = await get_task(gateway, "editor", log.step("step-2-editor").task_id)
        tool = await call_workflow(gateway, "desk", {"text": "over mcp"})

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    assert log.text == "a first draft (edited)"
    result = data_of(log.artifact("result"))
    assert result["version"] == 3 and result["reason"] == "done_when holds" and result["rounds"] == 3
    assert kinds(result["events"]) == [("start", ""), ("write", "writer"), ("write", "editor"), ("write", "reviewer")]
    assert result["events"][2] == {
        "seq": 3,
        "version": 2,
        "agent": "editor",
        "kind": "write",
        "keys": ["draft"],
        "round": 2,
    }
    assert log.artifacts.index("blackboard") < log.artifacts.index("result"), "the board is published as it changes"
    live = data_of(log.artifact("blackboard"))
    assert live["version"] == 3 and live["board"]["verdict"] == "approved"
    assert "blackboard v2: editor wrote draft" in log.progress
    assert list(turn.history[0].reference_task_ids) == [log.task.id], "each turn is a child task of the run"
    assert not tool.is_error and tool.result["text"] == "a first draft (edited)", tool.result
    assert tool.artifact("blackboard")["data"]["version"] == 3
    assert any("blackboard v1: writer wrote draft" in m for m in tool.progress), tool.progress


def pair(*files: dict[str, Any], **options: Any) -> list[dict[str, Any]]:
    names = [f["name"] for f in files]
    return [*files, workflow("desk", "blackboard", names, {"initial": {"draft": "x"}, "parallel": 2, **options})]


async def test_a_stale_write_is_refused_and_retried_on_the_new_version(tmp_path: Path) -> None:
    files = pair(
        python_agent("alice", f"{AGENTS}:appender", key="draft", suffix=" A"),
        python_agent("bob", f"{AGENTS}:appender", key="draft", suffix=" B"),
    )
    async with running_gateway(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files))) as gateway:
        log = await run_workflow(gateway, "desk", "append")

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    result = data_of(log.artifact("result"))
    assert result["board"]["draft"] == "x A B" and result["version"] == 2
    assert kinds(result["events"]) == [
        ("start", ""),
        ("write", "alice"),
        ("conflict", "bob"),
        ("write", "bob"),
        ("pass", "alice"),
    ]
    assert (
        result["events"][2]["reason"] == "stale write: made on version 0, but 'draft' changed in version 1 (by alice)"
    )
    assert result["reason"] == "no contributor has anything new to react to"
    assert [name for name in log.artifacts if name.startswith("step-")] == [
        "step-1-alice",
        "step-2-bob",
        "step-3-bob",
        "step-4-alice",
    ], "bob was asked again as a new child task"


async def test_a_write_that_stays_stale_is_given_up_and_a_malformed_one_refused(tmp_path: Path) -> None:
    files = pair(
        python_agent("alice", f"{AGENTS}:appender", key="draft", suffix=" A"),
        python_agent("stuck", f"{AGENTS}:stale", key="draft"),
        python_agent("junk", f"{AGENTS}:garbage"),
        parallel=3,
        max_conflict_retries=1,
    )
    async with running_gateway(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files))) as gateway:
        log = await run_workflow(gateway, "desk", "append")

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    events = data_of(log.artifact("result"))["events"]
    assert kinds(events) == [
        ("start", ""),
        ("write", "alice"),
        ("conflict", "stuck"),
        ("conflict", "stuck"),
        ("gave-up", "stuck"),
        ("malformed", "junk"),
        ("malformed", "junk"),  # junk watches every key: alice's write is news to it
    ]
    assert events[4]["reason"] == "still stale after 1 retries"
    assert events[5]["reason"].startswith("malformed write: base_version: Input should be a valid integer")
    assert "set: Input should be a valid dictionary" in events[5]["reason"]
    assert data_of(log.artifact("result"))["board"]["draft"] == "x A", "nothing of a refused write is applied"


def test_contributors_that_are_not_participants_are_refused_at_load() -> None:
    options = {"contributors": {"nobody": {"watches": ["draft"]}}}
    spec = AgentSpec.model_validate(workflow("desk", "blackboard", ["alice"], options))
    with pytest.raises(InvalidWorkflowError, match="contributors names agents that are not participants: nobody"):
        plan_workflow(spec)


@pytest.mark.parametrize(
    ("done_when", "says"),
    [
        ("score >= 'high'", "done_when: ge compares numbers, not 'high'"),
        ({"field": "stage", "op": "in", "value": "final"}, "done_when: in needs a list of values, not 'final'"),
    ],
)
def test_a_done_when_that_can_never_hold_is_refused_at_load(done_when: Any, says: str) -> None:
    spec = AgentSpec.model_validate(workflow("desk", "blackboard", ["alice"], {"done_when": done_when}))
    with pytest.raises(InvalidWorkflowError) as refused:
        plan_workflow(spec)
    assert says in refused.value.detail, refused.value.detail


async def once_in(gateway: RunningGateway, agent: str, task_id: str, states: set[int]) -> Task:
    """The task once it reached one of ``states``: followed over A2A streaming, then read with GetTask.

    A2A refuses ``SubscribeToTask`` on a task in a terminal state (UnsupportedOperationError), and the
    run may end between the first read and the subscription: then there is nothing left to follow.
    """
    async with a2a_client(gateway.agent_url(agent), STREAMING) as client:
        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state not in states:
            try:
                async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                    status = event.status_update.status if event.HasField("status_update") else event.task.status
                    if status.state in states:
                        break
            except UnsupportedOperationError as refused:
                assert "terminal state" in str(refused), refused
        return await client.get_task(GetTaskRequest(id=task_id))


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
@pytest.mark.parametrize("mode", ["legacy", MODERN])
async def test_the_board_is_a_live_mcp_resource_that_subscribers_follow(tmp_path: Path, mode: str) -> None:
    files = [
        *team(),
        python_agent("asker", f"{AGENTS}:asker"),
        workflow(
            "desk",
            "blackboard",
            ["asker", *TEAM],
            {
                **TEAM_OPTIONS,
                "contributors": {**TEAM_OPTIONS["contributors"], "asker": {"watches": ["request"]}},
                "done_when": "verdict == 'approved'",  # the expression form of the same condition
            },
        ),
    ]
    updated: list[str] = []
    changed = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.append(str(message.params.uri))
            changed.set()

    folder = agents_folder(tmp_path / "agents", files)
    async with (
        running_gateway(make_settings(tmp_path, agents=folder)) as gateway,
        Client(f"{gateway.url}/mcp", mode=mode, message_handler=on_message) as client,
    ):
        with anyio.fail_after(TIMEOUT_S):
            started = await client.call_tool("start_run", {"agent": "desk", "text": "write the release note"})
            run_id = started.structured_content["run_id"]
            uri = f"run://{run_id}/artifacts/blackboard"
            paused = await once_in(gateway, "desk", run_id, {TaskState.TASK_STATE_INPUT_REQUIRED})  # the asker asks
            board_then = json.loads((await client.read_resource(uri)).contents[0].text)
            answer = {"agent": "desk", "text": "carol", "task_id": run_id}
            if mode == MODERN:  # 2026-07-28: a subscriptions/listen stream
                async with client.listen(resource_subscriptions=[uri]) as subscription:
                    await client.call_tool("start_run", answer)
                    updated.append(str((await anext(aiter(subscription))).uri))
            else:  # 2025-11-25: resources/subscribe, then notifications on the session
                await client.subscribe_resource(uri)
                await client.call_tool("start_run", answer)
                await changed.wait()
            await once_in(gateway, "desk", run_id, {TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED})
            done = json.loads((await client.read_resource(uri)).contents[0].text)
            unknown = await client.call_tool("get_run", {"run_id": "nope"})
            with pytest.raises(MCPError, match="has no artifact 'board' \\(it has: blackboard, result"):
                await client.read_resource(f"run://{run_id}/artifacts/board")

    assert paused.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert board_then["state"] == "input-required" and board_then["data"]["version"] == 0
    assert uri in updated, "the subscriber heard of the board's change"
    assert done["name"] == "blackboard" and done["state"] == "completed" and done["data"]["version"] == 4
    assert done["data"]["board"]["owner"] == "carol" and done["data"]["board"]["verdict"] == "approved"
    assert unknown.is_error


def script(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
    view = data[0]["blackboard"]
    current = view["board"].get("draft", "")
    suffix = {"ann": " A", "bob": " B", "cy": " C"}[agent]
    if suffix in current:
        return Answer("pass")
    return Answer(
        "wrote", data={"write": {"base_version": view["version"], "set": {"draft": current + suffix}}}, delay=3
    )


async def test_a_blackboard_resumed_from_any_checkpoint_ends_as_the_uninterrupted_run() -> None:
    flow = plan("blackboard", ["ann", "bob", "cy"], {"initial": {"draft": "x"}, "parallel": 3}, Limits(max_rounds=6))
    whole = await execute(flow, new_record("append"), script)
    assert whole.outcome.state == "completed" and whole.outcome.data["board"]["draft"] == "x A B C"
    for index, row in enumerate(whole.checkpoints):
        resumed = await resume(flow, row, script)
        assert resumed.outcome == whole.outcome, f"resumed from checkpoint {index}"
        done = len(json.loads(row[9]))
        assert len(resumed.calls) == len(whole.calls) - done, f"checkpoint {index}: finished turns ran again"


async def test_a_board_killed_mid_turn_resumes_with_its_writes_and_shows_the_board_again(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    files = [
        python_agent("scribe", f"{AGENTS}:logging_drafter", log=str(calls), key="draft", text="noted"),
        workflow("desk", "blackboard", ["scribe", "echo"], {"contributors": {"echo": {"watches": ["request"]}}}),
    ]
    agents = agents_folder(tmp_path / "agents", files, bundled=["echo"])
    run = await kill_mid_run(tmp_path, agents, "desk", "wait: 3", "step-1-scribe")  # echo's turn takes 3 s

    assert run.mid_run["status"]["state"] == "TASK_STATE_WORKING" and "step-2-echo" not in run.shown_before_kill
    assert run.done["status"]["state"] == "TASK_STATE_COMPLETED", run.done["status"]
    board = next(a for a in run.done["artifacts"] if a["name"] == "blackboard")["parts"][0]["data"]
    assert board["version"] == 1 and board["board"]["draft"] == "noted"
    assert [(e["kind"], e["agent"]) for e in board["events"]] == [("start", ""), ("write", "scribe"), ("pass", "echo")]
    assert calls.read_text().splitlines() == ["turn on version 0"], "the scribe's turn was not taken again"
