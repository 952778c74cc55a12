"""The task store's contract, on SQLite and on PostgreSQL alike."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.id_generator import IDGeneratorContext
from a2a.types.a2a_pb2 import ListTasksRequest, Task, TaskPushNotificationConfig, TaskState, TaskStatus

from gateway.store import Database, SqlPushConfigStore, SqlTaskStore, fail_interrupted, open_database
from gateway.store.database import UnstorableValueError
from gateway.store.postgres import RUNNER_LOCKS, runner_key
from gateway.store.tasks import NewTaskIds, TaskEndedElsewhereError, fail_task
from gateway.testing import running_gateway
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[2]


class NamedUser(User):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


def as_user(name: str) -> ServerCallContext:
    return ServerCallContext(user=NamedUser(name))


def make_task(task_id: str, state: TaskState = TaskState.TASK_STATE_COMPLETED, at_ns: int = 0, ctx: str = "c1") -> Task:
    task = Task(id=task_id, context_id=ctx, status=TaskStatus(state=state))
    if at_ns:
        task.status.timestamp.FromNanoseconds(at_ns)
    return task


def _run_sql(dsn: str, sql: str) -> None:
    """Run one statement on its own loop in its own thread (fixtures may be set up inside a running loop)."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result(timeout=30)


@pytest.fixture
def pg_schema_dsn(pg_dsn: str) -> Iterator[str]:
    """A private schema in the test database, dropped afterwards (sync, so other fixtures can take it)."""
    schema = f"sb_test_{uuid.uuid4().hex[:12]}"
    _run_sql(pg_dsn, f"CREATE SCHEMA {schema}")
    try:
        yield f"{pg_dsn}{'&' if '?' in pg_dsn else '?'}search_path={schema}"
    finally:
        _run_sql(pg_dsn, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'tasks.db'}"
    else:
        url = request.getfixturevalue("pg_schema_dsn")
    database = await open_database(url)
    try:
        yield database
    finally:
        await database.close()


async def test_save_get_delete_round_trip(db: Database) -> None:
    store = SqlTaskStore(db, "echo")
    task = make_task("t1", at_ns=1_000)
    task.history.add(message_id="m1").parts.add(text="héllo ✓")
    await store.save(task, as_user("ada"))
    assert await store.get("t1", as_user("ada")) == task
    task.status.state = TaskState.TASK_STATE_FAILED
    await store.save(task, as_user("ada"))
    assert (await store.get("t1", as_user("ada"))).status.state == TaskState.TASK_STATE_FAILED  # type: ignore[union-attr]
    await store.delete("t1", as_user("ada"))
    assert await store.get("t1", as_user("ada")) is None


async def test_no_caller_sees_another_callers_or_agents_tasks(db: Database) -> None:
    await SqlTaskStore(db, "echo").save(make_task("t1"), as_user("ada"))
    assert await SqlTaskStore(db, "echo").get("t1", as_user("bob")) is None
    assert await SqlTaskStore(db, "other").get("t1", as_user("ada")) is None
    assert (await SqlTaskStore(db, "echo").list(ListTasksRequest(), as_user("bob"))).tasks == []
    await SqlTaskStore(db, "echo").save(make_task("t1", TaskState.TASK_STATE_FAILED), as_user("bob"))
    mine = await SqlTaskStore(db, "echo").get("t1", as_user("ada"))
    assert mine is not None and mine.status.state == TaskState.TASK_STATE_COMPLETED, "bob cannot overwrite ada's task"


async def test_list_filters_orders_and_pages(db: Database) -> None:
    store, ada = SqlTaskStore(db, "echo"), as_user("ada")
    for i in range(5):
        await store.save(make_task(f"t{i}", at_ns=(i + 1) * 1_000, ctx="c1" if i % 2 else "c2"), ada)
    await store.save(make_task("no-time", ctx="c3"), ada)
    page = await store.list(ListTasksRequest(page_size=2), ada)
    assert [t.id for t in page.tasks] == ["t4", "t3"] and page.total_size == 6
    seen = [t.id for t in page.tasks]
    while page.next_page_token:
        page = await store.list(ListTasksRequest(page_size=2, page_token=page.next_page_token), ada)
        seen += [t.id for t in page.tasks]
    assert seen == ["t4", "t3", "t2", "t1", "t0", "no-time"]
    by_context = await store.list(ListTasksRequest(context_id="c1"), ada)
    assert [t.id for t in by_context.tasks] == ["t3", "t1"]
    after = ListTasksRequest()
    after.status_timestamp_after.FromNanoseconds(3_000)
    assert [t.id for t in (await store.list(after, ada)).tasks] == ["t4", "t3", "t2"]
    failed = await store.list(ListTasksRequest(status=TaskState.TASK_STATE_FAILED), ada)
    assert failed.tasks == [] and failed.total_size == 0


async def test_a_list_page_stops_at_its_byte_budget_and_says_where_to_go_on(db: Database) -> None:
    store, ada = SqlTaskStore(db, "echo", list_page_bytes=250_000), as_user("ada")
    big = "x" * 100_000  # each task ~100 KB stored: 2 fit a page of the budget above
    for i in range(7):
        task = make_task(f"t{i}", at_ns=(i + 1) * 1_000)
        task.status.message.parts.add(text=big)
        await store.save(task, ada)
    page = await store.list(ListTasksRequest(page_size=50), ada)
    assert [t.id for t in page.tasks] == ["t6", "t5"] and page.next_page_token and page.total_size == 7
    seen = [t.id for t in page.tasks]
    while page.next_page_token:
        page = await store.list(ListTasksRequest(page_size=50, page_token=page.next_page_token), ada)
        assert 1 <= len(page.tasks) <= 2
        seen += [t.id for t in page.tasks]
    assert seen == [f"t{i}" for i in reversed(range(7))]
    huge = make_task("huge", at_ns=10_000)
    huge.status.message.parts.add(text="y" * 300_000)  # bigger than a page alone: still listed, one a page
    await store.save(huge, ada)
    first = await store.list(ListTasksRequest(page_size=50), ada)
    assert [t.id for t in first.tasks] == ["huge"] and first.next_page_token


async def test_sweep_fails_only_interrupted_tasks(db: Database) -> None:
    store, ada = SqlTaskStore(db, "echo"), as_user("ada")
    await store.save(make_task("working", TaskState.TASK_STATE_WORKING), ada)
    await store.save(make_task("submitted", TaskState.TASK_STATE_SUBMITTED), ada)
    await store.save(make_task("waiting", TaskState.TASK_STATE_INPUT_REQUIRED), ada)
    await store.save(make_task("done"), ada)
    assert sorted(await fail_interrupted(db, "restarted")) == ["submitted", "working"]
    swept = await store.get("working", ada)
    assert swept is not None and swept.status.state == TaskState.TASK_STATE_FAILED
    assert swept.status.message.parts[0].text == "restarted"
    waiting = await store.get("waiting", ada)
    assert waiting is not None and waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert await fail_interrupted(db, "restarted") == []


async def test_push_configs_are_scoped_to_their_owner(db: Database) -> None:
    store = SqlPushConfigStore(db)
    await store.set_info("t1", TaskPushNotificationConfig(url="https://a.example/hook"), as_user("ada"))
    await store.set_info("t1", TaskPushNotificationConfig(id="b", url="https://b.example/hook"), as_user("bob"))
    assert [c.url for c in await store.get_info("t1", as_user("ada"))] == ["https://a.example/hook"]
    assert len(await store.get_info_for_dispatch("t1")) == 2
    await store.delete_info("t1", as_user("ada"))
    assert await store.get_info("t1", as_user("ada")) == []
    assert [c.id for c in await store.get_info("t1", as_user("bob"))] == ["b"]


async def test_gateway_serves_tasks_from_postgresql(tmp_path: Path, pg_schema_dsn: str) -> None:
    settings = make_settings(tmp_path, database_url=pg_schema_dsn)
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {"role": "ROLE_USER", "parts": [{"text": "pg"}], "messageId": "m-pg"}},
    }
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        task = (await http.post("/agents/echo", json=body, headers={"A2A-Version": "1.0"})).json()["result"]["task"]
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        get = {"jsonrpc": "2.0", "id": 2, "method": "GetTask", "params": {"id": task["id"]}}
        again = (await http.post("/agents/echo", json=get, headers={"A2A-Version": "1.0"})).json()["result"]
    assert again["status"]["state"] == "TASK_STATE_COMPLETED" and again["artifacts"][0]["parts"][0]["text"] == "pg"


async def test_dispatch_sees_configs_registered_before_a_restart(db: Database, tmp_path: Path) -> None:
    await SqlPushConfigStore(db).set_info("t9", TaskPushNotificationConfig(url="https://a.example/h"), as_user("ada"))
    fresh = SqlPushConfigStore(db)  # as after a restart: nothing known in memory yet
    assert [c.url for c in await fresh.get_info_for_dispatch("t9")] == ["https://a.example/h"]
    assert await fresh.get_info_for_dispatch("never-configured") == []
    await fresh.set_info("t10", TaskPushNotificationConfig(url="https://b.example/h"), as_user("ada"))
    assert [c.url for c in await fresh.get_info_for_dispatch("t10")] == ["https://b.example/h"]


async def test_sweep_on_a_shared_database_fails_only_what_a_gone_process_left(db: Database) -> None:
    """A live process's task is spared however old; a gone one's is failed however new; an unmarked one by age."""
    store, ada = SqlTaskStore(db, "echo"), as_user("ada")
    await store.save(make_task("mine-old", TaskState.TASK_STATE_WORKING, at_ns=1_000), ada)
    for task_id, at_ns, runner in (
        ("gone-new", 9_000, "a-dead-process"),
        ("legacy-old", 1_000, ""),
        ("legacy-new", 9_000, ""),
    ):
        await store.save(make_task(task_id, TaskState.TASK_STATE_WORKING, at_ns=at_ns), ada)
        await db.write("UPDATE tasks SET runner = ? WHERE id = ?", (runner, task_id))
    assert sorted(await fail_interrupted(db, "restarted", unchanged_since_ns=5_000)) == ["gone-new", "legacy-old"]
    for spared in ("mine-old", "legacy-new"):
        task = await store.get(spared, ada)
        assert task is not None and task.status.state == TaskState.TASK_STATE_WORKING


async def test_a_task_another_process_ended_is_not_written_again_by_the_one_that_ran_it(pg_schema_dsn: str) -> None:
    """A replica cut off while another ended its task FAILED cannot complete it once it is back; the ender may."""
    ran_it, ended_it = await open_database(pg_schema_dsn), await open_database(pg_schema_dsn)
    try:
        store, ada = SqlTaskStore(ran_it, "echo"), as_user("ada")
        await store.save(make_task("t1", TaskState.TASK_STATE_WORKING), ada)
        assert await fail_task(ended_it, ("echo", store.owner_of(ada), "t1"), "its replica is gone")
        with pytest.raises(TaskEndedElsewhereError):
            await store.save(make_task("t1", TaskState.TASK_STATE_COMPLETED), ada)
        with pytest.raises(TaskEndedElsewhereError):  # nor anything else of it
            await store.save(make_task("t1", TaskState.TASK_STATE_WORKING), ada)
        failed = await store.get("t1", ada)
        assert failed is not None and failed.status.state == TaskState.TASK_STATE_FAILED
        await SqlTaskStore(ended_it, "echo").save(failed, ada)  # its own save again (a retry): taken
        await store.save(make_task("t2", TaskState.TASK_STATE_INPUT_REQUIRED), ada)  # not ended: anyone goes on
        await SqlTaskStore(ended_it, "echo").save(make_task("t2", TaskState.TASK_STATE_COMPLETED), ada)
    finally:
        await ran_it.close()
        await ended_it.close()


class CountingDatabase:
    """A ``Database`` that counts the queries reaching it (writes and reads) and passes them on."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.reads = 0
        self.dialect, self.exclusive, self.runner = db.dialect, db.exclusive, db.runner

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        return await self._db.write(sql, params)

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        self.reads += 1
        return await self._db.fetch_one(sql, params)


async def test_a_new_task_is_not_looked_up_until_saved_and_then_from_the_database(db: Database) -> None:
    counting = CountingDatabase(db)
    store, ada = SqlTaskStore(counting, "echo"), as_user("ada")  # type: ignore[arg-type]
    task_id = store.new_ids.generate(IDGeneratorContext())
    assert await store.get(task_id, ada) is None and await store.get(task_id, as_user("bob")) is None
    assert counting.reads == 0, "an id the store just minted needs no query"
    await store.save(make_task(task_id, TaskState.TASK_STATE_SUBMITTED), ada)
    stored = await store.get(task_id, ada)
    assert stored is not None and stored.id == task_id and counting.reads == 1
    assert await store.get(task_id, as_user("bob")) is None, "owners stay apart once saved"
    assert await store.get("minted-elsewhere", ada) is None and counting.reads == 3


def test_minted_ids_not_saved_are_forgotten_past_the_limit() -> None:
    ids = NewTaskIds(limit=2)
    first, second, third = (ids.generate(IDGeneratorContext()) for _ in range(3))
    assert first not in ids and second in ids and third in ids
    ids.saved(second)
    assert second not in ids and len({first, second, third}) == 3


async def test_a_failed_single_statement_write_fails_only_that_write(tmp_path: Path) -> None:
    db = await open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    try:
        with pytest.raises(sqlite3.Error):
            await db.write("INSERT INTO no_such_table VALUES (1)")
        await SqlTaskStore(db, "echo").save(make_task("after"), as_user("ada"))
        assert await SqlTaskStore(db, "echo").get("after", as_user("ada")) is not None
    finally:
        await db.close()


async def test_a_failed_write_in_a_shared_transaction_fails_only_that_write(tmp_path: Path) -> None:
    """Writes made in one loop pass share a transaction; a bad one must not undo or fail its neighbours."""
    db = await open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    store = SqlTaskStore(db, "echo")
    try:
        before = store.save(make_task("before"), as_user("ada"))
        bad = db.write_many([("INSERT INTO no_such_table VALUES (1)", ())])
        after = store.save(make_task("after"), as_user("ada"))
        outcomes = await asyncio.gather(before, bad, after, return_exceptions=True)
        assert outcomes[0] is None and outcomes[2] is None
        assert isinstance(outcomes[1], sqlite3.Error)
        for task_id in ("before", "after"):
            assert await store.get(task_id, as_user("ada")) is not None
    finally:
        await db.close()


async def test_an_integer_no_column_holds_is_refused_and_later_writes_commit(db: Database) -> None:
    store = SqlTaskStore(db, "echo")
    for write in (
        db.write("UPDATE tasks SET updated_ns = ? WHERE id = 'x'", (10**19,)),
        db.write_many([("UPDATE tasks SET updated_ns = ? WHERE id = 'x'", (-(2**63) - 1,))]),
    ):
        with pytest.raises(UnstorableValueError, match="64-bit"):
            async with asyncio.timeout(5):
                await write
    await store.save(make_task("after"), as_user("ada"))
    assert await store.get("after", as_user("ada")) is not None


async def test_a_status_time_past_2262_is_stored_at_the_end_of_time_not_refused(db: Database) -> None:
    """A task stamped after 2262 (a peer's clock) still saves, lists first and pages."""
    store = SqlTaskStore(db, "echo")
    far = make_task("far")
    far.status.timestamp.seconds = 253370764800  # 9999-01-01
    await store.save(far, as_user("ada"))
    await store.save(make_task("now", at_ns=time.time_ns()), as_user("ada"))
    first = await store.list(ListTasksRequest(page_size=1), as_user("ada"))
    assert [t.id for t in first.tasks] == ["far"]
    second = await store.list(ListTasksRequest(page_size=1, page_token=first.next_page_token), as_user("ada"))
    assert [t.id for t in second.tasks] == ["now"]


async def test_fail_task_never_overwrites_a_save_that_ended_the_task_first(tmp_path: Path) -> None:
    """SQLite groups a loop pass's writes: a COMPLETED save pending there is not what fail_task reads."""
    db = await open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    store = SqlTaskStore(db, "echo")
    try:
        await store.save(make_task("t", TaskState.TASK_STATE_WORKING), as_user("ada"))
        completing = asyncio.ensure_future(store.save(make_task("t"), as_user("ada")))
        await asyncio.sleep(0)  # the save is submitted, its flush not run yet
        assert not completing.done()
        ended_here = await fail_task(db, ("echo", "ada", "t"), "gave up")
        await completing
        stored = await store.get("t", as_user("ada"))
        assert stored is not None and stored.status.state == TaskState.TASK_STATE_COMPLETED
        assert ended_here is False
    finally:
        await db.close()


async def test_fail_task_ends_a_running_task_and_leaves_an_ended_one(db: Database) -> None:
    store = SqlTaskStore(db, "echo")
    await store.save(make_task("running", TaskState.TASK_STATE_WORKING), as_user("ada"))
    await store.save(make_task("done"), as_user("ada"))
    assert await fail_task(db, ("echo", "ada", "running"), "gave up") is True
    assert await fail_task(db, ("echo", "ada", "done"), "gave up") is False
    assert await fail_task(db, ("echo", "ada", "absent"), "gave up") is False
    running = await store.get("running", as_user("ada"))
    assert running is not None and running.status.state == TaskState.TASK_STATE_FAILED
    assert running.status.message.parts[0].text == "gave up"


async def test_a_list_page_is_read_off_the_event_loop(tmp_path: Path) -> None:
    """A page and its count can visit every task of a caller (90 ms at 50,000): other requests go on meanwhile."""
    db = await open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    store = SqlTaskStore(db, "echo")
    try:
        await asyncio.gather(*(store.save(make_task(f"t{i}", ctx=f"c{i % 3}"), as_user("ada")) for i in range(30)))
        ticks = 0
        listing = asyncio.ensure_future(store.list(ListTasksRequest(context_id="c1"), as_user("ada")))
        while not listing.done():
            ticks += 1
            await asyncio.sleep(0)
        assert len(listing.result().tasks) == 10 and listing.result().total_size == 10
        assert ticks > 1, "the loop ran nothing else while the page was read"
    finally:
        await db.close()


async def test_a_database_made_before_tasks_recorded_their_runner_gains_the_column(db: Database) -> None:
    await db.write("ALTER TABLE tasks DROP COLUMN runner")
    await db.migrate()
    store = SqlTaskStore(db, "echo")
    await store.save(make_task("t"), as_user("ada"))
    assert await db.fetch_one("SELECT runner FROM tasks WHERE id = 't'") == (db.runner,)


async def test_a_runner_is_alive_exactly_as_long_as_its_process(pg_schema_dsn: str, tmp_path: Path) -> None:
    """kill -9 ends the process's session, and PostgreSQL frees its lock: the runner is provably gone."""
    script = (
        "import asyncio, sys\n"
        "from gateway.store import open_database\n"
        "async def main():\n"
        f"    db = await open_database({pg_schema_dsn!r})\n"
        "    print(db.runner, flush=True)\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 -- returns at once
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)}
    )
    db = await open_database(pg_schema_dsn)
    try:
        assert proc.stdout is not None
        runner = (await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)).decode().strip()
        assert await db.live_runners({runner, db.runner, "never-ran"}) == {runner, db.runner}
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        async with asyncio.timeout(10):
            while True:  # the server notices the closed socket: no event to wait on
                if not await db.live_runners({runner}):
                    break
                await asyncio.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        await db.close()


async def test_a_runner_whose_lock_session_ends_takes_its_lock_again(pg_schema_dsn: str) -> None:
    """A dropped session (a database restart, a network cut) must not leave a live process looking gone."""
    db = await open_database(pg_schema_dsn)
    admin = await asyncpg.connect(pg_schema_dsn)
    holder = "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted"
    try:
        first = await admin.fetchval(holder, RUNNER_LOCKS, runner_key(db.runner))
        assert first is not None
        await admin.execute("SELECT pg_terminate_backend($1)", first)
        async with asyncio.timeout(10):
            while True:  # the lock is taken again on a new session: no event to wait on from here
                again = await admin.fetchval(holder, RUNNER_LOCKS, runner_key(db.runner))
                if again not in (None, first):
                    break
                await asyncio.sleep(0.05)
        assert await db.live_runners({db.runner}) == {db.runner}
    finally:
        await admin.close()
        await db.close()


async def test_a_transaction_whose_second_statement_cannot_be_sent_is_rolled_back_whole(db: Database) -> None:
    """A lone surrogate cannot be encoded by either driver: refused up front, the first insert never made."""
    insert = "INSERT INTO push_configs (owner, task_id, id, data) VALUES (?, ?, ?, ?)"
    with pytest.raises(UnstorableValueError, match="UTF-8"):
        async with asyncio.timeout(5):
            await db.write_many([(insert, ("ada", "t", "first", b"x")), (insert, ("ada", "t", "\ud800", b"x"))])
    assert await db.fetch_all("SELECT id FROM push_configs") == []
    store = SqlTaskStore(db, "echo")
    await store.save(make_task("after"), as_user("ada"))
    assert await store.get("after", as_user("ada")) is not None
