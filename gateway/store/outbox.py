"""The push outbox: notifications waiting for delivery, one row per event and push config.

A chain is the notifications of one task for one config (task id, owner, config id), ordered by
``seq``; only the head of a chain (its lowest ``seq``) is ever sent, so a receiver gets a task's
events in order and one at a time. A sender claims a head by setting its lease (a time until
which no other sender takes it, whichever process shares the database); a failed try puts it
back with a later ``due_ns``; a delivered or dropped one is deleted, and the next in its chain
becomes the head. Rows are written in the transaction that saves the task where the caller
allows it (``enqueue`` returns a statement), so an event acknowledged is an event to deliver.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass

from gateway.store.database import Database, Params

_HEAD = (
    "NOT EXISTS (SELECT 1 FROM push_outbox p WHERE p.task_id = o.task_id AND p.owner = o.owner "
    "AND p.config_id = o.config_id AND p.seq < o.seq)"
)
_INSERT = (
    "INSERT INTO push_outbox (id, task_id, owner, config_id, seq, payload, attempts, due_ns, lease_ns, last_error) "
    "VALUES (?, ?, ?, ?, ?, ?, 0, ?, 0, '')"
)


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

    @staticmethod
    def enqueue(task_id: str, owner: str, config_id: str, payload: bytes) -> tuple[str, Params]:
        """The statement adding one notification to the end of its chain (run it with the task's save)."""
        now = time.time_ns()
        return _INSERT, (str(uuid.uuid4()), task_id, owner, config_id, _SEQ.next(), payload, now)

    async def due(self, now_ns: int, limit: int) -> list[OutboxRow]:
        """Heads of chains due by ``now_ns`` and not leased, the longest waiting first."""
        rows = await self.db.fetch_all(
            "SELECT o.id, o.task_id, o.owner, o.config_id, o.payload, o.attempts FROM push_outbox o "
            f"WHERE o.due_ns <= ? AND o.lease_ns <= ? AND {_HEAD} ORDER BY o.due_ns, o.seq LIMIT ?",
            (now_ns, now_ns, limit),
        )
        return [OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4]), int(r[5])) for r in rows]

    async def next_due(self) -> int | None:
        """When the next head becomes sendable (due and not leased), in ns; None when the outbox is empty."""
        row = await self.db.fetch_one(
            "SELECT MIN(CASE WHEN o.lease_ns > o.due_ns THEN o.lease_ns ELSE o.due_ns END) "
            f"FROM push_outbox o WHERE {_HEAD}"
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

    async def remove(self, row_id: str) -> None:
        """Delete a delivered or dropped notification: the next of its chain becomes the head."""
        await self.db.write("DELETE FROM push_outbox WHERE id = ?", (row_id,))

    async def release_leases(self) -> None:
        """Forget every lease (at start-up, on a database no other process uses: their holder is gone)."""
        await self.db.write("UPDATE push_outbox SET lease_ns = 0 WHERE lease_ns <> 0")

    async def pending(self) -> int:
        """How many notifications wait for delivery."""
        row = await self.db.fetch_one("SELECT COUNT(*) FROM push_outbox")
        return int(row[0]) if row else 0
