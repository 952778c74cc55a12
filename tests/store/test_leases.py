"""Run leases on PostgreSQL (``gateway.store.leases``): one holder, expiry on the database's clock, fenced writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Message, Task, TaskState, TaskStatus

from gateway.auth.policy import RunOwner
from gateway.hosting import failover as failover_module
from gateway.hosting.cluster import Cluster
from gateway.hosting.failover import Failover, unhosted_reason
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.workflows import fingerprint
from gateway.spec import AgentSpec
from gateway.store import leases as leases_module
from gateway.store.database import Database
from gateway.store.leases import LeaseBook, LeaseLostError
from gateway.store.postgres import PostgresDatabase
from gateway.store.tasks import SqlTaskStore
from tests.store.test_task_store import pg_schema_dsn  # noqa: F401 (a fixture)

KEY = ("flow", "alice", "task-1")
WAIT_S = 15.0


@pytest.fixture
async def replicas(pg_schema_dsn: str) -> AsyncIterator[tuple[Database, Database]]:  # noqa: F811
    """Two gateway processes' databases (each its own runner) on one schema."""
    first = await PostgresDatabase.connect(pg_schema_dsn)
    await first.migrate()
    second = await PostgresDatabase.connect(pg_schema_dsn)
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def _task(state: TaskState) -> Task:
    return Task(id=KEY[2], context_id="ctx", status=TaskStatus(state=state))


def _record() -> RunRecord:
    return RunRecord(
        run_id="run-1", agent=KEY[0], owner=KEY[1], task_id=KEY[2], context_id="ctx", fingerprint="f", request=Message()
    )


async def test_a_live_lease_is_not_taken_even_by_a_replica_whose_clock_is_ahead(
    replicas: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = replicas
    mine, theirs = LeaseBook(first, first.runner), LeaseBook(second, second.runner)
    lease = await mine.take(KEY)
    assert lease is not None and lease.epoch == 1
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 30.0)  # the other replica's clock runs 30 s ahead
    monkeypatch.setattr(time, "time_ns", lambda: int((real() + 30.0) * 1e9))
    assert await theirs.take(KEY) is None
    row = await second.fetch_one("SELECT replica, epoch FROM leases WHERE task_id = ?", (KEY[2],))
    assert row == (first.runner, 1)


async def test_an_expired_lease_is_taken_with_a_new_epoch_and_the_old_holders_writes_are_refused(
    replicas: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = replicas
    monkeypatch.setattr(leases_module, "TTL_S", 0.3)
    monkeypatch.setattr(leases_module, "MARGIN_S", 0.0)
    mine, theirs = LeaseBook(first, first.runner), LeaseBook(second, second.runner)
    tasks = SqlTaskStore(first, KEY[0])
    tasks.leases = mine
    context = ServerCallContext(user=RunOwner(KEY[1]))
    lease = await mine.take(KEY)
    assert lease is not None
    record = _record()
    record.lease = lease
    await tasks.save(_task(TaskState.TASK_STATE_WORKING), context)
    await SqlRunStore(first).save(record)  # written while held
    async with asyncio.timeout(WAIT_S):
        while True:  # until the database's clock passes the expiry
            taken = await theirs.take(KEY)
            if taken is not None:
                break
            await asyncio.sleep(0.05)
    assert taken.epoch == lease.epoch + 1
    lease.lost = False  # a holder that noticed nothing (a clock running slow): only the database can refuse it now
    run = asyncio.ensure_future(asyncio.sleep(60))
    mine.run_by(lease, run)
    with pytest.raises(LeaseLostError):
        await SqlRunStore(first).save(record)
    await asyncio.gather(run, return_exceptions=True)
    assert lease.lost and run.cancelled(), "a refused write loses the lease here too: the run stops"
    with pytest.raises(LeaseLostError):
        await tasks.save(_task(TaskState.TASK_STATE_COMPLETED), context)
    row = await second.fetch_one("SELECT state FROM tasks WHERE id = ?", (KEY[2],))
    assert row == (TaskState.TASK_STATE_WORKING,)
    await mine.stop()


async def test_a_beat_renews_in_one_statement_and_a_lease_taken_over_is_lost_and_its_run_canceled(
    replicas: tuple[Database, Database],
) -> None:
    first, second = replicas
    mine = LeaseBook(first, first.runner)
    leases = [await mine.take((KEY[0], KEY[1], f"task-{n}")) for n in range(3)]
    assert all(lease is not None for lease in leases)
    before = await first.fetch_all("SELECT task_id, expires_at FROM leases ORDER BY task_id")
    await mine.beat()
    after = await first.fetch_all("SELECT task_id, expires_at FROM leases ORDER BY task_id")
    assert [a[1] > b[1] for a, b in zip(after, before, strict=True)] == [True, True, True]
    # Another replica takes task-0 (as if it had expired): the next beat finds it lost and cancels its run.
    await second.write("UPDATE leases SET replica = ?, epoch = epoch + 1 WHERE task_id = 'task-0'", (second.runner,))
    run = asyncio.ensure_future(asyncio.sleep(60))
    lost = leases[0]
    assert lost is not None
    mine.run_by(lost, run)
    await mine.beat()
    await asyncio.gather(run, return_exceptions=True)
    assert lost.lost and run.cancelled()
    assert not leases[1].lost and not leases[2].lost  # type: ignore[union-attr]
    with pytest.raises(LeaseLostError):
        lost.fence()
    await mine.stop()


async def test_a_lease_not_renewed_is_given_up_locally_before_it_expires_in_the_database(
    replicas: tuple[Database, Database], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, _ = replicas
    monkeypatch.setattr(leases_module, "TTL_S", 1.5)
    monkeypatch.setattr(leases_module, "MARGIN_S", 0.5)
    mine = LeaseBook(first, first.runner)  # never beats: the database is as good as unreachable
    lease = await mine.take(KEY)
    assert lease is not None
    run = asyncio.ensure_future(asyncio.sleep(60))
    mine.run_by(lease, run)
    await asyncio.gather(run, return_exceptions=True)  # canceled by the local guard, about 1 s after the take
    assert run.cancelled() and lease.lost
    row = await first.fetch_one("SELECT expires_at > now() FROM leases WHERE task_id = ?", (KEY[2],))
    assert row == (True,)  # given up here while the database still counts it live: no overlap with a taker
    await mine.stop()


async def test_a_released_lease_is_free_at_once_and_its_holders_last_writes_still_land(
    replicas: tuple[Database, Database],
) -> None:
    first, second = replicas
    mine, theirs = LeaseBook(first, first.runner), LeaseBook(second, second.runner)
    tasks = SqlTaskStore(first, KEY[0])
    tasks.leases = mine
    context = ServerCallContext(user=RunOwner(KEY[1]))
    lease = await mine.take(KEY)
    assert lease is not None
    record = _record()
    record.lease = lease
    await tasks.save(_task(TaskState.TASK_STATE_WORKING), context)
    await tasks.save(_task(TaskState.TASK_STATE_COMPLETED), context)  # the run ended: released by the save
    assert KEY not in mine.held
    await SqlRunStore(first).save(record)  # the last checkpoint, after the release: still this run's
    taken = await theirs.take(KEY)
    assert taken is not None and taken.epoch == 2
    with pytest.raises(LeaseLostError):
        await SqlRunStore(first).save(record)
    await mine.stop()
    await theirs.stop()


async def test_the_leases_of_runs_that_ended_long_ago_are_pruned_and_those_of_open_runs_kept(
    replicas: tuple[Database, Database],
) -> None:
    first, _ = replicas
    mine = LeaseBook(first, first.runner)
    tasks = SqlTaskStore(first, KEY[0])
    context = ServerCallContext(user=RunOwner(KEY[1]))
    for task_id, state in (("ended", TaskState.TASK_STATE_COMPLETED), ("waiting", TaskState.TASK_STATE_INPUT_REQUIRED)):
        task = _task(state)
        task.id = task_id
        await tasks.save(task, context)
        assert await mine.take((KEY[0], KEY[1], task_id)) is not None
    await first.write("UPDATE leases SET replica = '', expires_at = now() - interval '2 hours'")
    failover = Failover(first, mine, Cluster(first, lambda: ""), dict, lambda name: None)  # type: ignore[arg-type,return-value]
    await failover.prune()
    assert await first.fetch_all("SELECT task_id FROM leases") == [("waiting",)]
    await mine.stop()


FLOW = AgentSpec.model_validate(
    {
        "format": 1,
        "name": KEY[0],
        "description": "a workflow",
        "skills": [{"id": "run", "name": "Run", "description": "d", "tags": ["t"]}],
        "runtime": {"kind": "workflow", "pattern": "sequential", "participants": ["step"]},
    }
)


async def test_a_run_with_an_expired_lease_is_left_to_a_live_host_and_ended_failed_once_none_hosts_it(
    replicas: tuple[Database, Database],
    pg_schema_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = replicas
    monkeypatch.setattr(failover_module, "UNHOSTED_GRACE_S", 0.0)
    # A run of ``flow`` whose replica died: its lease expired, its task still working, its checkpoint kept.
    context = ServerCallContext(user=RunOwner(KEY[1]))
    await SqlTaskStore(first, KEY[0]).save(_task(TaskState.TASK_STATE_WORKING), context)
    record = _record()
    record.fingerprint = fingerprint(FLOW.runtime)  # resumable where ``flow`` is hosted
    await SqlRunStore(first).save(record)
    await first.write(
        "INSERT INTO leases (agent, owner, task_id, replica, epoch, expires_at) VALUES (?, ?, ?, 'dead', 1, now())", KEY
    )
    host = await PostgresDatabase.connect(pg_schema_dsn)  # a live replica hosting ``flow`` (its scan is not run)
    specs = {KEY[0]: FLOW}
    await Failover(host, LeaseBook(host, host.runner), Cluster(host, str), lambda: specs, None).record_hosted()  # type: ignore[arg-type]
    book, cluster = LeaseBook(second, second.runner), Cluster(second, lambda: pg_schema_dsn)
    await cluster.start(listen=False)  # the run's end is published to its followers
    other = Failover(second, book, cluster, dict, lambda name: None)  # type: ignore[arg-type,return-value]
    try:
        assert await other.take_over() == []
        row = await second.fetch_one("SELECT state FROM tasks WHERE id = ?", KEY[2:])
        assert row == (TaskState.TASK_STATE_WORKING,), "a run a live replica hosts is left for it to take over"
        assert await second.fetch_one("SELECT replica FROM leases WHERE task_id = ?", KEY[2:]) == ("dead",)
        await host.close()  # the host is gone now: nothing alive hosts ``flow``
        assert await other.take_over() == []
        row = await second.fetch_one("SELECT state, data FROM tasks WHERE id = ?", KEY[2:])
        assert row is not None and row[0] == TaskState.TASK_STATE_FAILED
        message = Task.FromString(bytes(row[1])).status.message
        assert message.parts[0].text == unhosted_reason(KEY[0])
        assert "hosts the workflow flow" in message.parts[0].text
        record = await SqlRunStore(second).get(*KEY)
        assert record is not None and record.state == "failed"
        lease = await second.fetch_one("SELECT replica, epoch, expires_at <= now() FROM leases")  # its one row
        assert lease == ("", 2, True), "taken (a new epoch) to end the run, then released"
        ended = await second.fetch_one("SELECT count(*) FROM task_events WHERE task_id = ?", KEY[2:])
        assert ended == (1,), "followers are told the run ended"
        # A host whose scan read the run before it ended, and takes its lease after: it does not resume it.
        late = Failover(first, LeaseBook(first, first.runner), Cluster(first, str), lambda: specs, lambda name: None)  # type: ignore[arg-type,return-value]
        assert await late.leases.take(KEY) is not None
        await late._resume(KEY)
        assert not late._resuming and KEY not in late.leases.held
    finally:
        await host.close()
        await book.stop()
        await cluster.close()
