"""Work items shared by the replicas on one PostgreSQL: a step posted by one replica, run by whichever claims it.

A distributed work queue (``work-queue`` with ``distribute: true``) posts each step attempt as a
row of ``work_items``: the agent, the child message, the run's owner and its caller
(``Identity.to_json``: name and scopes, never a credential), ``queued``; and NOTIFYs. Every
replica's ``WorkItems`` claims queued rows of the agents it runs in-process with one statement,
``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED LIMIT free)``, so replicas claiming at
once never take the same row and none takes more than its free slots for the agent
(``SLOTS_PER_AGENT``, and the free runs of its ``admission.max_concurrent`` when it has one). The
claimer runs the message on the agent's ``LocalRunner`` as the run's caller, with its scopes, as the
posting replica would have (``item_user``: an item posted before callers were kept runs as its
owner with no scopes, so what it needs is refused, never granted): an ordinary child task, linked
to the run, that any replica can get, follow or cancel. Its final task (or its failure, and whether
admission control refused it: ``busy``) is written back, only while the row is still claimed by
this replica, and NOTIFYd; the posting replica (``post``/``result``) reads it as the step's end.

Cancel: ``withdraw`` deletes the row; a claimer running it (told by NOTIFY, or seeing on its poll
that the row is no longer its claim) cancels the child through the runner's own cancel path, which
leaves the task CANCELED. A replica that dies while holding claims (its runner lock free for
``DEAD_GRACE_S``) has them queued again and claimed by another; its child tasks end FAILED by
failover. One that stops gracefully queues its claims again at once. Items posted by a replica
that died are deleted, by the sweep or when its run, resumed elsewhere, posts what it still needs. NOTIFYs only
wake: every replica also reads the table every ``POLL_S``, so a lost one costs latency, never an
item.

Items are claimed in the order they were posted: a work queue posts them in its priority order.

``/metrics`` (``switchboard_work_items_total{agent,event}``) counts on each replica the items it
posted, claimed, finished (its end written), queued again (a gone replica's claims, or its own
stray ones) and withdrawn; ``switchboard_work_item_claim_seconds{agent}`` is the time from an
item's posting to its claim here (the posting replica's clock against this one's: hosts' clocks
are assumed in step, a negative difference counts as 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Message, Task, TaskState, TaskStatusUpdateEvent

from gateway.auth.policy import Identity, RunOwner, a2a_user, caller_of
from gateway.errors import AgentBusyError
from gateway.hosting.cluster import EVENT, Cluster, stored_event
from gateway.hosting.local_tasks import LocalRunner
from gateway.store.database import Database
from gateway.telemetry import metrics

logger = logging.getLogger(__name__)

CHANNEL = "switchboard_work_items"
POLL_S = 1.0
"""The backstop: each replica reads the table this often even when no NOTIFY came."""
SLOTS_PER_AGENT = 4
"""How many items of one agent a replica runs at once."""
DEAD_GRACE_S = 3.0
"""How long a claimer must have been seen gone before its items are queued again (as ``failover``'s grace)."""

_CLAIM = (
    "UPDATE work_items SET state = 'claimed', claimed_by = ?, claimed_ns = ?, claims = claims + 1 "
    "WHERE id IN (SELECT id FROM work_items WHERE state = 'queued' AND agent = ? "
    "ORDER BY posted_ns LIMIT ? FOR UPDATE SKIP LOCKED) RETURNING id, owner, caller, message, posted_ns"
)
_FINISH = (
    "WITH f AS (UPDATE work_items SET state = 'done', result = ?, error = ?, retryable = ?, busy = ? "
    "WHERE id = ? AND state = 'claimed' AND claimed_by = ? RETURNING id) "
    f"SELECT pg_notify('{CHANNEL}', 'done ' || id) FROM f"
)


@dataclass(frozen=True)
class ItemEnd:
    """What came of an item: the child's final task, or why there is none."""

    task: Task | None
    error: str = ""
    retryable: bool = False
    busy: bool = False
    """Refused by the agent's admission control on the claiming replica (``AgentBusyError``)."""


class WorkItems:
    """This replica's side of the shared work items: it posts items, claims others' and waits for results."""

    def __init__(self, cluster: Cluster, runners: Callable[[], dict[str, LocalRunner]]) -> None:
        self._cluster = cluster
        self._runners = runners  # the agents this replica runs in-process, by name
        self._running: dict[str, asyncio.Task[None]] = {}  # claimed items running here, by item id
        self._load: dict[str, int] = {}  # claimed items running here per agent
        self._waiters: dict[str, asyncio.Event] = {}  # items posted here, woken when one ends
        self._started: dict[str, asyncio.Event] = {}  # items posted here, woken when a claimer starts one
        self._wake = asyncio.Event()
        self._gone_since: dict[str, float] = {}
        self._loop: asyncio.Task[None] | None = None
        cluster.on_notify(CHANNEL, self._notified)

    @property
    def db(self) -> Database:
        """The shared database."""
        return self._cluster.db

    @property
    def active(self) -> bool:
        """Whether items are shared (PostgreSQL, cluster started)."""
        return self._cluster.active

    def start(self) -> None:
        """Start claiming (after the cluster started)."""
        if self.active:
            self._loop = asyncio.ensure_future(self._claim_loop())

    async def close(self) -> None:
        """Stop claiming and hand the items running here over: stopped here, queued again for another replica."""
        tasks = [t for t in (self._loop, *self._running.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if not self.active:
            return
        try:
            await self.db.write_many(
                [
                    (
                        "UPDATE work_items SET state = 'queued', claimed_by = '', task_id = '' "
                        "WHERE state = 'claimed' AND claimed_by = ?",
                        (self.db.runner,),
                    ),
                    ("SELECT pg_notify(?, ?)", (CHANNEL, "new")),
                ]
            )
        except Exception as exc:  # taken again once this process is seen gone (``DEAD_GRACE_S``)
            logger.warning("could not hand work items over: %s", exc)

    # -- posting side ------------------------------------------------------------------------

    async def post(self, run_id: str, agent: str, message: Message, context: ServerCallContext) -> str:
        """Queue ``message`` for ``agent`` as the run's owner; the item's id."""
        item = uuid.uuid4().hex
        self._waiters[item] = asyncio.Event()
        owner = context.user.user_name if context.user.is_authenticated else ""
        caller = caller_of(context.user)
        await self.db.write_many(
            [
                # A run resumed here withdraws what an earlier execution of it posted (its replica is gone).
                ("DELETE FROM work_items WHERE run_id = ? AND posted_by <> ?", (run_id, self.db.runner)),
                (
                    "INSERT INTO work_items (id, run_id, agent, owner, caller, message, posted_by, posted_ns) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        item,
                        run_id,
                        agent,
                        owner,
                        caller.to_json() if caller is not None else "",
                        message.SerializeToString(),
                        self.db.runner,
                        time.time_ns(),
                    ),
                ),
                ("SELECT pg_notify(?, ?)", (CHANNEL, f"new {agent}")),
            ]
        )
        metrics.WORK_ITEMS.labels(agent, "posted").inc()
        return item

    async def result(self, item: str) -> ItemEnd:
        """Wait for item ``item`` to end and forget it."""
        waiter = self._waiters.setdefault(item, asyncio.Event())
        try:
            while True:
                waiter.clear()
                row = await self.db.fetch_one(
                    "SELECT result, error, retryable, busy FROM work_items WHERE id = ? AND state = 'done'", (item,)
                )
                if row is not None:
                    await self.db.write("DELETE FROM work_items WHERE id = ?", (item,))
                    task = Task.FromString(bytes(row[0])) if row[0] is not None else None
                    return ItemEnd(task, str(row[1]), bool(row[2]), bool(row[3]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), POLL_S)
        finally:
            self._waiters.pop(item, None)

    async def follow(self, item: str, progress: Callable[[str], Awaitable[None]]) -> None:
        """Pass on the working status texts of item ``item``'s child, wherever it runs, until canceled.

        They are read from the child's live events (``task_events``, appended by the claimer's runner).
        """
        started = self._started.setdefault(item, asyncio.Event())
        try:
            task_id = ""
            while not task_id:
                started.clear()
                task_id = await self.task_id(item)
                if not task_id:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(started.wait(), POLL_S)
        finally:
            self._started.pop(item, None)
        waiter = self._cluster.waiter(task_id)
        cursor = 0
        try:
            while True:
                waiter.clear()
                rows = await self.db.fetch_all(
                    "SELECT seq, kind, data FROM task_events WHERE task_id = ? AND seq > ? ORDER BY seq",
                    (task_id, cursor),
                )
                for seq, kind, data in rows:
                    cursor = int(seq)
                    text = _working_text(stored_event(bytes(data))) if kind == EVENT else ""
                    if text:
                        await progress(text)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), POLL_S)
        finally:
            self._cluster.forget(task_id, waiter)

    async def task_id(self, item: str) -> str:
        """The child task of item ``item`` once a claimer started it, else ``""``."""
        row = await self.db.fetch_one("SELECT task_id FROM work_items WHERE id = ?", (item,))
        return str(row[0]) if row is not None else ""

    async def withdraw(self, item: str) -> bool:
        """Cancel item ``item``: not run if still queued, its child canceled if running; whether it had not ended."""
        row = await self.db.fetch_one("DELETE FROM work_items WHERE id = ? RETURNING state, agent", (item,))
        if row is not None and row[0] == "claimed":
            await self.db.write("SELECT pg_notify(?, ?)", (CHANNEL, f"cancel {item}"))
        if row is None or row[0] == "done":
            return False
        metrics.WORK_ITEMS.labels(str(row[1]), "withdrawn").inc()
        return True

    # -- claiming side -----------------------------------------------------------------------

    def _notified(self, payload: str) -> None:
        kind, _, rest = payload.partition(" ")
        if kind in ("done", "started"):
            waiter = (self._waiters if kind == "done" else self._started).get(rest)
            if waiter is not None:
                waiter.set()
        elif kind == "cancel":
            running = self._running.get(rest)
            if running is not None:
                running.cancel()
        else:  # a new item, or the LISTEN session came back ("")
            for waiter in self._waiters.values():
                waiter.set()
            self._wake.set()

    async def _claim_loop(self) -> None:
        checked = -POLL_S
        while True:
            self._wake.clear()
            try:
                # The orphan and claim checks (four round trips) run once per POLL_S, not on every wake:
                # every item posted on any replica wakes every replica, which then only claims.
                if time.monotonic() - checked >= POLL_S:
                    checked = time.monotonic()
                    await self._requeue_orphans()
                    await self._check_claims()
                await self._claim()
            except Exception as exc:
                logger.warning("could not claim work items: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _claim(self) -> None:
        queued = await self.db.fetch_all("SELECT DISTINCT agent FROM work_items WHERE state = 'queued'")
        runners = self._runners()
        for agent in {str(row[0]) for row in queued} & set(runners):
            runner = runners[agent]
            free = self._free(agent, runner)
            if free <= 0:
                continue
            now_ns = time.time_ns()
            rows = await self.db.fetch_all(_CLAIM, (self.db.runner, now_ns, agent, free))
            if rows:
                metrics.WORK_ITEMS.labels(agent, "claimed").inc(len(rows))
            waited = metrics.WORK_ITEM_CLAIM.labels(agent)
            for item, owner, caller, message, posted_ns in rows:
                waited.observe(max(0, now_ns - int(posted_ns)) / 1e9)
                self._load[agent] = self._load.get(agent, 0) + 1
                user = item_user(str(owner), str(caller))
                task = asyncio.ensure_future(self._run(item, agent, runner, user, Message.FromString(message)))
                self._running[item] = task

    def _free(self, agent: str, runner: LocalRunner) -> int:
        """How many more items of ``agent`` this replica takes now: its slots, and its admission cap's free runs."""
        free = SLOTS_PER_AGENT - self._load.get(agent, 0)
        admission = runner.admission
        if admission is not None and admission.spec.max_concurrent is not None:
            free = min(free, admission.spec.max_concurrent - admission.running)
        return free

    async def _run(self, item: str, agent: str, runner: LocalRunner, user: User, message: Message) -> None:
        """Run a claimed item and write its end, while it is still this replica's claim."""
        try:
            end = await self._execute(item, agent, runner, user, message)
            if not await self.db.fetch_all(_FINISH, (*end, item, self.db.runner)):
                logger.warning("work item %s is no longer this replica's claim: its end is dropped", item)
            else:
                metrics.WORK_ITEMS.labels(agent, "finished").inc()
        except asyncio.CancelledError:
            pass  # withdrawn (the runner left the child canceled), handed over, or this replica is stopping
        except Exception as exc:  # the row stays claimed, and is queued again (``_check_claims``)
            logger.warning("could not write the end of work item %s: %s", item, exc)
        finally:
            self._running.pop(item, None)  # only now: until its end is written, the claim is not an orphan

    async def _execute(
        self, item: str, agent: str, runner: LocalRunner, user: User, message: Message
    ) -> tuple[bytes | None, str, bool, bool]:
        """The item's end as (final task, error, retryable, busy)."""

        async def started(task: Task) -> None:
            await self.db.write_many(
                [
                    ("UPDATE work_items SET task_id = ? WHERE id = ?", (task.id, item)),
                    ("SELECT pg_notify(?, ?)", (CHANNEL, f"started {item}")),
                ]
            )

        try:
            task = await runner.run(message, ServerCallContext(user=user), started=started)
            return task.SerializeToString(), "", False, False
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            return None, f"{agent}: its run was interrupted", True, False  # not canceled here: the step may retry
        except Exception as exc:
            retryable = getattr(exc, "retryable", False) is True
            return None, f"{agent}: {exc or type(exc).__name__}", retryable, isinstance(exc, AgentBusyError)
        finally:
            self._load[agent] -= 1
            self._wake.set()  # a slot is free

    async def _check_claims(self) -> None:
        """Stop the items running here whose row is no longer our claim (a cancel NOTIFY may be lost), and queue
        again the rows claimed by this replica that it does not run (whatever left them so, no run waits forever)."""
        running = list(self._running)
        rows = await self.db.fetch_all(
            "SELECT id FROM work_items WHERE id = ANY(?) AND state = 'claimed' AND claimed_by = ?",
            (running, self.db.runner),
        )
        ours = {str(row[0]) for row in rows}
        for item in running:
            task = self._running.get(item)
            if item not in ours and task is not None and not task.done():
                task.cancel()
        stray = await self.db.fetch_all(
            "UPDATE work_items SET state = 'queued', claimed_by = '', task_id = '' "
            "WHERE state = 'claimed' AND claimed_by = ? AND NOT (id = ANY(?)) RETURNING agent",
            (self.db.runner, list(self._running)),
        )
        if stray:
            _count_requeued(stray)
            logger.warning("queued %d work item(s) again: claimed by this replica, which does not run them", len(stray))
            self._wake.set()

    async def _requeue_orphans(self) -> None:
        """Queue again the claims of replicas gone for ``DEAD_GRACE_S``; withdraw the items of posters gone."""
        rows = await self.db.fetch_all(
            "SELECT DISTINCT claimed_by FROM work_items WHERE state = 'claimed' UNION "
            "SELECT DISTINCT posted_by FROM work_items"
        )
        runners = {str(row[0]) for row in rows if row[0]}
        now = time.monotonic()
        live = await self.db.live_runners(runners)
        for runner in live:
            self._gone_since.pop(runner, None)
        gone = [r for r in runners - live if now - self._gone_since.setdefault(r, now) >= DEAD_GRACE_S]
        if not gone:
            return
        await self.db.write("DELETE FROM work_items WHERE posted_by = ANY(?)", (gone,))
        requeued = await self.db.fetch_all(
            "UPDATE work_items SET state = 'queued', claimed_by = '', task_id = '' "
            "WHERE state = 'claimed' AND claimed_by = ANY(?) RETURNING agent",
            (gone,),
        )
        if requeued:
            _count_requeued(requeued)
            logger.warning("queued %d work item(s) again: their replica is gone", len(requeued))
            self._wake.set()


def item_user(owner: str, caller: str) -> User:
    """Who a claimed item runs as: the caller who posted it (``Identity.to_json``), with its scopes.

    An item posted before callers were kept (or by a version that did not keep them) runs as its owner
    with no scopes, and an anonymous caller's as nobody: what the item needs is then refused, never granted.
    """
    identity = Identity.from_json(caller)
    return a2a_user(identity) if identity is not None else RunOwner(owner)


def _count_requeued(rows: list[tuple[object, ...]]) -> None:
    """Items queued again, by agent, from rows of their ``agent``."""
    for agent, count in Counter(str(row[0]) for row in rows).items():
        metrics.WORK_ITEMS.labels(agent, "requeued").inc(count)


def _working_text(event: object) -> str:
    """The text of a working status update, else ``""``."""
    if not isinstance(event, TaskStatusUpdateEvent) or event.status.state != TaskState.TASK_STATE_WORKING:
        return ""
    return "\n".join(part.text for part in event.status.message.parts if part.HasField("text") and part.text)
