"""The outbox keeps one head per chain: only heads are due, the next is made due when a head goes."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from gateway.store import Database, open_database
from gateway.store.outbox import WAITING, SqlPushOutbox
from tests.conftest import PG_DSN_ENV
from tests.push.conftest import fresh_pg_database

LATER = 10**12  # 1000 s: past any due time written by the test


@asynccontextmanager
async def _opened(url: str) -> AsyncIterator[Database]:
    database = await open_database(url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    if request.param == "sqlite":
        async with _opened(f"sqlite:///{tmp_path / 'outbox.db'}") as database:
            yield database
        return
    dsn = os.environ.get(PG_DSN_ENV, "")
    if not dsn:
        pytest.skip(f"{PG_DSN_ENV} is not set")
    async with fresh_pg_database(dsn) as url, _opened(url) as database:
        yield database


async def _heads(outbox: SqlPushOutbox) -> list[tuple[str, bytes]]:
    return [(row.task_id, row.payload) for row in await outbox.due(time.time_ns() + LATER, 100)]


async def test_only_heads_are_due_and_removing_one_makes_the_next_due(db: Database) -> None:
    outbox = SqlPushOutbox(db)
    for n in range(3):
        await db.write_many(outbox.enqueue("t1", [("ada", "a"), ("ada", "b")], f"t1-{n}".encode()))
        await db.write_many(outbox.enqueue("t2", [("bob", "a")], f"t2-{n}".encode()))
    assert sorted(await _heads(outbox)) == [("t1", b"t1-0"), ("t1", b"t1-0"), ("t2", b"t2-0")]
    for expected in (b"t2-1", b"t2-2"):
        [head] = [row for row in await outbox.due(time.time_ns() + LATER, 100) if row.task_id == "t2"]
        await outbox.remove(head)
        assert ("t2", expected) in await _heads(outbox)
    [last] = [row for row in await outbox.due(time.time_ns() + LATER, 100) if row.task_id == "t2"]
    await outbox.remove(last)
    assert [h for h in await _heads(outbox) if h[0] == "t2"] == []
    assert await outbox.pending() == 6


async def test_a_leased_head_is_not_due_and_a_retried_one_is_due_later(db: Database) -> None:
    outbox = SqlPushOutbox(db)
    await db.write_many(outbox.enqueue("t", [("ada", "a")], b"0"))
    [head] = await outbox.due(time.time_ns(), 10)
    now = time.time_ns()
    assert await outbox.claim(head.id, now, now + LATER)
    assert not await outbox.claim(head.id, now, now + LATER)  # another sender cannot take it
    assert await outbox.due(now + LATER // 2, 10) == []
    await outbox.retry_at(head.id, 1, now + 5 * 10**9, "HTTP 500")
    assert await outbox.due(now, 10) == []
    assert await outbox.next_due() == now + 5 * 10**9
    [again] = await outbox.due(now + 5 * 10**9, 10)
    assert again.id == head.id and again.attempts == 1


async def test_recover_leaves_exactly_one_head_per_chain(db: Database) -> None:
    outbox = SqlPushOutbox(db)
    for n in range(3):
        await db.write_many(outbox.enqueue("t", [("ada", "a")], f"{n}".encode()))
    await db.write("UPDATE push_outbox SET due_ns = 1")  # every row due: one head too many, twice
    await outbox.recover(release_leases=True)
    assert await _heads(outbox) == [("t", b"0")]
    await db.write(f"UPDATE push_outbox SET due_ns = {WAITING}")  # no head at all
    await outbox.recover(release_leases=True)
    assert await _heads(outbox) == [("t", b"0")]
