"""SQLite in WAL mode with one writer thread that group-commits.

Why a thread: a commit (and the WAL checkpoint SQLite runs after some commits) must never stall
the event loop. Why group commit: under load many saves are pending at once, and one
transaction for all of them costs about what one costs. Every ``write`` resolves only after
the transaction holding it has committed, so an acknowledged task survives ``kill -9``
(``synchronous=NORMAL`` in WAL loses nothing to a process crash, only possibly to power loss).

Reads run on the event loop through their own connection: a primary-key lookup takes
microseconds, far less than a hop to a thread, and WAL readers never wait for the writer.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway.store.database import SCHEMA, Params

_BATCH = 512
_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=5000",
    "PRAGMA foreign_keys=ON",
)
_Job = tuple[Sequence[tuple[str, Params]], asyncio.Future[int], asyncio.AbstractEventLoop]


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in _PRAGMAS:
        conn.execute(pragma)
    return conn


def _settle(results: list[tuple[asyncio.Future[int], int | BaseException]]) -> None:
    for future, outcome in results:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class SqliteDatabase:
    """The embedded default database."""

    dialect = "sqlite"

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._reader = _connect(path)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="sqlite-writer", daemon=True)
        self._thread.start()

    async def migrate(self) -> None:
        """Create the tables if they do not exist."""
        await self.write_many([(sql.format(blob="BLOB"), ()) for sql in SCHEMA])

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement; returns after its transaction committed."""
        return await self._submit([(sql, params)])

    async def write_many(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements in one transaction; returns after it committed."""
        await self._submit(statements)

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, read on the event loop (see the module docstring)."""
        row: tuple[Any, ...] | None = self._reader.execute(sql, params).fetchone()
        return row

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows."""
        return self._reader.execute(sql, params).fetchall()

    async def close(self) -> None:
        """Finish pending writes, stop the writer, close both connections."""
        self._jobs.put(None)
        await asyncio.to_thread(self._thread.join)
        self._reader.close()

    async def _submit(self, statements: Sequence[tuple[str, Params]]) -> int:
        if not self._thread.is_alive():
            raise RuntimeError("the SQLite writer has stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._jobs.put((statements, future, loop))
        return await future

    def _writer(self) -> None:
        conn = _connect(self._path)
        try:
            while (job := self._jobs.get()) is not None:
                batch = [job]
                stop = False
                while len(batch) < _BATCH:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._commit(conn, batch)
                if stop:
                    break
        finally:
            conn.close()

    @staticmethod
    def _commit(conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[int | BaseException] = []
        conn.execute("BEGIN IMMEDIATE")
        for statements, _, _ in batch:
            # A savepoint per job keeps one bad statement from undoing its neighbours' work.
            conn.execute("SAVEPOINT job")
            try:
                count = sum(conn.execute(sql, params).rowcount for sql, params in statements)
                conn.execute("RELEASE job")
                outcomes.append(count)
            except sqlite3.Error as exc:
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append(exc)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            conn.execute("ROLLBACK")
            outcomes = [exc] * len(batch)
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int | BaseException]]] = {}
        for (_, future, loop), outcome in zip(batch, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, results in by_loop.items():
            if not loop.is_closed():
                loop.call_soon_threadsafe(_settle, results)
