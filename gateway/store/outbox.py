"""The push outbox: notifications waiting for delivery, one row per event and push config.

A chain is the notifications of one task for one config (task id, owner, config id), ordered by
``seq``. Only a chain's head (its lowest ``seq``) has a real ``due_ns``; the rows behind it wait
with ``due_ns = WAITING`` (never due), so a receiver gets a task's events in order and one at a
time, and finding what is due reads only heads (one range of the ``due_ns`` index, however long
the chains behind them grow). A sender claims a head by setting its lease (a time until which no
other sender takes it, whichever process shares the database); a failed try puts it back with a
later ``due_ns``; a delivered or dropped one is deleted and the next of its chain made due in the
same transaction. On PostgreSQL the transactions that add to or remove from a task's chains take
an advisory lock on the task first, so an append cannot miss a head being removed at that moment.
Rows are written in the transaction that saves the task where the caller allows it (``enqueue``
returns statements), so an event acknowledged is an event to deliver.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store.database import Database, Params

WAITING = 1 << 62
"""``due_ns`` of a row behind its chain's head: never due until the head is gone."""
_CHAIN = "task_id = ? AND owner = ? AND config_id = ?"
_IN_CHAIN_BEFORE = (
    "SELECT 1 FROM push_outbox p WHERE p.task_id = push_outbox.task_id AND p.owner = push_outbox.owner "
    "AND p.config_id = push_outbox.config_id AND p.seq < push_outbox.seq"
)
_INSERT = (
    "INSERT INTO push_outbox (id, task_id, owner, config_id, seq, payload, attempts, due_ns, lease_ns, last_error) "
    f"VALUES (?, ?, ?, ?, ?, ?, 0, CASE WHEN EXISTS (SELECT 1 FROM push_outbox WHERE {_CHAIN}) "
    f"THEN {WAITING} ELSE CAST(? AS BIGINT) END, 0, '')"
)
_PROMOTE = (  # by primary key: the planner must not scan every waiting row for ``due_ns = WAITING``
    f"UPDATE push_outbox SET due_ns = CASE WHEN due_ns = {WAITING} THEN CAST(? AS BIGINT) ELSE due_ns END "
    f"WHERE id = (SELECT id FROM push_outbox WHERE {_CHAIN} ORDER BY seq LIMIT 1)"
)
_TASK_LOCK = "SELECT pg_advisory_xact_lock(hashtext(?))"


class _Sequence:
    """Strictly increasing numbers near the wall clock in nanoseconds (so they keep increasing across restarts)."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> int:
        with self._lock:
            self._last = max(self._last + 1, time.time_ns())
            return self._last


_SEQ = _Sequence()


@dataclass(frozen=True)
class OutboxRow:
    """One notification to deliver: its id (sent to the receiver), its chain, its payload and tries so far."""

    id: str
    task_id: str
    owner: str
    config_id: str
    payload: bytes
    attempts: int


class SqlPushOutbox:
    """The ``push_outbox`` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def enqueue(self, task_id: str, targets: Sequence[tuple[str, str]], payload: bytes) -> list[tuple[str, Params]]:
        """The statements adding ``payload`` to the end of the chain of each (owner, config id) of ``task_id``.

        Run them in one transaction (with the task's save where there is one).
        """
        now = time.time_ns()
        statements = self._lock(task_id)
        for owner, config_id in targets:
            chain = (task_id, owner, config_id)
            statements.append((_INSERT, (str(uuid.uuid4()), *chain, _SEQ.next(), payload, *chain, now)))
        return statements

    async def due(self, now_ns: int, limit: int) -> list[OutboxRow]:
        """Heads due by ``now_ns`` and not leased, the longest waiting first."""
        rows = await self.db.fetch_all(
            "SELECT id, task_id, owner, config_id, payload, attempts FROM push_outbox "
            "WHERE due_ns <= ? AND lease_ns <= ? ORDER BY due_ns LIMIT ?",
            (now_ns, now_ns, limit),
        )
        return [OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4]), int(r[5])) for r in rows]

    async def next_due(self) -> int | None:
        """When the next head becomes sendable (due and not leased), in ns; None when the outbox is empty."""
        row = await self.db.fetch_one(
            "SELECT MIN(CASE WHEN lease_ns > due_ns THEN lease_ns ELSE due_ns END) "
            f"FROM push_outbox WHERE due_ns < {WAITING}"
        )
        return int(row[0]) if row is not None and row[0] is not None else None

    async def claim(self, row_id: str, now_ns: int, until_ns: int) -> bool:
        """Lease one head until ``until_ns``; False when another sender holds it."""
        count = await self.db.write(
            "UPDATE push_outbox SET lease_ns = ? WHERE id = ? AND lease_ns <= ?", (until_ns, row_id, now_ns)
        )
        return count == 1

    async def retry_at(self, row_id: str, attempts: int, due_ns: int, error: str) -> None:
        """Put a head back after a failed try, to be tried again at ``due_ns``."""
        await self.db.write(
            "UPDATE push_outbox SET attempts = ?, due_ns = ?, lease_ns = 0, last_error = ? WHERE id = ?",
            (attempts, due_ns, error, row_id),
        )

    async def release(self, row_ids: Sequence[str]) -> None:
        """End the leases of rows whose tries were stopped midway (due as they were: tried again at once)."""
        await self.db.write_many(
            [("UPDATE push_outbox SET lease_ns = 0 WHERE id = ?", (row_id,)) for row_id in row_ids]
        )

    async def remove(self, row: OutboxRow) -> None:
        """Delete a delivered or dropped head and make the next of its chain due now."""
        chain = (row.task_id, row.owner, row.config_id)
        await self.db.write_many(
            [
                *self._lock(row.task_id),
                ("DELETE FROM push_outbox WHERE id = ?", (row.id,)),
                (_PROMOTE, (time.time_ns(), *chain)),
            ]
        )

    async def recover(self, *, release_leases: bool) -> None:
        """At start-up: every chain has exactly one head (whatever wrote the rows), and leases are dropped if asked.

        ``release_leases`` on a database no other process uses: a lease's holder is gone.
        """
        now = time.time_ns()
        statements: list[tuple[str, Params]] = [
            (f"UPDATE push_outbox SET due_ns = {WAITING} WHERE due_ns < {WAITING} AND EXISTS ({_IN_CHAIN_BEFORE})", ()),
            (f"UPDATE push_outbox SET due_ns = ? WHERE due_ns = {WAITING} AND NOT EXISTS ({_IN_CHAIN_BEFORE})", (now,)),
        ]
        if release_leases:
            statements.append(("UPDATE push_outbox SET lease_ns = 0 WHERE lease_ns <> 0", ()))
        await self.db.write_many(statements)

    async def pending(self) -> int:
        """How many notifications wait for delivery."""
        row = await self.db.fetch_one("SELECT COUNT(*) FROM push_outbox")
        return int(row[0]) if row else 0

    def _lock(self, task_id: str) -> list[tuple[str, Params]]:
        # PostgreSQL: chains of one task change one transaction at a time (SQLite runs writes one at a time).
        return [(_TASK_LOCK, (f"push:{task_id}",))] if self.db.dialect == "postgresql" else []
