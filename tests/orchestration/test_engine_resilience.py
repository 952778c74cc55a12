"""Every limit and resilience rule of the engine, triggered through real runs on a real gateway."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from a2a.client import Client
from a2a.types.a2a_pb2 import CancelTaskRequest, SendMessageRequest, TaskState
from a2a.utils.errors import InvalidParamsError

from gateway.hosting.executor import data_part
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import a2a_client
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.mcp_run import call_workflow
from tests.orchestration.run_client import STREAMING, RunLog, data_of, get_task, list_tasks, request
from tests.orchestration.run_client import run_workflow as run

QUICK = {"retries": 0, "step_timeout_s": 10}


@asynccontextmanager
async def serving(tmp_path: Path, *files: Mapping[str, Any]) -> AsyncIterator[RunningGateway]:
    agents = agents_folder(tmp_path / "agents", files, bundled=["echo"])
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        yield gateway


def failed_with(log: RunLog, text: str) -> bool:
    return log.task.status.state == TaskState.TASK_STATE_FAILED and text in log.text


async def test_a_failing_participant_fails_the_run_with_its_reason(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    files = (
        python_agent("broken", "fail"),
        python_agent("counter", "counter", log=str(calls)),
        workflow("pipe", "sequential", ["broken", "counter"], limits={"retries": 2}),
    )
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "pipe", "go")
        broken = await list_tasks(gateway, "broken")

    assert failed_with(log, "broken failed while step 1 of 2: broken on purpose"), log.text
    assert len(broken) == 1, "a failure of the agent's own is not retried"
    assert not calls.exists(), "the pipeline stopped at the failure"


async def test_a_hanging_step_times_out_and_its_child_is_canceled(tmp_path: Path) -> None:
    files = (
        python_agent("sloth", "hang"),
        workflow("pipe", "sequential", ["sloth"], limits={"retries": 0, "step_timeout_s": 0.5}),
    )
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "pipe", "go")
        (child,) = await list_tasks(gateway, "sloth")

    assert failed_with(log, "sloth did not finish within 0.5s"), log.text
    assert child.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_retryable_failure_is_retried_with_backoff(tmp_path: Path) -> None:
    calls = tmp_path / "flaky.txt"
    limits = {"retries": 3, "backoff_base_s": 0.01, "backoff_max_s": 0.05}
    files = (
        python_agent("flaky", "flaky", log=str(calls), failures=2),
        workflow("pipe", "sequential", ["flaky"], limits=limits),
    )
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "pipe", "go")
        children = await list_tasks(gateway, "flaky")

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    assert log.text == "answered on attempt 3"
    assert len(calls.read_text().splitlines()) == 3 and len(children) == 3, "one child task per attempt"
    retries = [p for p in log.progress if "retry" in p]
    assert len(retries) == 2 and retries[0].startswith("step 1/1 · flaky: flaky failed: FlakyError: attempt 1")
    assert "retry 1 of 3 in" in retries[0]


async def test_a_looping_pattern_stops_at_the_step_limit(tmp_path: Path) -> None:
    files = (
        python_agent("critic", "refuse"),
        workflow(
            "loop",
            "maker-checker",
            ["echo", "critic"],
            options={"max_iterations": 100},
            limits={"max_steps": 5, "max_rounds": 100, **QUICK},
        ),
    )
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "loop", "write something")

    assert failed_with(log, "step limit reached: 5 steps"), log.text
    assert log.artifacts == [f"step-{n}-{agent}" for n, agent in enumerate(["echo", "critic"] * 2 + ["echo"], 1)]


async def test_an_exhausted_token_budget_ends_the_run(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    files = (
        python_agent("spender", "spender", tokens=600),
        python_agent("counter", "counter", log=str(calls)),
        workflow("pricey", "sequential", ["spender", "spender", "counter"], limits={"max_tokens": 1000, **QUICK}),
    )
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "pricey", "go")

    # The second step would hold as much as the first spent (600), which does not fit: refused before it starts.
    expected = "token limit reached: step 2/3 · spender is estimated at 600 tokens, and 600 spent and 0 held"
    assert failed_with(log, expected), log.text
    assert log.artifacts == ["step-1-spender"] and not calls.exists()


async def test_the_deadline_ends_a_run_that_outlives_it(tmp_path: Path) -> None:
    files = (
        python_agent("sloth", "hang"),
        workflow("slow", "sequential", ["sloth"], limits={"deadline_s": 0.5, **QUICK}),
    )
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "slow", "go")
        (child,) = await list_tasks(gateway, "sloth")

    assert failed_with(log, "time limit reached: the run's 0.5s deadline passed"), log.text
    assert child.status.state == TaskState.TASK_STATE_CANCELED


async def test_the_breaker_opens_after_consecutive_failures_and_fails_steps_at_once(tmp_path: Path) -> None:
    limits = {"breaker_threshold": 2, "breaker_reset_s": 60, **QUICK}
    files = (python_agent("broken", "fail"), workflow("pipe", "sequential", ["broken"], limits=limits))
    async with serving(tmp_path, *files) as gateway:
        first, second, third = [await run(gateway, "pipe", f"try {n}") for n in (1, 2, 3)]
        children = await list_tasks(gateway, "broken")

    assert failed_with(first, "broken on purpose") and failed_with(second, "broken on purpose")
    assert failed_with(third, "circuit open for broken"), third.text
    assert len(children) == 2, "an open circuit does not reach the agent"


async def test_a_fallback_takes_over_from_a_failing_or_open_circuit_agent(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    limits = {"breaker_threshold": 1, "breaker_reset_s": 60, **QUICK}
    files = (
        python_agent("broken", "fail"),
        python_agent("backup", "counter", log=str(calls)),
        workflow("pipe", "sequential", ["broken"], {"fallbacks": {"broken": ["backup"]}}, limits),
    )
    async with serving(tmp_path, *files) as gateway:
        failed_over = await run(gateway, "pipe", "first")
        circuit_open = await run(gateway, "pipe", "second")
        broken = await list_tasks(gateway, "broken")

    for log in (failed_over, circuit_open):
        assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
        assert log.artifacts == ["step-1-backup", "result"]
        assert "step 1/1 · broken failed; backup takes over" in log.progress
        (step,) = data_of(log.artifact("result"))["steps"]
        assert (step["agent"], step["fallback_for"], step["state"]) == ("backup", "broken", "completed")
    assert calls.read_text().splitlines() == ["first", "second"]
    assert len(broken) == 1, "the second run found the circuit open and went straight to the fallback"


async def test_canceling_a_run_cancels_every_running_child(tmp_path: Path) -> None:
    files = (
        python_agent("sloth-a", "hang"),
        python_agent("sloth-b", "hang"),
        workflow("fan", "concurrent", ["sloth-a", "sloth-b"], limits=QUICK),
    )
    working = {"sloth-a": asyncio.Event(), "sloth-b": asyncio.Event()}
    started = asyncio.Event()
    task_id = ""

    async def follow(client: Client) -> None:
        nonlocal task_id
        async for event in client.send_message(SendMessageRequest(message=request("go"))):
            if event.HasField("task"):
                task_id = event.task.id
                started.set()
            for part in event.status_update.status.message.parts:
                for agent, ready in working.items():
                    if part.text == f"step {1 + list(working).index(agent)}/2 · {agent}: working on it":
                        ready.set()

    async with serving(tmp_path, *files) as gateway, a2a_client(gateway.agent_url("fan"), STREAMING) as client:
        streaming = asyncio.create_task(follow(client))
        async with asyncio.timeout(10):
            await asyncio.gather(started.wait(), *(ready.wait() for ready in working.values()))
            canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
            await asyncio.wait({streaming}, timeout=5)
        streaming.cancel()
        children = [(await list_tasks(gateway, name))[0] for name in working]
        parent = await get_task(gateway, "fan", task_id)

    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert parent.status.state == TaskState.TASK_STATE_CANCELED
    assert "2 unfinished steps canceled" in parent.status.message.parts[0].text
    assert [c.status.state for c in children] == [TaskState.TASK_STATE_CANCELED] * 2
    assert all(list(c.history[0].reference_task_ids) == [task_id] for c in children)


@pytest.mark.parametrize(
    ("agent", "reason"),
    [
        (
            python_agent("junk", "tests.orchestration.fixture_agents:GarbageExecutor"),
            "junk failed while step 1 of 1: junk failed: InvalidAgentResponseError: Received Message object in task",
        ),
        (
            python_agent("junk", "spender", tokens=-10),
            "junk failed while step 1 of 1: junk reported usage values must be non-negative numbers",
        ),
    ],
    ids=["message-after-task", "negative-usage"],
)
async def test_a_participant_answering_garbage_fails_its_step_with_the_reason(
    tmp_path: Path, agent: dict[str, Any], reason: str
) -> None:
    async with serving(tmp_path, agent, workflow("pipe", "sequential", ["junk"], limits=QUICK)) as gateway:
        log = await run(gateway, "pipe", "go")

    assert failed_with(log, reason), log.text


async def test_canceling_a_paused_run_cancels_the_step_waiting_for_input(tmp_path: Path) -> None:
    async with serving(tmp_path, workflow("asker", "sequential", ["echo"])) as gateway:
        paused = await run(gateway, "asker", "ask: anything?")
        async with a2a_client(gateway.agent_url("asker"), STREAMING) as client:
            canceled = await client.cancel_task(CancelTaskRequest(id=paused.task.id))
        (child,) = await list_tasks(gateway, "echo")

    assert paused.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert "1 unfinished step canceled" in canceled.status.message.parts[0].text
    assert child.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_run_with_nothing_to_do_is_invalid_params_and_leaves_no_task(tmp_path: Path) -> None:
    files = (workflow("pipe", "sequential", ["echo"]),)
    async with serving(tmp_path, *files) as gateway:
        with pytest.raises(InvalidParamsError, match="pipe needs a request: send text, data or files"):
            await run(gateway, "pipe", request("   "))
        assert await list_tasks(gateway, "pipe") == []


async def test_nested_workflows_run_as_child_tasks_up_to_the_hop_limit(tmp_path: Path) -> None:
    files = (
        workflow("inner", "sequential", ["echo"], limits={"max_hops": 1}),
        workflow("middle", "sequential", ["inner"]),
        workflow("outer", "sequential", ["middle"]),
    )
    async with serving(tmp_path, *files) as gateway:
        nested = await run(gateway, "middle", "deep")
        too_deep = await run(gateway, "outer", "deeper")

    assert nested.task.status.state == TaskState.TASK_STATE_COMPLETED and nested.text == "deep", nested.text
    assert failed_with(too_deep, "hop limit reached: 2 levels of nested runs, the limit is 1"), too_deep.text


async def test_an_outer_runs_hop_limit_bounds_the_runs_nested_below_it(tmp_path: Path) -> None:
    files = (
        workflow("inner", "sequential", ["echo"]),
        workflow("middle", "sequential", ["inner"]),
        workflow("outer", "sequential", ["middle"], limits={"max_hops": 1}),
    )
    async with serving(tmp_path, *files) as gateway:
        too_deep = await run(gateway, "outer", "deeper")
        (middle,) = await list_tasks(gateway, "middle")
        (inner,) = await list_tasks(gateway, "inner")
        echoed = await list_tasks(gateway, "echo")

    assert failed_with(too_deep, "hop limit reached: 2 levels of nested runs, the limit is 1"), too_deep.text
    assert middle.status.state == TaskState.TASK_STATE_FAILED, "middle's own limit is 8; outer's 1 holds below it"
    assert inner.status.state == TaskState.TASK_STATE_FAILED
    assert echoed == [], "nothing past the limit ran"


async def test_a_nested_runs_result_grows_by_a_level_not_by_doubling(tmp_path: Path) -> None:
    levels = 9
    files = [python_agent("answerer", "answer", text="done"), workflow("w1", "sequential", ["answerer"])]
    files += [workflow(f"w{n}", "sequential", [f"w{n - 1}"]) for n in range(2, levels + 1)]
    async with serving(tmp_path, *files) as gateway:
        sizes = []
        for n in (1, 2, levels):
            log = await run(gateway, f"w{n}", "go")
            assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
            sizes.append(len(json.dumps(data_of(log.artifact("result")))))

    one, two, nine = sizes
    per_level = two - one
    assert nine <= one + (levels - 1) * per_level * 1.2, f"result data by level 1, 2, {levels}: {sizes}"


@pytest.mark.parametrize("distribute", [False, True], ids=["local", "distribute-on-sqlite"])
async def test_a_work_queue_over_a2a_takes_high_priority_items_first_and_dead_letters_what_keeps_failing(
    tmp_path: Path, distribute: bool
) -> None:
    # ``distribute`` shares items between replicas on PostgreSQL (tests/store/test_cluster_work_queue.py); on
    # SQLite, one process, it changes nothing.
    calls = tmp_path / "calls.txt"
    items = [{"text": "low"}, {"text": "high", "priority": 9}, {"text": "mid", "priority": 1}]
    files = (
        python_agent("counter", "counter", log=str(calls)),
        python_agent("broken", "fail"),
        workflow("queue", "work-queue", ["counter"], {"concurrency": 1, "distribute": distribute}),
        workflow("doomed", "work-queue", ["broken"], {"max_attempts": 2, "distribute": distribute}, QUICK),
    )
    async with serving(tmp_path, *files) as gateway:
        message = request()
        message.parts.append(data_part({"items": items}))
        ordered = await run(gateway, "queue", message)
        doomed = await run(gateway, "doomed", "one")

    assert ordered.task.status.state == TaskState.TASK_STATE_COMPLETED, ordered.text
    assert calls.read_text().splitlines() == ["high", "mid", "low"]
    assert doomed.task.status.state == TaskState.TASK_STATE_FAILED
    (dead,) = data_of(doomed.task.status.message)["dead_letter"]
    assert [a["agent"] for a in dead["attempts"]] == ["broken", "broken"], doomed.text
    assert any("item 1/1 dead-lettered after 2 attempts" in p for p in doomed.progress), doomed.progress


@pytest.mark.parametrize("policy", ["refuse", "trim"])
async def test_a_fan_out_reserves_its_budget_before_its_steps_start(tmp_path: Path, policy: str) -> None:
    spenders = [python_agent(name, "spender", tokens=250) for name in ("a", "b", "c", "d")]
    limits = {"max_tokens": 800, "reserve_tokens": 250, "over_budget": policy, **QUICK}
    files = (*spenders, workflow("fan", "concurrent", ["a", "b", "c", "d"], {"min_successes": 3}, limits))
    async with serving(tmp_path, *files) as gateway:
        log = await run(gateway, "fan", "go")
        children = [task for name in ("a", "b", "c", "d") for task in await list_tasks(gateway, name)]

    assert len(children) == 3, "three reservations of 250 fit in 800; the fourth step never started"
    if policy == "refuse":
        assert failed_with(log, "token limit reached: step 4/4 · d is estimated at 250 tokens, and 0 spent"), log.text
    else:
        assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
        assert any(p.startswith("trimmed: step 4/4 · d is estimated at 250") for p in log.progress), log.progress


async def test_budget_trimming_and_dead_letters_show_through_an_mcp_tool_call(tmp_path: Path) -> None:
    spenders = [python_agent(name, "spender", tokens=250) for name in ("a", "b", "c")]
    limits = {"max_tokens": 600, "reserve_tokens": 250, "over_budget": "trim", **QUICK}
    files = (
        *spenders,
        python_agent("broken", "fail"),
        workflow("fan", "concurrent", ["a", "b", "c"], {"min_successes": 2}, limits),
        workflow("doomed", "work-queue", ["broken"], {"max_attempts": 2}, QUICK),
    )
    async with serving(tmp_path, *files) as gateway:
        fan = await call_workflow(gateway, "fan", {"text": "go"})
        doomed = await call_workflow(gateway, "doomed", {"text": "one\ntwo"})

    assert not fan.is_error, fan.result
    assert any("trimmed: step 3/3 · c is estimated at 250 tokens" in p for p in fan.progress), fan.progress
    assert doomed.is_error
    assert any("item 2/2 dead-lettered after 2 attempts" in p for p in doomed.progress), doomed.progress
