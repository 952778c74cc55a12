"""The cluster's event log and cancel on PostgreSQL, between two databases (two runner ids) in one process.

A follower that gets no NOTIFY at all still sees every event, in order, from the table (the
backstop poll); a LISTEN session cut mid-stream comes back and wakes its followers to catch up;
a cancel of a task whose process is gone ends it CANCELED directly.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from a2a.server.events.event_queue import Event
from a2a.types.a2a_pb2 import Message, Part, Role, Task, TaskState, TaskStatus, TaskStatusUpdateEvent

from gateway.hosting.cluster import CARRIED_BYTES, EVENT, KEEP_EVENTS_S, AgentLog, Cluster
from gateway.store import SqlTaskStore, open_database
from gateway.store.database import Database
from tests.store.test_task_store import as_user

pytest_plugins = ["tests.store.test_task_store"]  # pg_schema_dsn
WAIT_S = 10.0


def update(task: Task, state: TaskState, text: str) -> TaskStatusUpdateEvent:
    message = Message(role=Role.ROLE_AGENT, message_id=text, task_id=task.id, parts=[Part(text=text)])
    return TaskStatusUpdateEvent(
        task_id=task.id, context_id=task.context_id, status=TaskStatus(state=state, message=message)
    )


async def started(db: Database, log: AgentLog, store: SqlTaskStore) -> Task:
    """A task saved working with its run's first state, as the runner saves it."""
    task = Task(id="t-cluster", context_id="c1", status=TaskStatus(state=TaskState.TASK_STATE_WORKING))
    context = as_user("ada")
    await db.write_many([store.save_statement(task, context), *log.start_statements(task, context)])
    return task


async def test_a_follower_that_gets_no_notify_still_sees_every_event_in_order(pg_schema_dsn: str) -> None:
    db_a, db_b = await open_database(pg_schema_dsn), await open_database(pg_schema_dsn)
    here, there = Cluster(db_a, lambda: pg_schema_dsn), Cluster(db_b, lambda: pg_schema_dsn)
    await here.start()
    await there.start(listen=False)  # every NOTIFY lost
    try:
        store_a, store_b = SqlTaskStore(db_a, "echo"), SqlTaskStore(db_b, "echo")
        log_a, log_b = AgentLog(here, "echo", store_a), AgentLog(there, "echo", store_b)
        task = await started(db_a, log_a, store_a)
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        publishing = asyncio.ensure_future(log_a.publish(task, as_user("ada"), events))
        sent = [update(task, TaskState.TASK_STATE_WORKING, f"step {n}") for n in range(1, 6)]
        for event in sent[:2]:
            events.put_nowait(event)
        appended = here.waiter(task.id)  # the publishing side listens: woken by each of its appends
        async with asyncio.timeout(WAIT_S):
            while len(await db_a.fetch_all("SELECT seq FROM task_events")) < 3:
                await appended.wait()
                appended.clear()
        followed = await log_b.follow(task, as_user("ada"))
        assert followed is not None
        seen: list[Event] = []

        async def read() -> None:
            async for event in followed:
                seen.append(event)

        reading = asyncio.ensure_future(read())
        for event in sent[2:]:
            events.put_nowait(event)
        end = update(task, TaskState.TASK_STATE_COMPLETED, "done")
        events.put_nowait(end)
        events.put_nowait(None)  # the run's outcome is saved: its ending events go out
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(publishing, reading)
    finally:
        await here.close()
        await there.close()
        await db_a.close()
        await db_b.close()

    snapshot = seen[0]
    assert isinstance(snapshot, Task)
    assert snapshot.status.message.message_id == "step 2", "the snapshot is the task as of the last event before"
    assert seen[1:] == [*sent[2:], end], "every later event once, in order, to the end"


async def test_a_cancel_of_a_task_whose_process_is_gone_ends_it_canceled_directly(pg_schema_dsn: str) -> None:
    db_a, db_b = await open_database(pg_schema_dsn), await open_database(pg_schema_dsn)
    here, there = Cluster(db_a, lambda: pg_schema_dsn), Cluster(db_b, lambda: pg_schema_dsn)
    await here.start()
    await there.start()
    try:
        store_a, store_b = SqlTaskStore(db_a, "echo"), SqlTaskStore(db_b, "echo")
        task = await started(db_a, AgentLog(here, "echo", store_a), store_a)
        await here.close()
        await db_a.close()  # its process is gone: the runner lock is free
        async with asyncio.timeout(WAIT_S):
            ended = await AgentLog(there, "echo", store_b).cancel_elsewhere(task, as_user("ada"))
        stored = await store_b.get(task.id, as_user("ada"))
    finally:
        await there.close()
        await db_b.close()

    assert ended is not None and ended.status.state == TaskState.TASK_STATE_CANCELED
    assert stored is not None and stored.status.state == TaskState.TASK_STATE_CANCELED


async def test_events_are_pruned_once_their_task_ended_a_while_ago_and_kept_while_it_runs(pg_schema_dsn: str) -> None:
    db = await open_database(pg_schema_dsn)
    cluster = Cluster(db, lambda: pg_schema_dsn)
    await cluster.start()
    try:
        store = SqlTaskStore(db, "echo")
        log = AgentLog(cluster, "echo", store)
        running = await started(db, log, store)
        ended = Task(id="t-ended", context_id="c1", status=TaskStatus(state=TaskState.TASK_STATE_WORKING))
        await db.write_many([store.save_statement(ended, as_user("ada")), *log.start_statements(ended, as_user("ada"))])
        ended.status.state = TaskState.TASK_STATE_COMPLETED
        ended.status.timestamp.FromNanoseconds(1)  # ended long ago
        await store.save(ended, as_user("ada"))
        later = time.time_ns() + int(KEEP_EVENTS_S * 2e9)
        await cluster.prune(later)
        left = {row[0] for row in await db.fetch_all("SELECT task_id FROM task_events")}
    finally:
        await cluster.close()
        await db.close()

    assert left == {running.id}


async def test_a_dropped_listen_session_comes_back_and_its_followers_catch_up(pg_schema_dsn: str) -> None:
    db_a, db_b = await open_database(pg_schema_dsn), await open_database(pg_schema_dsn)
    here, there = Cluster(db_a, lambda: pg_schema_dsn), Cluster(db_b, lambda: pg_schema_dsn)
    await here.start()
    await there.start()
    admin = await asyncpg.connect(pg_schema_dsn)
    try:
        store_a, store_b = SqlTaskStore(db_a, "echo"), SqlTaskStore(db_b, "echo")
        log_a, log_b = AgentLog(here, "echo", store_a), AgentLog(there, "echo", store_b)
        task = await started(db_a, log_a, store_a)
        events: asyncio.Queue[Event | None] = asyncio.Queue()
        publishing = asyncio.ensure_future(log_a.publish(task, as_user("ada"), events))
        followed = await log_b.follow(task, as_user("ada"))
        assert followed is not None and there.listener is not None
        seen: list[Event] = []
        first = asyncio.Event()

        async def read() -> None:
            async for event in followed:
                seen.append(event)
                first.set()

        reading = asyncio.ensure_future(read())
        async with asyncio.timeout(WAIT_S):
            await first.wait()  # the snapshot: following
        woken = there.waiter(task.id)
        # The follower's LISTEN session is cut (a PostgreSQL restart or a proxy would do the same).
        await admin.execute("SELECT pg_terminate_backend($1)", there.listener.server_pid)
        sent = [update(task, TaskState.TASK_STATE_WORKING, f"step {n}") for n in range(1, 4)]
        for event in sent:
            events.put_nowait(event)  # published while the follower does not listen
        async with asyncio.timeout(WAIT_S):
            while there.listener.reconnects < 1:  # woken to catch up once it is back (a NOTIFY may come first)
                woken.clear()
                await woken.wait()
        assert there.listener.connected.is_set()
        woken.clear()
        end = update(task, TaskState.TASK_STATE_COMPLETED, "done")
        events.put_nowait(end)
        events.put_nowait(None)
        async with asyncio.timeout(WAIT_S):
            await woken.wait()  # a NOTIFY again (the backstop poll never sets a waiter)
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(publishing, reading)
    finally:
        await admin.close()
        await here.close()
        await there.close()
        await db_a.close()
        await db_b.close()

    assert seen[1:] == [*sent, end], "every event once, in order, across the drop"


async def test_small_events_ride_in_their_notify_and_large_ones_are_read_from_the_table(pg_schema_dsn: str) -> None:
    db_a, db_b = await open_database(pg_schema_dsn), await open_database(pg_schema_dsn)
    here, there = Cluster(db_a, lambda: pg_schema_dsn), Cluster(db_b, lambda: pg_schema_dsn)
    await here.start()
    await there.start()
    try:
        woken = there.waiter("t-carried")  # followed on ``there``: what its NOTIFYs carry is kept
        small = [f"event {n}".encode() for n in range(3)]
        await here.append_all("t-carried", "echo", "ada", small)
        async with asyncio.timeout(WAIT_S):
            await woken.wait()
        carried = there.carried("t-carried", 0)
        woken.clear()
        await here.append_all("t-carried", "echo", "ada", [b"x" * (CARRIED_BYTES + 1)])
        async with asyncio.timeout(WAIT_S):
            await woken.wait()  # woken all the same
        after_large = there.carried("t-carried", 3)
        stored = await db_b.fetch_all("SELECT seq, data FROM task_events WHERE task_id = 't-carried' ORDER BY seq")
    finally:
        await here.close()
        await there.close()
        await db_a.close()
        await db_b.close()

    assert carried == [(1, EVENT, small[0]), (2, EVENT, small[1]), (3, EVENT, small[2])]
    assert after_large == [], "too large to carry: the follower reads it from the table"
    assert [(int(s), bytes(d)) for s, d in stored][:3] == [(1, small[0]), (2, small[1]), (3, small[2])]
    assert len(stored) == 4


class CancelsRecorded:
    """A ``CancelsHere`` whose tasks ``running`` run here; it records what it is asked and told to cancel."""

    def __init__(self, running: set[str]) -> None:
        self.running = running
        self.asked: list[str] = []
        self.canceled: list[tuple[str, str]] = []

    async def runs_here(self, task_id: str) -> bool:
        self.asked.append(task_id)
        return task_id in self.running

    async def cancel_here(self, task_id: str, owner: str) -> None:
        self.canceled.append((task_id, owner))


async def test_the_cancel_poll_reads_only_the_requests_of_tasks_this_replica_runs_or_holds(pg_schema_dsn: str) -> None:
    db_a, db_b = await open_database(pg_schema_dsn), await open_database(pg_schema_dsn)
    here, there = Cluster(db_a, lambda: pg_schema_dsn), Cluster(db_b, lambda: pg_schema_dsn)  # polled by hand
    on_a, on_b = CancelsRecorded({"t-run", "t-taken"}), CancelsRecorded(set())
    here.handlers["echo"], there.handlers["echo"] = on_a, on_b
    try:
        store = SqlTaskStore(db_a, "echo")
        for task_id, state in (
            ("t-run", TaskState.TASK_STATE_WORKING),  # running on A
            ("t-parked", TaskState.TASK_STATE_INPUT_REQUIRED),  # parked on A, waiting for input
            ("t-over", TaskState.TASK_STATE_COMPLETED),  # ended: nothing to cancel anywhere
            ("t-taken", TaskState.TASK_STATE_WORKING),  # a run A took over from a gone replica, not saved by A yet
        ):
            task = Task(id=task_id, context_id="c1", status=TaskStatus(state=state))
            await store.save(task, as_user("ada"))
        await db_a.write("UPDATE tasks SET runner = 'gone' WHERE id = 't-taken'")
        await db_a.write(
            "INSERT INTO leases (agent, owner, task_id, replica, epoch, expires_at) "
            "SELECT agent, owner, id, ?, 2, now() + interval '1 minute' FROM tasks WHERE id = 't-taken'",
            (db_a.runner,),
        )
        await db_a.write(
            "INSERT INTO task_cancels (agent, owner, task_id, requested_ns) SELECT agent, owner, id, 1 FROM tasks"
        )
        owner = (await db_a.fetch_one("SELECT owner FROM tasks WHERE id = 't-run'") or ("",))[0]
        await there.take_cancels()  # B runs and holds none of them
        after_b = {row[0] for row in await db_b.fetch_all("SELECT task_id FROM task_cancels")}
        await here.take_cancels()
        after_a = {row[0] for row in await db_a.fetch_all("SELECT task_id FROM task_cancels")}
    finally:
        await db_a.close()
        await db_b.close()

    assert on_b.asked == [] and on_b.canceled == [], "another replica's cancels are not even read"
    assert after_b == {"t-run", "t-parked", "t-over", "t-taken"}
    assert sorted(on_a.canceled) == [("t-parked", owner), ("t-run", owner), ("t-taken", owner)]
    assert "t-over" not in on_a.asked
    assert after_a == {"t-over"}, "each request taken is done with; an ended task's is left to the pruning"
