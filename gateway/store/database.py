"""The database seam the stores are written against: ``?`` placeholders, durable writes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from gateway.errors import GatewayError

Params = Sequence[Any]
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT64 = range(INT64_MIN, INT64_MAX + 1)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tasks (
        agent TEXT NOT NULL,
        owner TEXT NOT NULL,
        id TEXT NOT NULL,
        context_id TEXT NOT NULL,
        state INTEGER NOT NULL,
        updated_ns BIGINT NOT NULL,
        data {blob} NOT NULL,
        PRIMARY KEY (agent, owner, id))""",
    "CREATE INDEX IF NOT EXISTS tasks_by_time ON tasks (agent, owner, updated_ns DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS tasks_by_state ON tasks (state)",
    # The dashboard's task list over every agent (gateway.ui.tasks): a caller's, and every owner's for an operator.
    "CREATE INDEX IF NOT EXISTS tasks_by_owner_time ON tasks (owner, updated_ns DESC, id DESC)",
    "CREATE INDEX IF NOT EXISTS tasks_by_any_time ON tasks (updated_ns DESC, id DESC)",
    """CREATE TABLE IF NOT EXISTS push_configs (
        owner TEXT NOT NULL,
        task_id TEXT NOT NULL,
        id TEXT NOT NULL,
        data {blob} NOT NULL,
        PRIMARY KEY (owner, task_id, id))""",
    "CREATE INDEX IF NOT EXISTS push_configs_by_task ON push_configs (task_id)",
    # Run checkpoints (gateway.orchestration.checkpoints): one row per workflow run, saved after each step.
    """CREATE TABLE IF NOT EXISTS runs (
        run_id TEXT NOT NULL PRIMARY KEY,
        agent TEXT NOT NULL,
        owner TEXT NOT NULL,
        task_id TEXT NOT NULL,
        context_id TEXT NOT NULL,
        state TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        hops INTEGER NOT NULL,
        request {blob} NOT NULL,
        steps TEXT NOT NULL,
        started_ns BIGINT NOT NULL,
        updated_ns BIGINT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS runs_by_task ON runs (agent, owner, task_id)",
    # Push notifications not delivered yet (gateway.store.outbox): in order per (task, owner, config) by seq.
    """CREATE TABLE IF NOT EXISTS push_outbox (
        id TEXT NOT NULL PRIMARY KEY,
        task_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        config_id TEXT NOT NULL,
        seq BIGINT NOT NULL,
        payload {blob} NOT NULL,
        attempts INTEGER NOT NULL,
        due_ns BIGINT NOT NULL,
        lease_ns BIGINT NOT NULL,
        last_error TEXT NOT NULL)""",
    "CREATE UNIQUE INDEX IF NOT EXISTS push_outbox_chain ON push_outbox (task_id, owner, config_id, seq)",
    "CREATE INDEX IF NOT EXISTS push_outbox_by_due ON push_outbox (due_ns, lease_ns)",
    # The audit trail (gateway.telemetry.audit): append-only, pruned by age; never contents or secrets.
    """CREATE TABLE IF NOT EXISTS audit (
        at_ns BIGINT NOT NULL,
        kind TEXT NOT NULL,
        caller TEXT NOT NULL,
        agent TEXT NOT NULL,
        skill TEXT NOT NULL,
        task_id TEXT NOT NULL,
        binding TEXT NOT NULL,
        method TEXT NOT NULL,
        outcome TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS audit_by_time ON audit (at_ns)",
)

ADDED_COLUMNS: tuple[tuple[str, str, str], ...] = (
    # The run's time spent running, in its checkpoint (-1: written before it was kept, see checkpoints).
    ("runs", "elapsed_ns", "BIGINT NOT NULL DEFAULT -1"),
    # The gateway process that last wrote the task (Database.runner): the start-up sweep's judge on a shared database.
    ("tasks", "runner", "TEXT NOT NULL DEFAULT ''"),
    # The caller a run acts for (``Identity.to_json``): its steps are checked with its scopes, also on resume.
    ("runs", "caller", "TEXT NOT NULL DEFAULT ''"),
)
"""Columns added to a table after it was first created: ``migrate`` adds each one a database lacks."""


class UnstorableValueError(GatewayError, ValueError):
    """A write carrying a value no column can hold (an integer past 64 bits); refused before it is run."""

    message = "a value the database cannot store"
    reason = "unstorable-value"


def check_storable(statements: Sequence[tuple[str, Params]]) -> None:
    """Raise ``UnstorableValueError`` for a parameter no column can hold or no driver can send.

    An integer past 64 bits; a string that is not UTF-8 (a lone surrogate). The drivers would
    raise too, but mid-batch (SQLite, inside the writer) or as a driver error. Cheap: a type check
    per value, and ``isascii`` (no copy) before a string is ever encoded.
    """
    for _, params in statements:
        for value in params:
            kind = type(value)
            if kind is int and value not in _INT64:
                raise UnstorableValueError(f"{value} does not fit a signed 64-bit integer column")
            if kind is str and not value.isascii():
                try:
                    value.encode()
                except UnicodeEncodeError:
                    raise UnstorableValueError(f"{value!a} is not valid UTF-8 text") from None


class Database(Protocol):
    """A SQL database; every write returns only after it is committed."""

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""

    @property
    def exclusive(self) -> bool:
        """True when no other process writes to it (what is cached in memory stays true)."""

    @property
    def runner(self) -> str:
        """This gateway process's id on the database, recorded with every task it writes."""

    @property
    def available(self) -> bool:
        """False while the database cannot be reached (a shared one, down or cut off): new work is refused."""

    async def live_runners(self, runners: set[str]) -> set[str]:
        """Those of ``runners`` whose gateway process is provably alive (on a shared database: holds its lock)."""

    async def migrate(self) -> None:
        """Create the tables if they do not exist."""

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own committed transaction; returns the affected row count."""

    async def write_many(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements in one committed transaction."""

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows."""

    async def scan(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows of a read that may visit many rows (a list page, a count): never on the event loop."""

    async def close(self) -> None:
        """Release connections and threads."""


class DeferredDatabase:
    """A ``Database`` opened later, in the app's lifespan; stores are built against it up front."""

    def __init__(self) -> None:
        self._db: Database | None = None

    @property
    def dialect(self) -> str:
        """The dialect of the opened database."""
        return self.db.dialect

    @property
    def exclusive(self) -> bool:
        """Whether the opened database is written by this process alone."""
        return self.db.exclusive

    @property
    def runner(self) -> str:
        """The opened database's id for this process."""
        return self.db.runner

    @property
    def available(self) -> bool:
        """Whether the opened database answered its last call."""
        return self.db.available

    async def live_runners(self, runners: set[str]) -> set[str]:
        """Those of ``runners`` whose process is alive."""
        return await self.db.live_runners(runners)

    @property
    def db(self) -> Database:
        """The opened database."""
        if self._db is None:
            raise RuntimeError("the database is not open yet (the app's lifespan has not started)")
        return self._db

    def attach(self, db: Database | None) -> None:
        """Point at ``db`` (or at nothing, after closing)."""
        self._db = db

    async def migrate(self) -> None:
        """Create the tables if they do not exist."""
        await self.db.migrate()

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own committed transaction."""
        return await self.db.write(sql, params)

    async def write_many(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements in one committed transaction."""
        await self.db.write_many(statements)

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""
        return await self.db.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows."""
        return await self.db.fetch_all(sql, params)

    async def scan(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows of a read that may visit many rows."""
        return await self.db.scan(sql, params)

    async def close(self) -> None:
        """Close the opened database."""
        if self._db is not None:
            await self._db.close()
            self._db = None
