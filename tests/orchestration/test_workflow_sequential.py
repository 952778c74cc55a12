"""A sequential workflow end to end: a run is a task, each step a linked child task on its participant."""

from __future__ import annotations

from pathlib import Path

import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, SendMessageRequest, TaskState
from a2a.utils.errors import TaskNotFoundError

from gateway.orchestration.step_outputs import step_outputs
from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import artifact, data_of, get_task, meta, output_names, request, run_workflow
from tests.store.test_task_store import as_user


async def test_each_step_is_a_child_task_linked_to_the_run(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    agents = agents_folder(
        tmp_path / "agents",
        [
            python_agent("counter", "counter", log=str(calls)),
            workflow("pipeline", "sequential", ["counter", "echo", "counter"]),
        ],
        bundled=["echo"],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        run = await run_workflow(gateway, "pipeline", "hello pipeline")
        steps = [(n, name) for n, name in ((1, "counter"), (2, "echo"), (3, "counter"))]
        children = {n: run.step(f"step-{n}-{name}") for n, name in steps}
        child_tasks = {n: await get_task(gateway, name, children[n].task_id) for n, name in steps}

    assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
    assert run.artifacts == ["step-1-counter", "step-2-echo", "step-3-counter", "result"]
    assert output_names(run.task.artifacts) == run.artifacts, "the task shows what the stream showed"
    assert [a.name for a in run.task.artifacts] == ["steps", "result"]
    assert [children[n].text for n in (1, 2, 3)] == ["hello pipeline"] * 3
    assert [(o.step, o.agent, o.state) for o in children.values()] == [
        (1, "counter", "completed"),
        (2, "echo", "completed"),
        (3, "counter", "completed"),
    ]
    assert run.artifact("result").parts[0].text == "hello pipeline" == run.text
    assert calls.read_text().splitlines() == ["hello pipeline", "hello pipeline"], "each step got the previous output"
    for n, child in child_tasks.items():
        sent = child.history[0]
        assert child.status.state == TaskState.TASK_STATE_COMPLETED
        assert list(sent.reference_task_ids) == [run.task.id], "the child names its parent"
        assert meta(sent) == {
            "parent_task_id": run.task.id,
            "run_id": meta(run.task)["run_id"],
            "step": n,
            "hops": 1,
            "max_hops": 8,
        }
        assert child.context_id == run.task.context_id, "children share the run's context"
    assert [s["task_id"] for s in meta(run.task)["steps"]] == [children[n].task_id for n in (1, 2, 3)]
    assert "step 1/3 · counter: started" in run.progress
    assert "step 1/3 · counter: counted call 1" in run.progress, "a child's progress is the run's"
    assert run.progress.index("step 2/3 · echo: completed") < run.progress.index("step 3/3 · counter: started")
    assert [s["state"] for s in data_of(run.artifact("result"))["steps"]] == ["completed"] * 3


async def test_later_steps_get_the_previous_output_and_the_original_request(tmp_path: Path) -> None:
    agents = agents_folder(
        tmp_path / "agents",
        [workflow("relay", "sequential", ["echo", "security-reviewer"])],
        bundled=["echo", "security-reviewer"],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        run = await run_workflow(gateway, "relay", "import os\npassword = 'hunter2-hunter2'\n")
        scan = await get_task(gateway, "security-reviewer", run.step("step-2-security-reviewer").task_id)

    assert run.task.status.state == TaskState.TASK_STATE_COMPLETED, run.text
    sent = scan.history[0]
    assert sent.parts[0].text == "import os\npassword = 'hunter2-hunter2'\n", "the echo's output, the previous step's"
    assert data_of(sent)["sequential"] == {
        "request": "import os\npassword = 'hunter2-hunter2'\n",
        "step": 2.0,
        "previous_agent": "echo",
    }
    assert any(f["rule"].startswith("SEC001") for f in data_of(run.artifact("result"))["output"]["findings"])


async def test_skip_if_and_early_exit(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    agents = agents_folder(
        tmp_path / "agents",
        [
            python_agent("counter", "counter", log=str(calls)),
            workflow("skipper", "sequential", ["echo", "counter", "echo"], {"skip_if": {"counter": "skip"}}),
            workflow("stopper", "sequential", ["echo", "counter"], {"early_exit_on": ["done"]}),
        ],
        bundled=["echo"],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        skipped = await run_workflow(gateway, "skipper", "please skip the counter")
        stopped = await run_workflow(gateway, "stopper", "all done here")
        passed = await run_workflow(gateway, "skipper", "count me")

    assert skipped.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert "step 2/3 · counter: skipped ('skip' in the previous output)" in skipped.progress
    assert [s["state"] for s in data_of(skipped.artifact("result"))["steps"]] == ["completed", "skipped", "completed"]
    assert stopped.task.status.state == TaskState.TASK_STATE_COMPLETED
    assert data_of(stopped.artifact("result"))["exited_early"] == {"step": 1.0, "keyword": "done"}
    assert calls.read_text().splitlines() == ["count me"], "only the run without the keywords reached the counter"
    assert passed.artifacts == ["step-1-echo", "step-2-counter", "step-3-echo", "result"]


async def test_a_step_asking_for_input_pauses_the_run_and_the_answer_reaches_it(tmp_path: Path) -> None:
    agents = agents_folder(tmp_path / "agents", [workflow("asker", "sequential", ["echo", "echo"])], bundled=["echo"])
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        paused = await run_workflow(gateway, "asker", "ask: which colour?")
        answer = request("blue")
        answer.task_id = paused.task.id
        resumed = await run_workflow(gateway, "asker", answer)
        asked = await get_task(gateway, "echo", resumed.step("step-1-echo").task_id)

    assert paused.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert paused.text.startswith("which colour?")
    assert resumed.task.status.state == TaskState.TASK_STATE_COMPLETED, resumed.text
    assert resumed.text == "You answered: blue"
    assert [(o.name, o.state) for o in step_outputs(artifact(resumed.task, "steps").parts)] == [
        ("step-1-echo", "input-required"),
        ("step-1-echo", "completed"),
        ("step-2-echo", "completed"),
    ], "the question, then the answered step's outcome, appended: nothing shown twice"
    assert asked.status.state == TaskState.TASK_STATE_COMPLETED
    assert [m.parts[0].text for m in asked.history] == ["ask: which colour?", "which colour?", "blue"], "one child"


async def test_child_tasks_belong_to_the_runs_caller(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    agents = agents_folder(
        tmp_path / "agents",
        [python_agent("counter", "counter", log=str(calls)), workflow("pipeline", "sequential", ["counter"])],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        host = gateway.app.state.gateway
        sent = SendMessageRequest(message=request("mine"))
        run = await host.handler("pipeline").on_message_send(sent, as_user("ada"))
        child_id = meta(run)["steps"][0]["task_id"]
        counter = host.handler("counter")
        as_ada = await counter.on_get_task(GetTaskRequest(id=child_id), as_user("ada"))
        with pytest.raises(TaskNotFoundError):
            await counter.on_get_task(GetTaskRequest(id=child_id), as_user("bob"))

    assert run.status.state == TaskState.TASK_STATE_COMPLETED
    assert as_ada.status.state == TaskState.TASK_STATE_COMPLETED
