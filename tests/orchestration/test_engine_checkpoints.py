"""Run checkpoints on SQLite and PostgreSQL, and the start-up sweep leaving resumable runs alone."""

from __future__ import annotations

from a2a.types.a2a_pb2 import Message, Part, Role, TaskState

from gateway.orchestration.api import StepResult
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.runtime import Usage
from gateway.store import Database, SqlTaskStore, fail_interrupted
from gateway.store.tasks import fail_task
from tests.store.test_task_store import as_user, db, make_task, pg_schema_dsn  # noqa: F401 -- fixtures

REQUEST = Message(role=Role.ROLE_USER, message_id="m1", parts=[Part(text="review this")])


def record(task_id: str, owner: str = "ada", **values: object) -> RunRecord:
    return RunRecord(
        run_id=f"run-{task_id}",
        agent="flow",
        owner=owner,
        task_id=task_id,
        context_id="c1",
        fingerprint="f" * 32,
        request=REQUEST,
        **values,  # type: ignore[arg-type]
    )


async def test_a_checkpoint_round_trips_every_step(db: Database) -> None:  # noqa: F811
    store = SqlRunStore(db)
    saved = record("t1", hops=2)
    saved.steps[1] = StepResult("a", "completed", "ok", {"findings": [1, "x"]}, "child-1", Usage(3, 4, 0.5))
    saved.steps[2] = StepResult("b", "failed", task_id="child-2", error="boom", handoff_to="c", handoff_note="why")
    await store.save(saved)
    saved.state = "completed"
    await store.save(saved)

    loaded = await store.get("flow", "ada", "t1")

    assert loaded is not None and loaded.state == "completed" and loaded.hops == 2
    assert loaded.steps == saved.steps and loaded.request == REQUEST
    assert loaded.started_ns == saved.started_ns and loaded.updated_ns >= loaded.started_ns
    assert await store.get("flow", "bob", "t1") is None, "a run is its owner's"


async def test_interrupted_runs_are_those_whose_task_is_still_running(db: Database) -> None:  # noqa: F811
    tasks, store = SqlTaskStore(db, "flow"), SqlRunStore(db)
    for task_id, state in [("working", TaskState.TASK_STATE_WORKING), ("done", TaskState.TASK_STATE_COMPLETED)]:
        await tasks.save(make_task(task_id, state), as_user("ada"))
        await store.save(record(task_id))
    await tasks.save(make_task("asking", TaskState.TASK_STATE_INPUT_REQUIRED), as_user("ada"))
    await store.save(record("asking", state="input-required"))
    await tasks.save(make_task("plain", TaskState.TASK_STATE_WORKING), as_user("ada"))

    interrupted = await store.interrupted()
    swept = await fail_interrupted(db, "restarted", frozenset({("flow", "ada", "working")}))

    assert [r.task_id for r in interrupted] == ["working"]
    assert swept == ["plain"], "the resumable run's task is kept from the sweep"
    kept = await tasks.get("working", as_user("ada"))
    assert kept is not None and kept.status.state == TaskState.TASK_STATE_WORKING


async def test_fail_task_ends_only_a_running_task(db: Database) -> None:  # noqa: F811
    tasks = SqlTaskStore(db, "flow")
    await tasks.save(make_task("run", TaskState.TASK_STATE_WORKING), as_user("ada"))
    await tasks.save(make_task("done", TaskState.TASK_STATE_COMPLETED), as_user("ada"))

    assert await fail_task(db, ("flow", "ada", "run"), "workflow gone")
    assert not await fail_task(db, ("flow", "ada", "done"), "workflow gone")
    assert not await fail_task(db, ("flow", "ada", "missing"), "workflow gone")
    ended = await tasks.get("run", as_user("ada"))
    assert ended is not None and ended.status.state == TaskState.TASK_STATE_FAILED
    assert ended.status.message.parts[0].text == "workflow gone"


async def test_a_checkpoint_keeps_the_time_its_run_spent(db: Database) -> None:  # noqa: F811
    store = SqlRunStore(db)
    await store.save(record("t1", elapsed_ns=42 * 10**9))

    loaded = await store.get("flow", "ada", "t1")

    assert loaded is not None and loaded.elapsed_ns == 42 * 10**9


async def test_a_checkpoint_written_before_elapsed_time_was_kept_counts_its_wall_clock_time(db: Database) -> None:  # noqa: F811
    store = SqlRunStore(db)
    await db.write("ALTER TABLE runs DROP COLUMN elapsed_ns")  # the table as the previous version made it
    await db.write(
        "INSERT INTO runs (run_id, agent, owner, task_id, context_id, state, fingerprint, hops, request, steps, "
        "started_ns, updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            "run-old",
            "flow",
            "ada",
            "old",
            "c1",
            "running",
            "f" * 32,
            0,
            REQUEST.SerializeToString(),
            "{}",
            10**9,
            71 * 10**9,
        ),
    )
    await db.migrate()  # the next start

    loaded = await store.get("flow", "ada", "old")

    assert loaded is not None and loaded.elapsed_ns == 70 * 10**9, "from its start to its last save"
    await store.save(record("new", elapsed_ns=5))
    again = await store.get("flow", "ada", "new")
    assert again is not None and again.elapsed_ns == 5
