"""The SQLite writer survives any failure of any job: the job's caller gets the error, everyone else's work commits."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.store import SqlTaskStore, open_database
from gateway.store import sqlite as sqlite_module
from gateway.store.database import UnstorableValueError
from gateway.store.sqlite import SqliteDatabase
from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.store.test_task_store import as_user, make_task

INSERT = "INSERT INTO tasks (agent, owner, id, context_id, state, updated_ns, data) VALUES "
WRITE_TIMEOUT_S = 15.0  # a write that has not resolved by then never will: the writer is wedged (a loaded disk is slow)


class Boom:
    """A parameter sqlite3 fails to bind with a non-sqlite exception (as an adapter's bug would)."""

    def __conform__(self, protocol: Any) -> Any:
        raise RuntimeError("boom while binding")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    assert isinstance(database, SqliteDatabase)
    try:
        yield database
    finally:
        await database.close()


def committed_ids(path: Path) -> set[str]:
    """The task ids another connection sees: only what was committed."""
    conn = sqlite3.connect(path)
    try:
        return {row[0] for row in conn.execute("SELECT id FROM tasks")}
    finally:
        conn.close()


async def settle(*writes: Any) -> list[Any]:
    async with asyncio.timeout(WRITE_TIMEOUT_S):
        return await asyncio.gather(*writes, return_exceptions=True)


async def test_an_integer_sqlite_cannot_store_is_refused_before_it_reaches_the_writer(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    with pytest.raises(UnstorableValueError, match="64-bit"):
        async with asyncio.timeout(WRITE_TIMEOUT_S):
            await db.write(
                INSERT + "('a', 'o', 'x', 'c', 1, ?, x'')",
                (10**19,),
            )
    store = SqlTaskStore(db, "echo")
    outcomes = await settle(
        store.save(make_task("before"), as_user("ada")),
        db.write_many([("UPDATE runs SET hops = ? WHERE run_id = 'r'", (-(2**64),))]),
        store.save(make_task("after"), as_user("ada")),
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], UnstorableValueError)
    assert committed_ids(tmp_path / "tasks.db") == {"before", "after"}


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in-a-batch"])
async def test_a_non_sqlite_exception_in_a_job_fails_only_that_job(
    db: SqliteDatabase, tmp_path: Path, alone: bool
) -> None:
    store = SqlTaskStore(db, "echo")
    poisoned = db.write(
        INSERT + "('a', 'o', 'x', 'c', 1, 0, ?)",
        (Boom(),),
    )
    if alone:
        outcomes = await settle(poisoned)
    else:
        outcomes = await settle(store.save(make_task("neighbour"), as_user("ada")), poisoned)
        assert outcomes.pop(0) is None
    assert isinstance(outcomes[0], RuntimeError)
    # The writer goes on: the next pass (one write, then a batch) commits.
    await settle(store.save(make_task("next"), as_user("ada")))
    assert await settle(store.save(make_task("b1"), as_user("ada")), store.save(make_task("b2"), as_user("ada"))) == [
        None,
        None,
    ]
    expected = {"next", "b1", "b2"} | (set() if alone else {"neighbour"})
    assert committed_ids(tmp_path / "tasks.db") == expected


async def test_a_job_of_several_statements_that_fails_midway_is_rolled_back_whole(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    store = SqlTaskStore(db, "echo")
    half = [
        (
            INSERT + "('echo', 'ada', 'half', 'c', 1, 0, x'')",
            (),
        ),
        (
            INSERT + "('a', 'o', 'x', 'c', 1, 0, ?)",
            (Boom(),),
        ),
    ]
    outcomes = await settle(db.write_many(half))
    assert isinstance(outcomes[0], RuntimeError)
    outcomes = await settle(store.save(make_task("other"), as_user("ada")), db.write_many(half))
    assert outcomes[0] is None and isinstance(outcomes[1], RuntimeError)
    assert committed_ids(tmp_path / "tasks.db") == {"other"}


class FailingCommits:
    """A connection whose COMMIT fails (a full disk, an I/O error), delegating everything else."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error at /secret/path")
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_a_failed_commit_fails_its_callers_and_leaves_no_transaction_open(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    store = SqlTaskStore(db, "echo")
    real = db._conn
    db._conn = FailingCommits(real)  # type: ignore[assignment]
    outcomes = await settle(
        store.save(make_task("lost1"), as_user("ada")), store.save(make_task("lost2"), as_user("ada"))
    )
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)
    assert not real.in_transaction
    db._conn = real
    await settle(store.save(make_task("kept"), as_user("ada")))
    assert committed_ids(tmp_path / "tasks.db") == {"kept"}


async def test_a_connection_left_in_a_transaction_is_recovered(db: SqliteDatabase, tmp_path: Path) -> None:
    db._conn.execute("BEGIN IMMEDIATE")  # as a bug past every guard would leave it
    store = SqlTaskStore(db, "echo")
    assert await settle(store.save(make_task("a"), as_user("ada")), store.save(make_task("b"), as_user("ada"))) == [
        None,
        None,
    ]
    await settle(store.save(make_task("c"), as_user("ada")))
    assert committed_ids(tmp_path / "tasks.db") == {"a", "b", "c"}


async def test_readyz_says_not_ready_while_the_writer_cannot_commit(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        assert (await http.get("/readyz")).status_code == 200
        sqlite_db = gw.app.state.gateway.db.db
        real = sqlite_db._conn
        sqlite_db._conn = FailingCommits(real)
        try:
            response = await http.get("/readyz")
        finally:
            sqlite_db._conn = real
        assert response.status_code == 503
        assert "secret" not in response.text and "I/O" not in response.text
        assert (await http.get("/readyz")).status_code == 200


class FailingCheckpoints:
    """The checkpointer's connection: its first checkpoint fails as a corrupt page would, then it works."""

    def __init__(self, conn: sqlite3.Connection, failed: threading.Event, recovered: threading.Event) -> None:
        self._conn, self._failed, self._recovered = conn, failed, recovered

    def execute(self, sql: str, params: Any = ()) -> sqlite3.Cursor:
        if "wal_checkpoint(PASSIVE)" in sql:
            if not self._failed.is_set():
                self._failed.set()
                raise sqlite3.DatabaseError("database disk image is malformed")
            self._recovered.set()
        return self._conn.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_the_checkpointer_survives_a_failed_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Automatic checkpoints are off: a checkpointer that died would let the WAL grow without end."""
    failed, recovered = threading.Event(), threading.Event()
    real_connect = sqlite_module._connect
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_INTERVAL_S", 0.01)
    monkeypatch.setattr(
        sqlite_module, "_connect", lambda path: FailingCheckpoints(real_connect(path), failed, recovered)
    )
    database = await open_database(f"sqlite:///{tmp_path / 'tasks.db'}")
    try:
        assert await asyncio.to_thread(recovered.wait, 10), "no checkpoint ran after the failed one"
        assert failed.is_set()
    finally:
        await database.close()
