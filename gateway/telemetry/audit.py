"""The audit trail: who called what, when, with what outcome; every refusal; admin and trust changes.

One append-only table (``audit`` in the gateway's database, both dialects). A row holds the
caller's id, the agent, the skill a message named, the task id, the binding, the method, the
outcome and a short detail (a refusal's reason, an admin action's key id) — never a message's
contents, a token or a key. Rows are written in batches: every row recorded during one pass of
the event loop goes in one ``write_many``, which on SQLite joins the writer's own group commit.

A failed write is logged as an error and counted (``switchboard_audit_write_failures_total``).
With ``audit_required`` a call's row must be committed before its answer goes out; if it cannot
be, the caller gets 503 instead of an answer (``gateway.telemetry.access``). Rows older than the
retention are deleted periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.logs import clip
from gateway.store.database import Database
from gateway.telemetry.metrics import AUDIT_WRITE_FAILURES

logger = logging.getLogger(__name__)

COLUMNS = ("at_ns", "kind", "caller", "agent", "skill", "task_id", "binding", "method", "outcome", "detail")
INSERT = f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
PRUNE = "DELETE FROM audit WHERE at_ns < ?"
PRUNE_EVERY_S = 3600.0
DETAIL_CHARS = 200

Row = tuple[int, str, str, str, str, str, str, str, str, str]


@dataclass(frozen=True)
class AuditEntry:
    """One row of the trail, as read back."""

    at_ns: int
    kind: str
    caller: str
    agent: str
    skill: str
    task_id: str
    binding: str
    method: str
    outcome: str
    detail: str

    def json(self) -> dict[str, Any]:
        """The row as a JSON object (``at`` in UTC ISO 8601)."""
        return {"at": iso(self.at_ns), **{name: getattr(self, name) for name in COLUMNS[1:]}}


def iso(at_ns: int) -> str:
    """``at_ns`` as UTC ISO 8601 with milliseconds."""
    seconds, rest = divmod(at_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{rest // 1_000_000:03d}Z"


class AuditLog:
    """Records rows, written in batches through the store's writer; prunes old ones."""

    def __init__(self, db: Database, retention_s: float = 0.0, clock: Callable[[], int] = time.time_ns) -> None:
        self._db = db
        self._retention_s = retention_s
        self._clock = clock
        self._rows: list[Row] = []
        self._batch: asyncio.Future[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()

    def record(
        self,
        kind: str,
        *,
        caller: str = "",
        agent: str = "",
        skill: str = "",
        task_id: str = "",
        binding: str = "",
        method: str = "",
        outcome: str = "",
        detail: str = "",
    ) -> asyncio.Future[None]:
        """Queue a row; the future resolves when its batch is committed (raises if it could not be)."""
        row = (self._clock(), kind, caller, agent, skill, task_id, binding, method, outcome, clip(detail, DETAIL_CHARS))
        self._rows.append(row)
        if self._batch is None:
            loop = asyncio.get_running_loop()
            self._batch = loop.create_future()
            self._batch.add_done_callback(_retrieved)
            loop.call_soon(self._flush)
        return self._batch

    def _flush(self) -> None:
        rows, batch = self._rows, self._batch
        self._rows, self._batch = [], None
        if batch is None or not rows:
            return
        task = asyncio.ensure_future(self._write(rows, batch))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, rows: Sequence[Row], batch: asyncio.Future[None]) -> None:
        try:
            await self._db.write_many([(INSERT, row) for row in rows])
        except Exception as exc:  # the trail must not take the gateway down; it says so loudly instead
            AUDIT_WRITE_FAILURES.inc(len(rows))
            logger.error("audit: %d row(s) NOT written: %s: %s", len(rows), type(exc).__name__, exc)
            if not batch.done():
                batch.set_exception(exc)
            return
        if not batch.done():
            batch.set_result(None)

    async def flush(self) -> None:
        """Write what is queued now, and wait for every write under way."""
        self._flush()
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)

    async def prune(self) -> int:
        """Delete the rows older than the retention (none with retention 0); how many."""
        if self._retention_s <= 0:
            return 0
        return await self._db.write(PRUNE, (self._clock() - int(self._retention_s * 1e9),))

    async def keep_pruning(self, every_s: float = PRUNE_EVERY_S) -> None:
        """Prune now and every ``every_s`` until cancelled."""
        while True:
            try:
                pruned = await self.prune()
                if pruned:
                    logger.info("audit: %d row(s) past the retention deleted", pruned)
            except Exception as exc:  # retried next time
                logger.warning("audit: pruning failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(every_s)


def _retrieved(batch: asyncio.Future[None]) -> None:
    if not batch.cancelled():
        batch.exception()  # a failure was logged and counted; nobody has to await it


def query_sql(since_ns: int, caller: str, agent: str, limit: int) -> tuple[str, list[Any]]:
    """The SELECT for ``switchboard audit``: newest last, at most ``limit`` rows."""
    where, params = ["at_ns >= ?"], [since_ns]
    if caller:
        where.append("caller = ?")
        params.append(caller)
    if agent:
        where.append("agent = ?")
        params.append(agent)
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit WHERE {' AND '.join(where)} ORDER BY at_ns DESC LIMIT ?"
    return sql, [*params, limit]
