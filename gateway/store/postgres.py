"""PostgreSQL through an asyncpg pool, for several replicas sharing one database."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import uuid
import zlib
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import Any

import asyncpg

from gateway.errors import StoreUnavailableError
from gateway.store.database import ADDED_COLUMNS, SCHEMA, Params, check_storable
from gateway.store.leases import FENCE_SQLSTATE, LEASE_SCHEMA, LeaseLostError
from gateway.store.tasks import ENDED_SCHEMA, ENDED_SQLSTATE, TaskEndedElsewhereError

logger = logging.getLogger(__name__)

_PLACEHOLDER = re.compile(r"\?")
RELOCK_DELAYS_S = (0.05, 0.2, 0.5, 1.0)  # then every second until it is taken again (within failover's grace)
RUNNER_LOCKS = 7245062
"""The advisory-lock namespace (first key) of the locks gateway processes hold while they live."""
MIGRATION_LOCK = 7245061
"""The advisory lock (transaction-scoped) that serialises creating tables across replicas and tools."""
_HELD_RUNNER_LOCKS = (
    "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objsubid = 2 AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


CLUSTER_SCHEMA = (
    # Live task events for subscribers on every replica (gateway.hosting.cluster), in order per task by seq.
    """CREATE TABLE IF NOT EXISTS task_events (
        task_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        agent TEXT NOT NULL,
        owner TEXT NOT NULL,
        kind SMALLINT NOT NULL,
        data BYTEA NOT NULL,
        at_ns BIGINT NOT NULL,
        PRIMARY KEY (task_id, seq))""",
    "CREATE INDEX IF NOT EXISTS task_events_by_time ON task_events (at_ns)",
    # Cancels asked for on one replica of a task running on another (gateway.hosting.cluster).
    """CREATE TABLE IF NOT EXISTS task_cancels (
        agent TEXT NOT NULL,
        owner TEXT NOT NULL,
        task_id TEXT NOT NULL,
        requested_ns BIGINT NOT NULL,
        PRIMARY KEY (agent, owner, task_id))""",
    # Steps of distributed work queues, claimed by any replica (gateway.hosting.work_items).
    """CREATE TABLE IF NOT EXISTS work_items (
        id TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        agent TEXT NOT NULL,
        owner TEXT NOT NULL,
        message BYTEA NOT NULL,
        posted_by TEXT NOT NULL,
        posted_ns BIGINT NOT NULL,
        state TEXT NOT NULL DEFAULT 'queued',
        claimed_by TEXT NOT NULL DEFAULT '',
        claimed_ns BIGINT NOT NULL DEFAULT 0,
        claims INTEGER NOT NULL DEFAULT 0,
        task_id TEXT NOT NULL DEFAULT '',
        result BYTEA,
        error TEXT NOT NULL DEFAULT '',
        retryable BOOLEAN NOT NULL DEFAULT FALSE,
        busy BOOLEAN NOT NULL DEFAULT FALSE)""",
    "CREATE INDEX IF NOT EXISTS work_items_queued ON work_items (agent, posted_ns) WHERE state = 'queued'",
    "CREATE INDEX IF NOT EXISTS work_items_by_run ON work_items (run_id)",
    # The card-signing keys every replica signs with (gateway.cards.shared_keys), oldest first by added_ns.
    """CREATE TABLE IF NOT EXISTS signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        pem TEXT NOT NULL,
        added_ns BIGINT NOT NULL,
        retired BOOLEAN NOT NULL DEFAULT FALSE,
        not_after_ns BIGINT)""",
    # Secrets the replicas share without configuration: the MCP requestState key (gateway.bindings.mcp_state).
    "CREATE TABLE IF NOT EXISTS cluster_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
)
"""PostgreSQL's own tables: only replicas share a database, so SQLite has none of these."""

CLUSTER_ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # The caller who posted a work item (``Identity.to_json``): the claiming replica runs it as that caller.
    ("work_items", "caller", "TEXT NOT NULL DEFAULT ''"),
)
"""Columns added to PostgreSQL's own tables after they were first created (as ``ADDED_COLUMNS``)."""


async def keep_session(conn: asyncpg.Connection) -> None:
    """A pool's ``reset``: nothing to undo, so no round trip (asyncpg's default sends one per release).

    The stores leave no session state on a pooled connection (no LISTEN, no session lock, no SET:
    those live on connections of their own), and asyncpg still rolls back an open transaction first.
    The default reset cost a round trip for every statement (half of a SendMessage's round trips).
    """


def runner_key(runner: str) -> int:
    """The second key of ``runner``'s advisory lock (a collision only makes a dead runner look alive)."""
    return zlib.crc32(runner.encode()) & 0x7FFFFFFF


def _table_of(sql: str) -> str:
    """The table a ``CREATE TABLE`` / ``CREATE INDEX ... ON`` statement of the schema makes or indexes, else ''."""
    words = sql.split()
    if words[:2] == ["CREATE", "TABLE"]:
        return words[5]
    return words[words.index("ON") + 1] if "INDEX" in words[:3] else ""


@lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """Turn the stores' ``?`` placeholders into PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


_UNREACHABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError)
"""What asyncpg raises while PostgreSQL is down, restarting or cut off (asyncpg's ``CannotConnectNowError`` too)."""


def _unreachable(exc: BaseException) -> bool:
    return isinstance(exc, _UNREACHABLE) or (
        isinstance(exc, asyncpg.PostgresError) and getattr(exc, "sqlstate", "").startswith(("08", "57P"))
    )


def _count(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class RunnerLock:
    """This process's runner lock, held on a session of its own, and taken again if that session ends.

    The lock lives exactly as long as its session: when the process dies, however it dies,
    PostgreSQL ends the session and frees the lock, and its tasks count as abandoned. A session
    that ends while the process lives (a database restart, a network cut) is replaced at once:
    until then a replica starting could take this process's tasks as abandoned, which is logged.
    (Session locks need a session: not through a transaction-pooling PgBouncer.)
    """

    def __init__(self, dsn: str, runner: str) -> None:
        self._dsn = dsn
        self._key = runner_key(runner)
        self._conn: asyncpg.Connection | None = None
        self._retaking: asyncio.Task[None] | None = None
        self._closing = False

    async def take(self) -> None:
        """Open a session and take the lock on it."""
        conn = await asyncpg.connect(self._dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock($1, $2)", RUNNER_LOCKS, self._key)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._conn = conn

    def _lost(self, conn: object) -> None:
        if self._closing:
            return
        logger.error("the database session holding this gateway's runner lock ended; taking the lock again")
        self._retaking = asyncio.ensure_future(self._take_again())

    async def _take_again(self) -> None:
        for attempt in itertools.count():
            try:
                await self.take()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                delay = RELOCK_DELAYS_S[min(attempt, len(RELOCK_DELAYS_S) - 1)]
                logger.warning("runner lock not taken again yet (%s); next try in %.2f s", exc, delay)
                await asyncio.sleep(delay)
            else:
                logger.info("runner lock taken again")
                return

    async def close(self) -> None:
        """Free the lock (end its session)."""
        self._closing = True
        if self._retaking is not None:
            self._retaking.cancel()
        if self._conn is not None:
            await self._conn.close()


class PostgresDatabase:
    """A shared database; asyncpg commits each statement unless it runs in a transaction."""

    dialect = "postgresql"
    exclusive = False  # replicas share it

    def __init__(self, pool: asyncpg.Pool, lock: RunnerLock | None, runner: str) -> None:
        self._pool = pool
        self._lock = lock
        self.runner = runner
        """This process's id on the database; its ``RunnerLock`` says it is alive."""
        self.available = True
        """False from a call that could not reach PostgreSQL until one that could (new work is refused meanwhile)."""

    @contextlib.contextmanager
    def _reaching(self) -> Iterator[None]:
        """Translate at the driver's boundary: a fenced write refused (``LeaseLostError``), a task another process
        ended written again (``TaskEndedElsewhereError``), PostgreSQL unreachable
        (``StoreUnavailableError``, retryable); and note whether PostgreSQL answered (``available``)."""
        try:
            yield
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", "") == FENCE_SQLSTATE:
                raise LeaseLostError(str(exc)) from exc
            if getattr(exc, "sqlstate", "") == ENDED_SQLSTATE:
                raise TaskEndedElsewhereError(str(getattr(exc, "detail", "") or "")) from exc
            if _unreachable(exc):
                self.available = False
                raise StoreUnavailableError(f"PostgreSQL is unreachable: {type(exc).__name__}") from exc
            raise
        except _UNREACHABLE as exc:
            self.available = False
            raise StoreUnavailableError(f"PostgreSQL is unreachable: {type(exc).__name__}: {exc}") from exc
        self.available = True

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 2, max_size: int = 10, runs_tasks: bool = True
    ) -> PostgresDatabase:
        """Open a pool on ``dsn``, and take this process's runner lock (``RunnerLock``).

        A tool that runs no tasks (``runs_tasks=False``, e.g. ``switchboard keys``) takes no runner
        lock: no process will ever ask whether it lives.
        """
        runner = uuid.uuid4().hex if runs_tasks else ""
        lock = RunnerLock(dsn, runner) if runs_tasks else None
        if lock is not None:
            await lock.take()
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=keep_session)
        except BaseException:
            if lock is not None:
                await lock.close()
            raise
        return cls(pool, lock, runner)

    async def live_runners(self, runners: set[str]) -> set[str]:
        """Those of ``runners`` whose process still holds its lock."""
        with self._reaching():
            held = {row[0] for row in await self._pool.fetch(_HELD_RUNNER_LOCKS, RUNNER_LOCKS)}
        return {runner for runner in runners if runner_key(runner) in held}

    async def migrate(self, tables: Sequence[str] = ()) -> None:
        """Create the tables if they do not exist (serialised across replicas by an advisory lock).

        Only ``tables`` when named: a tool touches no other table (``ALTER TABLE`` takes an exclusive
        lock, even when the column is there, so a full migrate waits for, and then blocks, the replicas).
        """
        statements = [sql.format(blob="BYTEA") for sql in SCHEMA] + [*CLUSTER_SCHEMA, *LEASE_SCHEMA, *ENDED_SCHEMA]
        added = (*ADDED_COLUMNS, *CLUSTER_ADDED_COLUMNS)
        if tables:
            statements = [sql for sql in statements if _table_of(sql) in tables]
            added = tuple(column for column in added if column[0] in tables)
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            for sql in statements:
                await conn.execute(sql)
            for table, column, kind in added:
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own transaction."""
        check_storable(((sql, params),))
        with self._reaching():
            status = await self._pool.execute(_numbered(sql), *params)
        return _count(status)

    async def write_many(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements in one transaction (rolled back whole on any error, by asyncpg)."""
        check_storable(statements)
        if len(statements) == 1:  # one statement is its own transaction: no BEGIN and COMMIT round trips
            sql, params = statements[0]
            with self._reaching():
                await self._pool.execute(_numbered(sql), *params)
            return
        with self._reaching():
            async with self._pool.acquire() as conn, conn.transaction():
                for sql, params in statements:
                    await conn.execute(_numbered(sql), *params)

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""
        with self._reaching():
            row = await self._pool.fetchrow(_numbered(sql), *params)
        return tuple(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows."""
        with self._reaching():
            rows = await self._pool.fetch(_numbered(sql), *params)
        return [tuple(r) for r in rows]

    async def scan(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows of a read that may visit many of them (asyncpg never blocks the loop on one)."""
        return await self.fetch_all(sql, params)

    async def close(self) -> None:
        """Close the pool, then the runner lock's session."""
        await self._pool.close()
        if self._lock is not None:
            await self._lock.close()
