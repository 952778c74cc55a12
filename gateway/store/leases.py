"""Leases on running workflow runs (PostgreSQL only): one owner replica at a time, fenced by an epoch.

A run's lease is a row of ``leases`` keyed by its task (agent, owner, task id): the replica holding
it, a fencing ``epoch`` and an expiry. Every time is PostgreSQL's (``now()``): a replica's own clock
never decides whether a lease is live, so a replica whose clock is seconds off steals nothing.

- A run takes its lease when it starts, continues (a follow-up) or resumes: free (no row, released,
  or expired) it is taken with the epoch raised by one; a live one is refused.
- ``LeaseBook.beat`` renews every lease this replica holds in one statement every ``BEAT_S``; a
  lease the beat did not renew (expired, taken over) is lost.
- Fencing: the run's checkpoint and task writes carry the epoch (``fence_clause``): the database
  refuses a write whose lease is no longer held at that epoch, or released at it (the run's last
  writes may land after its release, until another replica takes the lease), and ``LeaseLostError``
  is raised (and the lease is lost here too). ``switchboard_fence`` locks the lease row: a takeover
  waits for the write's commit, or the write sees the new epoch.
- A lease is also lost locally, on the monotonic clock, ``TTL_S - MARGIN_S`` after the beat that
  last renewed it was sent, which is before any other replica can see it expired: then the run's
  task is canceled at once (a timer callback, so a replica resumed after a pause cancels the run
  before its code runs on) and writes nothing more. A database outage longer than that stops the
  replica's runs; they resume from their checkpoints once it is back (``gateway.hosting.failover``).
- A run's lease is released (free at once, epoch kept) when its task is saved finished or waiting
  for input, and on a graceful shutdown (handing the run over to another replica).

``TTL_S`` is 5 s: a dead replica's runs are taken over by another within about ``TTL_S + SCAN_S``
(``gateway.hosting.failover``) plus the time to resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from a2a.types.a2a_pb2 import TaskState

from gateway.errors import GatewayError
from gateway.store.database import Database, Params
from gateway.telemetry import metrics

logger = logging.getLogger(__name__)

TTL_S = 5.0
"""How long a lease lives past its last renewal, on the database's clock."""
BEAT_S = 1.0
"""How often a replica renews its leases."""
MARGIN_S = 1.0
"""A replica gives a lease up locally this long before the database could see it expire (clock-rate drift)."""
TOMBSTONE_S = 60.0
"""A lost or handed-over lease is kept this long, refusing the run's late writes on this replica."""
FENCE_SQLSTATE = "SB001"

LEASE_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leases (
        agent TEXT NOT NULL,
        owner TEXT NOT NULL,
        task_id TEXT NOT NULL,
        replica TEXT NOT NULL,
        epoch BIGINT NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (agent, owner, task_id))""",
    "CREATE INDEX IF NOT EXISTS leases_by_replica ON leases (replica)",
    "CREATE INDEX IF NOT EXISTS leases_by_expiry ON leases (expires_at)",
    # The workflows each replica hosts (gateway.hosting.failover): a run no live replica hosts is ended FAILED.
    """CREATE TABLE IF NOT EXISTS workflow_hosts (
        agent TEXT NOT NULL,
        replica TEXT NOT NULL,
        PRIMARY KEY (agent, replica))""",
    "CREATE INDEX IF NOT EXISTS workflow_hosts_by_replica ON workflow_hosts (replica)",
    f"""CREATE OR REPLACE FUNCTION switchboard_fence(a TEXT, o TEXT, t TEXT, r TEXT, e BIGINT) RETURNS INTEGER AS $$
    BEGIN
        PERFORM 1 FROM leases WHERE agent = a AND owner = o AND task_id = t AND epoch = e AND replica IN (r, '')
            FOR SHARE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'the lease of task % is no longer held at epoch %', t, e USING ERRCODE = '{FENCE_SQLSTATE}';
        END IF;
        RETURN 1;
    END $$ LANGUAGE plpgsql""",
)
"""The lease table and the fence function (created with PostgreSQL's other cluster tables)."""

_TAKE = (
    "INSERT INTO leases (agent, owner, task_id, replica, epoch, expires_at) "
    "VALUES (?, ?, ?, ?, 1, now() + make_interval(secs => ?)) "
    "ON CONFLICT (agent, owner, task_id) DO UPDATE SET replica = excluded.replica, epoch = leases.epoch + 1, "
    "expires_at = excluded.expires_at WHERE leases.replica = '' OR leases.expires_at <= now() RETURNING epoch"
)
_FINISHED = ", ".join(
    str(int(s))
    for s in (
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    )
)
_BEAT = (
    "UPDATE leases l SET expires_at = now() + make_interval(secs => ?) WHERE l.replica = ? AND l.expires_at > now() "
    "AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.agent = l.agent AND t.owner = l.owner AND t.id = l.task_id "
    f"AND t.state IN ({_FINISHED})) RETURNING l.agent, l.owner, l.task_id, l.epoch"
)
"""Renews this replica's leases, but not one whose task has finished (its run ended without releasing it)."""
_RELEASE = (
    "UPDATE leases SET replica = '', expires_at = now() WHERE agent = ? AND owner = ? AND task_id = ? "
    "AND replica = ? AND epoch = ?"
)

Key = tuple[str, str, str]
"""(agent, owner, task id)."""


class LeaseLostError(GatewayError):
    """A write of a run whose lease this replica no longer holds: another replica may be running it."""

    message = "this replica no longer holds the run's lease"
    reason = "lease-lost"


def fence_clause(key_columns: str) -> str:
    """The ``ON CONFLICT ... DO UPDATE`` condition that refuses a write without the lease (two parameters)."""
    return f" WHERE switchboard_fence({key_columns}, ?, ?) = 1"


@dataclass(eq=False)
class Lease:
    """A lease this replica holds (or held: ``lost``)."""

    key: Key
    epoch: int
    replica: str
    renewed: float  # the monotonic time the acquire or beat that last renewed it was sent
    lost: bool = False
    released: bool = False
    task: asyncio.Task[Any] | None = None
    """The asyncio task running the run: canceled when the lease is lost."""
    _guard: asyncio.TimerHandle | None = field(default=None, repr=False)
    _book: LeaseBook | None = field(default=None, repr=False)

    def refused(self) -> None:
        """The database refused a write fenced with this lease: it is lost (the run is canceled, as on a beat)."""
        if self._book is not None:
            self._book.lose(self, "a write was refused: another replica holds it now")
        else:
            self.lost = True

    def fence(self) -> Params:
        """The parameters of ``fence_clause``; ``LeaseLostError`` once lost."""
        if self.lost:
            raise LeaseLostError(f"the lease of task {self.key[2]} was lost")
        return (self.replica, self.epoch)


class LeaseBook:
    """This replica's leases: taken, renewed by one statement per beat, released, given up when lost."""

    def __init__(self, db: Database, replica: str) -> None:
        self.db = db
        self.replica = replica
        self.held: dict[Key, Lease] = {}
        self._beating: asyncio.Task[None] | None = None

    async def take(self, key: Key) -> Lease | None:
        """Take the lease of ``key`` when it is free; None when another replica holds it live."""
        held = self.held.get(key)
        if held is not None and not held.lost:
            return held
        sent = time.monotonic()
        row = await self.db.fetch_one(_TAKE, (*key, self.replica, TTL_S))
        if row is None:
            return None
        lease = Lease(key, int(row[0]), self.replica, sent, _book=self)
        self.held[key] = lease
        self._guard(lease)
        return lease

    def run_by(self, lease: Lease, task: asyncio.Task[Any] | None) -> None:
        """``task`` runs the leased run: canceled when the lease is lost."""
        lease.task = task
        if lease.lost and task is not None:
            task.cancel()

    async def release(self, lease: Lease, *, handover: bool = False) -> None:
        """Free the lease at once: its run ended or paused, or (``handover``) is handed to another replica.

        A handed-over run's late writes from this replica stay refused (``TOMBSTONE_S``); nothing when it was lost.
        """
        if lease.lost or lease.released:
            return
        lease.released = True
        if handover:  # the run's late writes here are refused from now on
            lease.lost = True
            self._tombstone(lease)
        else:  # its late writes are still its own until another replica takes the lease (a new epoch)
            self._forget(lease)
        try:
            await self.db.write(_RELEASE, (*lease.key, self.replica, lease.epoch))
        except Exception as exc:  # it expires on its own within TTL_S
            logger.warning("could not release the lease of task %s: %s", lease.key[2], exc)

    async def release_all(self) -> None:
        """Hand every run over (a graceful shutdown): each lease is free at once."""
        await asyncio.gather(*(self.release(lease, handover=True) for lease in list(self.held.values())))

    def start(self) -> None:
        """Renew the leases every ``BEAT_S`` until ``stop``."""
        self._beating = asyncio.ensure_future(self._beat_forever())

    async def stop(self) -> None:
        """Stop renewing (leases still held expire on their own)."""
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
        for lease in self.held.values():
            if lease._guard is not None:
                lease._guard.cancel()

    async def _beat_forever(self) -> None:
        while True:
            try:
                await self.beat()
            except Exception as exc:  # the local guard gives the leases up if this goes on
                logger.warning("could not renew this replica's leases: %s", exc)
            await asyncio.sleep(BEAT_S)

    async def beat(self) -> None:
        """Renew every lease held (one statement); those not renewed are lost."""
        if not self.held:
            return
        sent = time.monotonic()
        rows = await self.db.fetch_all(_BEAT, (TTL_S, self.replica))
        renewed = {(str(a), str(o), str(t)): int(e) for a, o, t, e in rows}
        for lease in list(self.held.values()):
            if lease.lost or lease.released:
                continue
            if renewed.get(lease.key) == lease.epoch:
                lease.renewed = max(lease.renewed, sent)
                self._guard(lease)
            elif lease.renewed < sent:  # it was held before this beat was sent, and not renewed
                self.lose(lease, "not renewed (expired or taken over)")

    def lose(self, lease: Lease, why: str) -> None:
        """The lease is lost: the run's task is canceled now and writes nothing more."""
        if lease.lost or lease.released:
            return
        lease.lost = True
        if lease._guard is not None:
            lease._guard.cancel()
        logger.warning("lost the lease of run %s of %s (epoch %d): %s", lease.key[2], lease.key[0], lease.epoch, why)
        metrics.FAILOVER.labels("lease_lost").inc()
        if lease.task is not None:
            lease.task.cancel()
        self._tombstone(lease)

    def _tombstone(self, lease: Lease) -> None:
        """Keep a lost lease a while, so the run's late writes here are refused rather than unfenced."""
        if lease._guard is not None:
            lease._guard.cancel()
        lease._guard = asyncio.get_running_loop().call_later(TOMBSTONE_S, self._forget, lease)

    def _guard(self, lease: Lease) -> None:
        if lease._guard is not None:
            lease._guard.cancel()
        loop = asyncio.get_running_loop()
        # loop.time() is time.monotonic(): the deadline passes while the process is paused, and this
        # callback runs in the first loop pass after it resumes, before the run's tasks step on.
        deadline = lease.renewed + TTL_S - MARGIN_S
        lease._guard = loop.call_at(deadline, self.lose, lease, f"not renewed for {TTL_S - MARGIN_S:g} s")

    def _forget(self, lease: Lease) -> None:
        if self.held.get(lease.key) is lease:
            del self.held[lease.key]
        if lease._guard is not None:
            lease._guard.cancel()
            lease._guard = None


async def leased_keys(db: Database) -> set[Key]:
    """The tasks with a lease row (their runs are taken over through leases, never by a start-up sweep)."""
    rows = await db.fetch_all("SELECT agent, owner, task_id FROM leases")
    return {(str(a), str(o), str(t)) for a, o, t in rows}
