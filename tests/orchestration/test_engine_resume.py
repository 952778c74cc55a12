"""A gateway that stops mid-run resumes the run from its checkpoint on the next start, or fails it with the reason."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from a2a.types.a2a_pb2 import CancelTaskRequest, SendMessageRequest, SubscribeToTaskRequest, TaskState

from gateway.app import Gateway
from gateway.settings import Settings
from gateway.store import SqlTaskStore
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import a2a_client
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import STREAMING, get_task, list_tasks, meta, output_names, request, text_of
from tests.store.test_task_store import as_user

RESUME_TIMEOUT_S = 20.0


def pipeline(tmp_path: Path, participants: list[str] | None = None) -> Settings:
    calls = tmp_path / "calls.txt"
    files = [
        python_agent("counter", "counter", log=str(calls)),
        workflow("pipeline", "sequential", participants or ["counter", "echo", "counter"]),
    ]
    agents = agents_folder(tmp_path / "agents", files, bundled=["echo"])
    return make_settings(tmp_path, agents=agents)


async def stop_after_first_step(settings: Settings, text: str, workflow: str = "pipeline") -> str:
    """Start a run, stop the gateway (gracefully) once step 1 is checkpointed; the run's task id."""
    task_id = ""
    async with running_gateway(settings) as gateway, a2a_client(gateway.agent_url(workflow), STREAMING) as client:
        async with asyncio.timeout(RESUME_TIMEOUT_S):
            async for event in client.send_message(SendMessageRequest(message=request(text))):
                task_id = task_id or event.task.id
                if "step-1-counter" in output_names([event.artifact_update.artifact]):
                    break
    return task_id


def as_the_previous_version_wrote_it(settings: Settings) -> None:
    """Rewrite every run's checkpoint on disk as the previous version wrote it: steps without keys, no elapsed time."""
    with closing(sqlite3.connect(settings.data_dir / "switchboard.db")) as db, db:
        for run_id, steps in db.execute("SELECT run_id, steps FROM runs").fetchall():
            old = {n: {k: v for k, v in step.items() if k != "key"} for n, step in json.loads(steps).items()}
            db.execute("UPDATE runs SET steps = ? WHERE run_id = ?", (json.dumps(old), run_id))
        db.execute("ALTER TABLE runs DROP COLUMN elapsed_ns")


def host(gateway: RunningGateway) -> Gateway:
    found = gateway.app.state.gateway
    assert isinstance(found, Gateway)
    return found


def resuming(gateway: RunningGateway) -> list[asyncio.Task[None]]:
    """The runs the start resumed and that are still going (other background work, push delivery, is left out)."""
    return [task for task in host(gateway).background if task.get_name().startswith("resume:")]


async def resumed(gateway: RunningGateway) -> None:
    """Wait for every run the start resumed to end (or pause)."""
    async with asyncio.timeout(RESUME_TIMEOUT_S):
        await asyncio.gather(*resuming(gateway))


async def test_a_stopped_run_resumes_after_its_last_finished_step(tmp_path: Path) -> None:
    settings = pipeline(tmp_path)
    task_id = await stop_after_first_step(settings, "wait: 2")
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["wait: 2"]

    async with running_gateway(settings) as gateway:
        assert len(resuming(gateway)) == 1, "the interrupted run resumes in the background"
        await resumed(gateway)
        task = await get_task(gateway, "pipeline", task_id)
        first_echo = await get_task(gateway, "echo", meta(task)["steps"][1]["task_id"])

    assert task.status.state == TaskState.TASK_STATE_COMPLETED, text_of(task)
    assert output_names(task.artifacts) == ["step-1-counter", "step-2-echo", "step-3-counter", "result"]
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["wait: 2", "waited 2s"], "step 1 ran once"
    assert first_echo.status.state == TaskState.TASK_STATE_COMPLETED
    assert any("resuming after a restart, 1 step(s) already done" in m.parts[0].text for m in task.history)


async def stored_task(gateway: RunningGateway, agent: str, task_id: str) -> Any:
    return await SqlTaskStore(host(gateway).db, agent).get(task_id, as_user(""))


async def test_a_run_whose_workflow_is_gone_is_failed_with_the_reason(tmp_path: Path) -> None:
    settings = pipeline(tmp_path)
    task_id = await stop_after_first_step(settings, "wait: 5")
    (settings.agents / "pipeline.yaml").unlink()

    async with running_gateway(settings) as gateway:
        task = await stored_task(gateway, "pipeline", task_id)

    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert "no longer hosts the workflow pipeline" in text_of(task)


async def test_a_run_whose_workflow_changed_is_failed_with_the_reason(tmp_path: Path) -> None:
    settings = pipeline(tmp_path)
    task_id = await stop_after_first_step(settings, "wait: 5")
    pipeline(tmp_path, ["counter", "echo"])  # the same workflow, with a step less

    async with running_gateway(settings) as gateway:
        assert not resuming(gateway)
        task = await get_task(gateway, "pipeline", task_id)

    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert "the workflow pipeline changed (pattern, participants or options)" in text_of(task)


async def test_a_resumed_run_can_be_followed_and_canceled_like_any_other(tmp_path: Path) -> None:
    settings = pipeline(tmp_path)
    task_id = await stop_after_first_step(settings, "wait: 30")

    async with running_gateway(settings) as gateway, a2a_client(gateway.agent_url("pipeline"), STREAMING) as client:
        async with asyncio.timeout(RESUME_TIMEOUT_S):
            async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                # The first event is the task as it stands, which may already show the step waiting.
                status = event.task.status if event.HasField("task") else event.status_update.status
                if any(p.text.startswith("step 2/3 · echo: waiting: step") for p in status.message.parts):
                    break
            canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        await resumed(gateway)
        echoes = await list_tasks(gateway, "echo")

    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    assert [t.status.state for t in echoes] == [TaskState.TASK_STATE_CANCELED] * 2, (
        "the step the stop interrupted was canceled with the stop (a local child), the resumed one with the run"
    )


async def test_a_run_checkpointed_by_the_previous_version_resumes_by_step_number(tmp_path: Path) -> None:
    settings = pipeline(tmp_path)
    task_id = await stop_after_first_step(settings, "wait: 2")
    as_the_previous_version_wrote_it(settings)

    async with running_gateway(settings) as gateway:
        await resumed(gateway)
        task = await get_task(gateway, "pipeline", task_id)

    assert task.status.state == TaskState.TASK_STATE_COMPLETED, text_of(task)
    assert output_names(task.artifacts) == ["step-1-counter", "step-2-echo", "step-3-counter", "result"]
    assert (tmp_path / "calls.txt").read_text().splitlines() == ["wait: 2", "waited 2s"], "step 1 ran once"


async def test_a_work_queue_checkpointed_by_the_previous_version_is_failed_with_the_reason(tmp_path: Path) -> None:
    files = [
        python_agent("counter", "counter", log=str(tmp_path / "calls.txt")),
        workflow("queue", "work-queue", ["counter", "echo"], {"concurrency": 1}),
    ]
    settings = make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files, bundled=["echo"]))
    task_id = await stop_after_first_step(settings, "first\nwait: 5", workflow="queue")
    as_the_previous_version_wrote_it(settings)

    async with running_gateway(settings) as gateway:
        assert not resuming(gateway)
        task = await get_task(gateway, "queue", task_id)

    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert "checkpointed by an older one that cannot tell which item each finished step was for" in text_of(task)
