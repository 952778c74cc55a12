"""Which remote task mirrors which local task: the ``remote_tasks`` table.

A relay's local task (this gateway's own A2A task) maps to one task at the peer. The row is
written as soon as the peer names its task, and read to send a follow-up (an answer to
``input-required``) to the same remote task, to cancel a paused task at the peer, and to keep a
local context's turns in one remote context. Contexts are looked up per owner: every call this
gateway makes has the same identity at the peer, so the peer cannot keep two local callers apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from gateway.store.database import Database

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS remote_tasks (
        agent TEXT NOT NULL,
        task_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        context_id TEXT NOT NULL,
        card_url TEXT NOT NULL,
        remote_task_id TEXT NOT NULL,
        remote_context_id TEXT NOT NULL,
        updated_ns BIGINT NOT NULL,
        PRIMARY KEY (agent, task_id))""",
    "CREATE INDEX IF NOT EXISTS remote_tasks_by_context ON remote_tasks (agent, owner, context_id, updated_ns)",
)
_UPSERT = (
    "INSERT INTO remote_tasks (agent, task_id, owner, context_id, card_url, remote_task_id, remote_context_id, "
    "updated_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (agent, task_id) DO UPDATE SET "
    "remote_task_id = excluded.remote_task_id, remote_context_id = excluded.remote_context_id, "
    "updated_ns = excluded.updated_ns"
)


@dataclass(frozen=True)
class RemoteLink:
    """One local task and the remote task it mirrors."""

    agent: str
    task_id: str
    owner: str
    context_id: str
    card_url: str
    remote_task_id: str
    remote_context_id: str


class SqlRemoteLinks:
    """The ``remote_tasks`` table, in the gateway's database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def migrate(self) -> None:
        """Create the table if it does not exist."""
        for statement in SCHEMA:
            await self._db.write(statement)

    async def save(self, link: RemoteLink) -> None:
        """Record (or update) the link of a local task."""
        row = (
            link.agent,
            link.task_id,
            link.owner,
            link.context_id,
            link.card_url,
            link.remote_task_id,
            link.remote_context_id,
            time.time_ns(),
        )
        await self._db.write(_UPSERT, row)

    async def get(self, agent: str, task_id: str) -> RemoteLink | None:
        """The link of local task ``task_id`` of ``agent``, or None."""
        row = await self._db.fetch_one(
            "SELECT agent, task_id, owner, context_id, card_url, remote_task_id, remote_context_id "
            "FROM remote_tasks WHERE agent = ? AND task_id = ?",
            (agent, task_id),
        )
        return RemoteLink(*row) if row is not None else None

    async def remote_context(self, agent: str, owner: str, context_id: str, card_url: str) -> str:
        """The remote context the latest task of this owner's local context went to (``""`` for none)."""
        row = await self._db.fetch_one(
            "SELECT remote_context_id FROM remote_tasks WHERE agent = ? AND owner = ? AND context_id = ? "
            "AND card_url = ? ORDER BY updated_ns DESC LIMIT 1",
            (agent, owner, context_id, card_url),
        )
        return str(row[0]) if row is not None else ""
