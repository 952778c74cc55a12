"""The trigger ledger: one row per event a trigger received, so an event starts at most one run.

A row is claimed before its run starts (``INSERT ... ON CONFLICT DO NOTHING``: of two deliveries
of one event, on any replica, one wins) and linked to the run's task once the task is saved.
The run's context id is derived from the event (``context_for``), and the task is saved with it,
so a claim whose process died between the task's save and the link is linked on the next
delivery from the tasks table, and one that died before the save is taken over once stale. A
dead letter is a row too, with its reason and the payload, and answers every later delivery.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Literal

from gateway.store.database import Database

CLAIM_STALE_S = 30.0
"""A claim without a task after this long belongs to a process that died before the run was saved."""
_NAMESPACE = uuid.UUID("5b0c1c9e-8f3a-4f7e-9d6b-2a7f4e1c0b11")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS trigger_events (
        agent TEXT NOT NULL,
        trigger_name TEXT NOT NULL,
        event_id TEXT NOT NULL,
        context_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        task_id TEXT NOT NULL,
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        payload {blob} NOT NULL,
        received_ns BIGINT NOT NULL,
        claimed_ns BIGINT NOT NULL,
        PRIMARY KEY (agent, trigger_name, event_id))""",
    "CREATE INDEX IF NOT EXISTS trigger_events_by_time ON trigger_events (agent, trigger_name, received_ns)",
    # A2A push triggers: the artifacts a peer's task pushed before the state that starts the run.
    """CREATE TABLE IF NOT EXISTS trigger_pushed (
        agent TEXT NOT NULL,
        trigger_name TEXT NOT NULL,
        task_id TEXT NOT NULL,
        artifact_id TEXT NOT NULL,
        artifact TEXT NOT NULL,
        received_ns BIGINT NOT NULL,
        PRIMARY KEY (agent, trigger_name, task_id, artifact_id))""",
)

EntryState = Literal["claimed", "started", "dead"]


def context_for(agent: str, trigger: str, event_id: str) -> str:
    """The context id of the run an event starts: the same for every delivery of that event."""
    return str(uuid.uuid5(_NAMESPACE, f"{agent}\0{trigger}\0{event_id}"))


@dataclass(frozen=True)
class EventKey:
    """One event of one trigger of one agent."""

    agent: str
    trigger: str
    event_id: str

    @property
    def context_id(self) -> str:
        """The context id of its run."""
        return context_for(self.agent, self.trigger, self.event_id)

    @property
    def params(self) -> tuple[str, str, str]:
        """The primary key's values."""
        return self.agent, self.trigger, self.event_id


@dataclass(frozen=True)
class Entry:
    """A ledger row: the event's run (``task_id``) once started, or why it was dead-lettered."""

    key: EventKey
    owner: str
    task_id: str
    state: EntryState
    reason: str
    received_ns: int
    claimed_ns: int


_KEY = "agent = ? AND trigger_name = ? AND event_id = ?"
_COLUMNS = "owner, task_id, state, reason, received_ns, claimed_ns"


class TriggerLedger:
    """The ``trigger_events`` table (see the module)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self) -> None:
        """Create the tables if they do not exist."""
        blob = "BYTEA" if self.db.dialect == "postgresql" else "BLOB"
        await self.db.write_many([(sql.format(blob=blob), ()) for sql in SCHEMA])

    async def get(self, key: EventKey) -> Entry | None:
        """The event's row, or None."""
        row = await self.db.fetch_one(f"SELECT {_COLUMNS} FROM trigger_events WHERE {_KEY}", key.params)
        return Entry(key, *row) if row is not None else None

    async def claim(self, key: EventKey, owner: str, payload: bytes) -> Entry | None:
        """Claim the event for a run; None when this call won, else the row that was there."""
        now = time.time_ns()
        won = await self.db.write(
            "INSERT INTO trigger_events (agent, trigger_name, event_id, context_id, owner, task_id, state, reason, "
            "payload, received_ns, claimed_ns) VALUES (?, ?, ?, ?, ?, '', 'claimed', '', ?, ?, ?) "
            "ON CONFLICT (agent, trigger_name, event_id) DO NOTHING",
            (*key.params, key.context_id, owner, payload, now, now),
        )
        return None if won else await self.get(key)

    async def take_over(self, entry: Entry) -> bool:
        """Claim again an event whose claim went stale (its process died before the run was saved)."""
        changed = await self.db.write(
            f"UPDATE trigger_events SET claimed_ns = ? WHERE {_KEY} AND state = 'claimed' AND claimed_ns = ?",
            (time.time_ns(), *entry.key.params, entry.claimed_ns),
        )
        return changed == 1

    async def release(self, key: EventKey) -> None:
        """Give up a claim whose run did not start for a reason worth retrying (the next delivery claims it)."""
        await self.db.write(f"DELETE FROM trigger_events WHERE {_KEY} AND state = 'claimed'", key.params)

    async def link(self, key: EventKey, task_id: str) -> None:
        """Record the run the event started."""
        await self.db.write(
            f"UPDATE trigger_events SET task_id = ?, state = 'started' WHERE {_KEY}", (task_id, *key.params)
        )

    async def dead_letter(self, key: EventKey, owner: str, reason: str, payload: bytes) -> None:
        """Record the event as not runnable, with ``reason`` (claimed or not before)."""
        now = time.time_ns()
        await self.db.write_many(
            [
                (
                    "INSERT INTO trigger_events (agent, trigger_name, event_id, context_id, owner, task_id, state, "
                    "reason, payload, received_ns, claimed_ns) VALUES (?, ?, ?, ?, ?, '', 'dead', ?, ?, ?, ?) "
                    "ON CONFLICT (agent, trigger_name, event_id) DO NOTHING",
                    (*key.params, key.context_id, owner, reason, payload, now, now),
                ),
                (
                    f"UPDATE trigger_events SET state = 'dead', reason = ? WHERE {_KEY} AND state = 'claimed'",
                    (reason, *key.params),
                ),
            ]
        )

    async def prune(self, before_ns: int) -> int:
        """Forget the events received before ``before_ns`` (never a claim still in progress); how many."""
        pushed = "DELETE FROM trigger_pushed WHERE received_ns < ?"
        await self.db.write(pushed, (before_ns,))
        return await self.db.write(
            "DELETE FROM trigger_events WHERE received_ns < ? AND state <> 'claimed'", (before_ns,)
        )

    async def saved_task(self, key: EventKey, owner: str) -> str | None:
        """The id of the task a run of this event saved (found by its context), or None."""
        row = await self.db.fetch_one(
            "SELECT id FROM tasks WHERE agent = ? AND owner = ? AND context_id = ? ORDER BY updated_ns LIMIT 1",
            (key.agent, owner, key.context_id),
        )
        return str(row[0]) if row is not None else None

    async def entries(self, agent: str, trigger: str) -> list[Entry]:
        """Every row of one trigger, oldest first (the operator's view, and tests')."""
        rows = await self.db.fetch_all(
            f"SELECT event_id, {_COLUMNS} FROM trigger_events WHERE agent = ? AND trigger_name = ? "
            "ORDER BY received_ns, event_id",
            (agent, trigger),
        )
        return [Entry(EventKey(agent, trigger, str(row[0])), *row[1:]) for row in rows]

    async def last_event(self, agent: str, trigger: str) -> str | None:
        """The latest event id of a trigger by the time it was received (schedules: the last slot), or None."""
        row = await self.db.fetch_one(
            "SELECT event_id FROM trigger_events WHERE agent = ? AND trigger_name = ? "
            "ORDER BY received_ns DESC LIMIT 1",
            (agent, trigger),
        )
        return str(row[0]) if row is not None else None

    async def keep_artifact(self, agent: str, trigger: str, task_id: str, artifact_id: str, artifact: str) -> None:
        """Keep (replace) one artifact a peer's task pushed, until the state that starts the run."""
        await self.db.write(
            "INSERT INTO trigger_pushed (agent, trigger_name, task_id, artifact_id, artifact, received_ns) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (agent, trigger_name, task_id, artifact_id) "
            "DO UPDATE SET artifact = excluded.artifact",
            (agent, trigger, task_id, artifact_id, artifact, time.time_ns()),
        )

    async def pushed_artifacts(self, agent: str, trigger: str, task_id: str) -> dict[str, str]:
        """The artifacts kept for a peer's task, by id, in the order they first came."""
        rows = await self.db.fetch_all(
            "SELECT artifact_id, artifact FROM trigger_pushed WHERE agent = ? AND trigger_name = ? AND task_id = ? "
            "ORDER BY received_ns",
            (agent, trigger, task_id),
        )
        return {str(row[0]): str(row[1]) for row in rows}
