"""Failover between replicas on one PostgreSQL: a dead or paused replica's work is taken over while the others run.

Every ``SCAN_S`` each replica:

- takes the expired leases (``gateway.store.leases``) of workflow runs it hosts whose task is still
  submitted or working, and resumes each run from its last checkpoint (the engine replays finished
  steps, so none runs twice); a run that cannot resume (no checkpoint yet, its workflow changed)
  ends FAILED with the reason. Taking a lease is one conditional UPSERT: of replicas scanning at
  once, one wins.
- ends FAILED, with the reason, a run whose lease expired when no live replica hosts its workflow
  (the one that ran it died, and no survivor loads that workflow's agent file), once seen so for
  ``UNHOSTED_GRACE_S``. Each replica records the workflows it hosts (``workflow_hosts``, one row a
  workflow, kept in step with what it loads); a host counts while its process lives (its runner
  lock). The run's lease is taken before it is failed, and hosts are looked up again once it is
  held: a host that appears meanwhile finds the lease held, then the task ended, and a run that
  a live host may still take over is never failed.
- ends FAILED with the reason its own tasks stored running that no longer run here (their end could
  not be saved while PostgreSQL was unreachable) once seen so for ``DEAD_GRACE_S``;
- ends FAILED, with the reason, every other task left submitted or working by a process that is
  gone (its runner lock is free, ``Database.live_runners``) for at least ``DEAD_GRACE_S``: a plain
  agent's task cannot resume mid-run. The grace covers a live replica whose lock's session was cut
  (a database restart) and is being taken again. Followers on every replica see the end at once.

Bounds (lease ``TTL_S`` 5 s, ``SCAN_S`` 1 s): a killed replica's workflow runs resume on another
replica within about 6 s of its last lease renewal (measured from kill -9 to the resumed step's
start: 4.9-5.4 s, ``tests/store/test_cluster_failover.py``), its plain tasks end FAILED within
about ``SCAN_S + DEAD_GRACE_S`` (4 s) of its death; a SIGTERM hands its runs over at once (resumed
about 1 s after the signal). A paused (SIGSTOP) replica loses its runs' leases the same way and,
when it continues, stops those runs before they run on; its plain tasks are left to it (its runner
lock is still held: they continue, and run nowhere else). Should its lock's session end while it is
paused (a pause longer than the network's patience), its plain tasks are ended FAILED as a dead
replica's are; once it continues it cannot write them again (``store.tasks.STAYS_ENDED``): the first
event or save it tries is refused, it stops the run there, and the task stays as it was ended. A run
no live replica hosts ends FAILED within about ``TTL_S + UNHOSTED_GRACE_S + 2 * SCAN_S`` (22 s) of its
replica's last renewal.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from a2a.types.a2a_pb2 import Task, TaskState

from gateway.errors import UnknownAgentError
from gateway.hosting.cluster import Cluster
from gateway.hosting.local_tasks import LocalRequestHandler
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.resume import resume_run, why_not_resumable
from gateway.push.sender import queue_stored_tasks
from gateway.spec import AgentSpec, WorkflowRuntime
from gateway.store.database import Database, Params
from gateway.store.leases import Key, LeaseBook
from gateway.store.outbox import SqlPushOutbox
from gateway.store.tasks import INTERRUPTIBLE, fail_task
from gateway.telemetry import metrics

logger = logging.getLogger(__name__)

SCAN_S = 1.0
"""How often a replica looks for expired leases and for tasks of dead replicas."""
DEAD_GRACE_S = 3.0
"""How long a task's replica must have been seen gone before the task is ended FAILED (a live replica whose
lock's session was cut takes it again within about a second: ``store.postgres.RELOCK_DELAYS_S``)."""
UNHOSTED_GRACE_S = 15.0
"""How long a run whose lease expired must have been seen hosted by no live replica before it is ended FAILED:
long enough for the only replica hosting its workflow to restart (a rolling deploy) and resume it instead."""
TAKE_BATCH = 16
PRUNE_EVERY_SCANS = 60
KEEP_LEASES_S = 3600
"""The lease row of a run whose task ended is deleted this long after the lease was last held."""
ORPHAN_REASON = (
    "The end of this task could not be saved while the task store was unreachable, and the task no longer runs; "
    "send the request again."
)
DEAD_REASON = (
    "The gateway replica running this task stopped before the task finished, and an agent's task cannot resume "
    "on another replica; send the request again."
)
NO_CHECKPOINT_REASON = (
    "The gateway replica running this workflow run stopped before its first checkpoint; send the request again."
)


def unhosted_reason(agent: str) -> str:
    """The failure message of a run of workflow ``agent`` that no live replica hosts."""
    return (
        f"No live gateway replica hosts the workflow {agent}: the replica running this run stopped and no other "
        "can resume it; send the request again."
    )


_STATES = ", ".join(str(int(s)) for s in INTERRUPTIBLE)
_OPEN = ", ".join(
    str(int(s)) for s in (*INTERRUPTIBLE, TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED)
)
_EXPIRED = (  # the runs of workflows hosted here first (the last column): those are taken over
    "SELECT l.agent, l.owner, l.task_id, l.agent = ANY(?) AS hosted FROM leases l JOIN tasks t "
    "ON t.agent = l.agent AND t.owner = l.owner AND t.id = l.task_id "
    f"WHERE l.expires_at <= now() AND t.state IN ({_STATES}) "
    f"ORDER BY hosted DESC, l.expires_at LIMIT {TAKE_BATCH}"
)
_HOSTS = "SELECT agent, replica FROM workflow_hosts WHERE agent = ANY(?)"
_HOSTED_HERE = "INSERT INTO workflow_hosts (agent, replica) SELECT unnest(?::text[]), ? ON CONFLICT DO NOTHING"
_LEFT_RUNNING = (
    f"SELECT t.agent, t.owner, t.id, t.runner FROM tasks t WHERE t.state IN ({_STATES}) AND t.runner <> '' "
    "AND NOT EXISTS (SELECT 1 FROM leases l WHERE l.agent = t.agent AND l.owner = t.owner AND l.task_id = t.id)"
)

_PRUNE = (
    "DELETE FROM leases l WHERE l.expires_at < now() - make_interval(secs => ?) AND NOT EXISTS "
    "(SELECT 1 FROM tasks t WHERE t.agent = l.agent AND t.owner = l.owner AND t.id = l.task_id "
    f"AND t.state IN ({_OPEN}))"
)


class Failover:
    """This replica's part in taking over the work of replicas that died or stopped renewing their leases."""

    def __init__(
        self,
        db: Database,
        leases: LeaseBook,
        cluster: Cluster,
        specs: Callable[[], Mapping[str, AgentSpec]],
        handler: Callable[[str], LocalRequestHandler],
    ) -> None:
        self.db = db
        self.leases = leases
        self.cluster = cluster
        self._specs = specs
        self._handler = handler
        self._gone_since: dict[str, float] = {}  # runner -> when this replica first saw it gone
        self._orphan_since: dict[Key, float] = {}  # own task stored running -> when first seen not running here
        self._unhosted_since: dict[Key, float] = {}  # run with an expired lease -> when first seen with no live host
        self._recorded: frozenset[str] | None = None  # the workflows last recorded in ``workflow_hosts`` as here
        self._hosts_gone: set[str] = set()  # replicas whose host rows the last prune found gone
        self._resuming: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Scan every ``SCAN_S`` (with jitter, so replicas do not scan in step) until canceled."""
        scans = itertools.count(1)
        try:
            while True:
                try:
                    await self.record_hosted()
                except Exception as exc:
                    logger.warning("could not record the workflows hosted here: %s", exc)
                await asyncio.sleep(SCAN_S * random.uniform(0.75, 1.25))
                try:
                    await self.take_over()
                    await self.sweep()
                    if next(scans) % PRUNE_EVERY_SCANS == 0:
                        await self.prune()
                except Exception as exc:  # a database outage: try again next scan
                    logger.warning("failover scan failed: %s", exc)
        finally:
            for task in list(self._resuming):
                task.cancel()
            await asyncio.gather(*self._resuming, return_exceptions=True)

    def _workflows(self) -> frozenset[str]:
        return frozenset(name for name, spec in self._specs().items() if isinstance(spec.runtime, WorkflowRuntime))

    async def record_hosted(self, *, again: bool = False) -> None:
        """Record in ``workflow_hosts`` the workflows hosted here, when they changed (or ``again``: rows pruned
        while this replica's lock was briefly not held come back)."""
        workflows = self._workflows()
        statements: list[tuple[str, Params]] = [(_HOSTED_HERE, (sorted(workflows), self.db.runner))]
        if workflows != self._recorded:
            statements.insert(0, ("DELETE FROM workflow_hosts WHERE replica = ?", (self.db.runner,)))
        elif not again:
            return
        await self.db.write_many(statements)
        self._recorded = workflows

    async def take_over(self) -> list[Key]:
        """Take the expired leases of runs hosted here and resume them; the keys taken.

        The expired runs of workflows hosted nowhere alive are ended FAILED (``end_unhosted``).
        """
        taken, unhosted = [], []
        for agent, owner, task_id, hosted in await self.db.fetch_all(_EXPIRED, (sorted(self._workflows()),)):
            key = (str(agent), str(owner), str(task_id))
            if not hosted:
                unhosted.append(key)
                continue
            if key in self.leases.held or await self.leases.take(key) is None:
                continue  # running here already, or another replica won it
            taken.append(key)
            metrics.FAILOVER.labels("run_taken_over").inc()
            await self._resume(key)
        await self.end_unhosted(unhosted)
        return taken

    async def _live_hosts(self, agents: set[str]) -> set[str]:
        """Those of ``agents`` that a live replica hosts (as recorded in ``workflow_hosts``)."""
        if not agents:
            return set()
        rows = [(str(agent), str(replica)) for agent, replica in await self.db.fetch_all(_HOSTS, (sorted(agents),))]
        live = await self.db.live_runners({replica for _, replica in rows}) if rows else set()
        return {agent for agent, replica in rows if replica in live}

    async def end_unhosted(self, keys: list[Key]) -> list[Key]:
        """End FAILED those runs of ``keys`` (expired leases of workflows not hosted here) that no live replica
        has hosted for ``UNHOSTED_GRACE_S``; the keys ended."""
        hosted = await self._live_hosts({key[0] for key in keys})
        now = time.monotonic()
        self._unhosted_since = {key: self._unhosted_since.get(key, now) for key in keys if key[0] not in hosted}
        ended = []
        for key, since in list(self._unhosted_since.items()):
            if now - since >= UNHOSTED_GRACE_S and await self._end_unhosted(key):
                del self._unhosted_since[key]
                ended.append(key)
        return ended

    async def _end_unhosted(self, key: Key) -> bool:
        lease = await self.leases.take(key)
        if lease is None:
            return False  # a host (or another replica ending it) holds it now
        try:
            # Held now: a host that appears from here on cannot take the run over, so it is looked for once more.
            if await self._live_hosts({key[0]}):
                return False
            reason = unhosted_reason(key[0])
            if not await fail_task(self.db, key, reason):
                return False
            metrics.FAILOVER.labels("run_ended_unhosted").inc()
            logger.warning("run %s of %s ended FAILED: no live replica hosts its workflow", key[2], key[0])
            record = await SqlRunStore(self.db).get(*key)
            if record is not None:
                record.state = "failed"
                record.lease = lease
                await SqlRunStore(self.db).save(record)
            await self._ended(key)
            return True
        finally:
            await self.leases.release(lease)

    async def _resume(self, key: Key) -> None:
        lease = self.leases.held[key]
        row = await self.db.fetch_one("SELECT state FROM tasks WHERE agent = ? AND owner = ? AND id = ?", key)
        if row is None or row[0] not in INTERRUPTIBLE:  # ended since this scan read it (``end_unhosted``)
            await self.leases.release(lease)
            return
        record = await SqlRunStore(self.db).get(*key)
        reason = NO_CHECKPOINT_REASON if record is None else why_not_resumable(record, self._specs().get(key[0]))
        if record is None or reason:
            if await fail_task(self.db, key, reason):
                await self._ended(key)
            if record is not None:
                record.state = "failed"
                record.lease = lease
                await SqlRunStore(self.db).save(record)
            await self.leases.release(lease)
            logger.warning("run %s of %s cannot resume: %s", key[2], key[0], reason)
            return
        steps, epoch = len(record.steps), lease.epoch
        logger.warning("taking over run %s of %s after %d step(s) (epoch %d)", key[2], key[0], steps, epoch)
        task = asyncio.ensure_future(self._resumed(key, record))
        self._resuming.add(task)
        task.add_done_callback(self._resuming.discard)

    async def _resumed(self, key: Key, record: RunRecord) -> None:
        await resume_run(self._handler(key[0]), record, self.db)
        lease = self.leases.held.get(key)
        if lease is not None and (lease.task is None or lease.task.done()):
            await self.leases.release(lease)  # the execution ended without a save that releases it

    async def sweep(self) -> list[str]:
        """End FAILED the tasks (not leased runs) of replicas gone for ``DEAD_GRACE_S``; their ids.

        Also this replica's own tasks stored running that have not run here for ``DEAD_GRACE_S``: their
        end was not saved (the store was unreachable then), and nothing else would ever end them.
        """
        rows = await self.db.fetch_all(_LEFT_RUNNING)
        own = [row for row in rows if row[3] == self.db.runner]
        rows = [row for row in rows if row[3] != self.db.runner]
        ended = await self._orphans(own)
        runners = {str(row[3]) for row in rows}
        live = await self.db.live_runners(runners) if runners else set()
        now = time.monotonic()
        for runner in list(self._gone_since):
            if runner not in runners or runner in live:
                del self._gone_since[runner]
        for agent, owner, task_id, runner in rows:
            if runner in live:
                continue
            if now - self._gone_since.setdefault(runner, now) < DEAD_GRACE_S:
                continue
            key = (str(agent), str(owner), str(task_id))
            if await fail_task(self.db, key, DEAD_REASON):
                metrics.FAILOVER.labels("task_ended_replica_gone").inc()
                await self._ended(key)
                ended.append(key[2])
        if ended:
            logger.warning("ended %d task(s) of gone replicas FAILED: %s", len(ended), ", ".join(ended))
        return ended

    async def _orphans(self, rows: list[tuple[Any, ...]]) -> list[str]:
        now = time.monotonic()
        orphans: dict[Key, float] = {}
        for agent, owner, task_id, _ in rows:
            key = (str(agent), str(owner), str(task_id))
            try:
                running = await self._handler(key[0]).runs_here(key[2])
            except UnknownAgentError:
                running = False
            if not running:
                orphans[key] = self._orphan_since.get(key, now)
        self._orphan_since = orphans
        ended = []
        for key, since in orphans.items():
            if now - since >= DEAD_GRACE_S and await fail_task(self.db, key, ORPHAN_REASON):
                metrics.FAILOVER.labels("task_ended_unsaved").inc()
                await self._ended(key)
                ended.append(key[2])
        return ended

    async def prune(self) -> None:
        """Delete the leases of runs whose task finished (or is gone) ``KEEP_LEASES_S`` ago: none can run again.

        Also the ``workflow_hosts`` rows of replicas found gone by this prune and the one before (a live
        replica whose lock's session was cut is not gone for that long), and record this replica's again.
        """
        await self.db.write(_PRUNE, (KEEP_LEASES_S,))
        replicas = {str(row[0]) for row in await self.db.fetch_all("SELECT DISTINCT replica FROM workflow_hosts")}
        gone = replicas - await self.db.live_runners(replicas) if replicas else set()
        if gone & self._hosts_gone:
            await self.db.write("DELETE FROM workflow_hosts WHERE replica = ANY(?)", (sorted(gone & self._hosts_gone),))
        self._hosts_gone = gone
        await self.record_hosted(again=True)

    async def _ended(self, key: Key) -> None:
        """Followers see the task's stored end; its push configs are told."""
        row = await self.db.fetch_one("SELECT data FROM tasks WHERE agent = ? AND owner = ? AND id = ?", key)
        if row is not None:
            await self.cluster.publish_end(key[0], key[1], Task.FromString(bytes(row[0])))
        await queue_stored_tasks(SqlPushOutbox(self.db), [key[2]])
