"""Replicas on one PostgreSQL: a task's live events and its cancel reach every replica through the database.

Only on PostgreSQL (``Cluster.start`` does nothing on SQLite, whose path stays as it was).

Events: the replica running a task on its ``LocalRunner`` appends each event to ``task_events``
with a per-task sequence number, and its run's first state (the task saved working) in the same
transaction as that save (``start_statements``). Each append NOTIFYs ``(task id, seq)``, and the
events themselves when they are small (``CARRIED_BYTES``: a follower then need not read them back,
one round trip less per event); a ``SubscribeToTask`` on any other replica (``follow``) takes the
events right after the last it gave from those carried, else reads the rows it has not seen, woken
by the notification or, should one be lost or late, by a poll every ``POLL_S``: a lost NOTIFY costs
latency, never an event; a LISTEN session that drops is reconnected and wakes every follower to
catch up from the table (``gateway.hosting.listener``). The events that end a run are appended
after the run's outcome is saved, so a subscriber told COMPLETED reads COMPLETED. Events of tasks
ended ``KEEP_EVENTS_S`` ago are pruned.

Cancel: a ``CancelTask`` on a replica that is not running the task writes a row to
``task_cancels`` and NOTIFYs; the replica running it cancels it through its runner's own cancel
path (the agent's cancel, its child steps, a relay's peer) and the caller waits, bounded, for the
task's final state, which is what it is told. A workflow run's lease names the replica running it
before the task does: a run taken over is canceled by the replica holding its lease, even before
that replica saved the task. When the replica running the task is gone (its runner lock is free),
the task is ended CANCELED directly, under its run's lease when it has one (so no replica takes the
run over meanwhile, and one that takes it after finds it ended). A task waiting for input is
canceled the same way by the replica that wrote it last: the SDK's handler there may hold it
parked; a subscriber on any replica (that one too: its next turn may be taken anywhere) follows
such a task from ``task_events`` (``follow_waiting``) until its end, published by whichever replica
ended it. A copy parked on a replica that another replica has written since (it took an answer) is
stale: a cancel there does not act on it (``LocalRequestHandler._parked``).

Runners' live events are appended only while the task is not stored finished by another process
(a replica paused, or cut off, while another ended its task): the append's own condition, no round
trip more; the runner stops that run at once (``store.tasks.STAYS_ENDED`` refuses its saves too).

The SDK's ``a2a.server.cluster`` (``VersionedDatabaseTaskStore``, ``DatabaseTaskEventStream``) is not
used: it serves ``DefaultRequestHandlerV2`` on a SQLAlchemy engine and task table of its own, and its
stream only polls (0.5 s by default); the runner's tasks are saved by ``SqlTaskStore`` on asyncpg,
and a cross-replica event should cost a NOTIFY, not a poll interval.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.tasks.task_manager import append_artifact_to_task
from a2a.types.a2a_pb2 import StreamResponse, Task, TaskArtifactUpdateEvent, TaskState, TaskStatusUpdateEvent
from a2a.utils.proto_utils import to_stream_response

from gateway.errors import StoreUnavailableError
from gateway.hosting.listener import Listener, Notified
from gateway.store.database import Database, Params
from gateway.store.postgres import keep_session
from gateway.store.tasks import FINISHED, INTERRUPTIBLE, SqlTaskStore, cancel_task, task_runner

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "switchboard_task_events"
CANCELS_CHANNEL = "switchboard_task_cancels"
POLL_S = 1.0
"""The backstop: a subscriber or a runner reads the tables this often even when no NOTIFY came."""
CANCEL_CONFIRM_S = 15.0
"""How long a cancel waits for the replica running the task to report its final state."""
KEEP_EVENTS_S = 3600.0
"""Events of a task are pruned this long after it ended."""
PRUNE_EVERY_S = 60.0
LATE_END_S = 5.0
"""A task saved ended this long ago without its ending events (its replica died between): the row is the end."""
FOLLOW_ON_S = 120.0
"""How long a stream whose run stopped here for a store outage waits for the store, to follow the run on."""
CARRIED_BYTES = 5000
"""Events of a batch up to this many bytes in all ride in their NOTIFY (its payload holds under 8000 bytes)."""
CARRIED_KEPT = 256
"""How many carried events per followed task are kept for its followers here (older ones: read from the table)."""
START, EVENT = 0, 1  # task_events.kind: a run's first state (a Task), or a live event (a StreamResponse)

_APPEND = (
    "WITH e AS (INSERT INTO task_events (task_id, seq, agent, owner, kind, data, at_ns) "
    "SELECT ?, COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ? FROM task_events WHERE task_id = ? RETURNING task_id, seq) "
    f"SELECT pg_notify('{EVENTS_CHANNEL}', task_id || ' ' || seq) FROM e"
)
_APPEND_NOW = _APPEND.replace("?", "{}").format(*(f"${n}" for n in range(1, 8)))  # asyncpg's placeholders
_APPEND_ALL = (  # several events of one task: seq after the task's last, in the order given
    "WITH base AS (SELECT COALESCE(MAX(seq), 0) AS s FROM task_events WHERE task_id = $1), "
    "e AS (INSERT INTO task_events (task_id, seq, agent, owner, kind, data, at_ns) "
    "SELECT $1, base.s + d.n, $2, $3, $4, d.data, $6 FROM base, unnest($5::bytea[]) WITH ORDINALITY AS d(data, n) "
    # None once another process ended the task (its runner, paused or cut off meanwhile, goes on): see STAYS_ENDED.
    "WHERE NOT EXISTS (SELECT 1 FROM tasks t WHERE t.agent = $2 AND t.owner = $3 AND t.id = $1 "
    f"AND t.state IN ({', '.join(str(int(s)) for s in FINISHED)}) AND t.runner <> $7) "
    "RETURNING seq, data) "
    # Small events ride in the NOTIFY ("task first-seq b64 b64 ..."), so a follower need not read them
    # back; larger ones are named only ("task last-seq"), as a START row is.
    f"SELECT pg_notify('{EVENTS_CHANNEL}', CASE WHEN SUM(length(data)) <= {CARRIED_BYTES} "
    "THEN $1 || ' ' || MIN(seq) || ' ' || string_agg(translate(encode(data, 'base64'), E'\\n', ''), ' ' ORDER BY seq) "
    "ELSE $1 || ' ' || MAX(seq) END) FROM e HAVING COUNT(*) > 0"
)
_ENDED = (
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
    TaskState.TASK_STATE_INPUT_REQUIRED,
    TaskState.TASK_STATE_AUTH_REQUIRED,
)
_WAITING = (TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED)
_TERMINAL = tuple(s for s in _ENDED if s not in _WAITING)
_CANCELS_HERE = (
    # The requests this replica may act on (``Cluster._cancel_here`` decides): tasks of agents hosted here, not
    # over, last written here (running here, or parked here waiting for input) or whose run's lease is held here
    # (a run taken over, before its first save here).
    "SELECT c.agent, c.task_id FROM task_cancels c JOIN tasks t "
    "ON t.agent = c.agent AND t.owner = c.owner AND t.id = c.task_id "
    f"WHERE c.agent = ANY(?) AND t.state IN ({', '.join(str(int(s)) for s in (*INTERRUPTIBLE, *_WAITING))}) "
    "AND (t.runner = ? OR EXISTS (SELECT 1 FROM leases l WHERE l.agent = c.agent AND l.owner = c.owner "
    "AND l.task_id = c.task_id AND l.replica = ?))"
)
_LEASED = "SELECT 1 FROM leases WHERE agent = ? AND owner = ? AND task_id = ?"
_HOLDER = _LEASED.replace("1", "replica", 1) + " AND replica <> '' AND expires_at > now()"  # a live lease's holder


class CancelsHere(Protocol):
    """A request handler that cancels its agent's tasks running in this process."""

    async def runs_here(self, task_id: str) -> bool:
        """Whether task ``task_id`` is running in this process."""

    async def cancel_here(self, task_id: str, owner: str) -> None:
        """Cancel task ``task_id`` (of ``owner``) through the handler's own cancel path."""


def _append(task: Task, agent: str, owner: str, kind: int, data: bytes) -> tuple[str, Params]:
    return _APPEND, (task.id, agent, owner, kind, data, time.time_ns(), task.id)


def _ends(event: Event) -> bool:
    return isinstance(event, Task | TaskStatusUpdateEvent) and event.status.state in _ENDED


def _payload_to(callback: Callable[[str], None]) -> Notified:
    def notified(conn: object, pid: int, channel: str, payload: str) -> None:
        callback(payload)

    return notified


class Cluster:
    """This process's part of the cluster: one LISTEN session, the subscribers it wakes, cancels it acts on."""

    def __init__(self, db: Database, dsn: Callable[[], str]) -> None:
        self.db = db
        self._dsn = dsn
        self.active = False
        """True once started on PostgreSQL; everything here is skipped otherwise."""
        self.handlers: dict[str, CancelsHere] = {}
        """Each hosted agent's request handler, which cancels a task running here on request."""
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._carried: dict[str, dict[int, bytes]] = {}  # task -> seq -> event carried by a NOTIFY (followed here)
        self._also: dict[str, Callable[[str], None]] = {}  # other channels listened to (``on_notify``)
        self.listener: Listener | None = None
        """The LISTEN session (reconnected when it drops); None when not listening."""
        self._appender: Any = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, *, listen: bool = True) -> None:
        """Listen for events and cancels (PostgreSQL only), and start the backstop poll and the pruning.

        Without ``listen`` no NOTIFY arrives here: what a replica that loses every one of them does.
        """
        if self.db.dialect != "postgresql":
            return
        import asyncpg

        if listen:
            channels: dict[str, Notified] = {EVENTS_CHANNEL: self._on_event, CANCELS_CHANNEL: self._on_cancel}
            for channel, callback in self._also.items():
                channels[channel] = _payload_to(callback)
            self.listener = Listener(self._dsn, channels, self._caught_up)
            await self.listener.start()
        # Live events need no fsync of their own: a PostgreSQL crash may lose the last few (the task row,
        # saved durably, still ends followers: ``LATE_END_S``); an fsync per event would cost 1-2 ms.
        self._appender = await asyncpg.create_pool(
            self._dsn(), min_size=1, max_size=4, server_settings={"synchronous_commit": "off"}, reset=keep_session
        )
        self.active = True
        self._spawn(self._poll_cancels())
        self._spawn(self._prune())

    async def close(self) -> None:
        """Stop listening."""
        self.active = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.listener is not None:
            await self.listener.close()
            self.listener = None
        if self._appender is not None:
            await self._appender.close()
            self._appender = None

    async def append(self, params: Params) -> None:
        """Append one event row (``_append``'s parameters) and NOTIFY, on the appending pool."""
        await self._appender.execute(_APPEND_NOW, *params)

    async def append_all(self, task_id: str, agent: str, owner: str, events: list[bytes]) -> bool:
        """Append live events (serialised ``StreamResponse``s), in order, in one statement and one NOTIFY.

        False, appending nothing, when task ``task_id`` of ``owner`` is stored finished by another process.
        """
        rows = await self._appender.fetch(
            _APPEND_ALL, task_id, agent, owner, EVENT, events, time.time_ns(), self.db.runner
        )
        return bool(rows)

    async def publish_end(self, agent: str, owner: str, task: Task) -> None:
        """Tell followers that ``task`` ended as stored (ended by another replica than the one running it)."""
        event = TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id, status=task.status)
        await self.append(_append(task, agent, owner, EVENT, to_stream_response(event).SerializeToString())[1])

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_event(self, conn: object, pid: int, channel: str, payload: str) -> None:
        task_id, *rest = payload.split(" ")
        if len(rest) > 1 and task_id in self._waiters:  # events carried: kept for this task's followers here
            carried = self._carried.setdefault(task_id, {})
            first = int(rest[0])
            for n, data in enumerate(rest[1:]):
                carried[first + n] = base64.b64decode(data)
            while len(carried) > CARRIED_KEPT:
                del carried[next(iter(carried))]
        self._wake(task_id)

    def carried(self, task_id: str, after: int) -> list[tuple[int, int, bytes]]:
        """The events of ``task_id`` right after seq ``after`` that came in NOTIFYs, without a gap (maybe none)."""
        carried = self._carried.get(task_id, {})
        rows = []
        while (data := carried.get(after + 1)) is not None:
            after += 1
            rows.append((after, EVENT, data))
        return rows

    def on_notify(self, channel: str, callback: Callable[[str], None]) -> None:
        """Before ``start``: call ``callback(payload)`` for each NOTIFY on ``channel``, and ``callback("")``
        when the LISTEN session comes back after a drop (a NOTIFY may have been lost meanwhile)."""
        self._also[channel] = callback

    def _caught_up(self) -> None:
        """The LISTEN session is back: every follower and the cancels read what a lost NOTIFY may have hidden."""
        for callback in self._also.values():
            callback("")
        for waiters in self._waiters.values():
            for waiter in waiters:
                waiter.set()
        self._spawn(self.take_cancels())

    def _wake(self, task_id: str) -> None:
        for waiter in self._waiters.get(task_id, ()):
            waiter.set()

    def _on_cancel(self, conn: object, pid: int, channel: str, payload: str) -> None:
        agent, _, task_id = payload.partition(" ")
        self._spawn(self._cancel_here(agent, task_id))

    async def _cancel_here(self, agent: str, task_id: str) -> None:
        """Cancel task ``task_id`` of ``agent`` if it runs here (its request row is then done with).

        A task waiting for input runs nowhere: the replica that wrote it last takes its cancel, which
        closes the SDK's copy parked there waiting for the answer (its subscribers are told), if any.
        """
        handler = self.handlers.get(agent)
        if handler is None:
            return
        params: Params
        if await handler.runs_here(task_id):
            take, params = "DELETE FROM task_cancels WHERE agent = ? AND task_id = ? RETURNING owner", (agent, task_id)
        else:
            take = (
                "DELETE FROM task_cancels c WHERE c.agent = ? AND c.task_id = ? AND EXISTS (SELECT 1 FROM tasks t "
                "WHERE t.agent = c.agent AND t.owner = c.owner AND t.id = c.task_id AND t.runner = ? "
                f"AND t.state IN ({', '.join(str(int(s)) for s in _WAITING)})) RETURNING c.owner"
            )
            params = (agent, task_id, self.db.runner)
        row = await self.db.fetch_one(take, params)
        if row is not None:  # taken by this replica only once, however many times it was woken
            await handler.cancel_here(task_id, str(row[0]))

    async def _poll_cancels(self) -> None:
        """The backstop for a lost cancel NOTIFY: look for cancels of the tasks running here."""
        while True:
            await asyncio.sleep(POLL_S)
            await self.take_cancels()

    async def take_cancels(self) -> None:
        """Act on the cancel requests of tasks this replica may run or hold parked (``_CANCELS_HERE``).

        One query, run every ``POLL_S`` by every replica: it returns nothing but what this replica
        can act on (usually nothing), not every request of the cluster, each then looked at here.
        """
        if not self.handlers:
            return
        try:
            rows = await self.db.fetch_all(_CANCELS_HERE, (sorted(self.handlers), self.db.runner, self.db.runner))
            for agent, task_id in rows:
                await self._cancel_here(str(agent), str(task_id))
        except Exception as exc:
            logger.warning("could not act on cancel requests: %s", exc)

    async def _prune(self) -> None:
        while True:
            try:
                await self.prune(time.time_ns())
            except Exception as exc:
                logger.warning("could not prune old task events: %s", exc)
            await asyncio.sleep(PRUNE_EVERY_S)

    async def prune(self, now_ns: int) -> None:
        """Delete the events of tasks that ended (or were deleted) ``KEEP_EVENTS_S`` before ``now_ns``."""
        cutoff = now_ns - int(KEEP_EVENTS_S * 1e9)
        ended = ", ".join(str(int(s)) for s in _ENDED)
        await self.db.write(
            "DELETE FROM task_events e WHERE e.at_ns < ? AND NOT EXISTS (SELECT 1 FROM tasks t "
            f"WHERE t.id = e.task_id AND t.agent = e.agent AND (t.state NOT IN ({ended}) OR t.updated_ns >= ?))",
            (cutoff, cutoff),
        )
        await self.db.write("DELETE FROM task_cancels WHERE requested_ns < ?", (cutoff,))

    def waiter(self, task_id: str) -> asyncio.Event:
        """An event set whenever task ``task_id`` gets a new event row (``forget`` it after)."""
        waiter = asyncio.Event()
        self._waiters.setdefault(task_id, set()).add(waiter)
        return waiter

    def forget(self, task_id: str, waiter: asyncio.Event) -> None:
        """Stop waking ``waiter``."""
        waiters = self._waiters.get(task_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[task_id]
                self._carried.pop(task_id, None)


class AgentLog:
    """One hosted agent's side of the cluster: its runner publishes, its handler follows and cancels."""

    def __init__(self, cluster: Cluster, agent: str, store: SqlTaskStore) -> None:
        self.cluster = cluster
        self.agent = agent
        self.store = store
        self._turns: set[str] = set()  # tasks whose current turn on the SDK's path has its first state appended

    @property
    def active(self) -> bool:
        """Whether events and cancels cross replicas (PostgreSQL)."""
        return self.cluster.active

    def attach(self, handler: CancelsHere) -> None:
        """Cancels asked for elsewhere reach ``handler``."""
        self.cluster.handlers[self.agent] = handler

    def start_statements(self, task: Task, context: ServerCallContext) -> list[tuple[str, Params]]:
        """What to commit with the save of a task that starts working: its first state, for followers."""
        if not self.active or task.status.state != TaskState.TASK_STATE_WORKING:
            return []
        return [_append(task, self.agent, self.store.owner_of(context), START, task.SerializeToString())]

    async def publish(
        self,
        task: Task,
        context: ServerCallContext,
        events: asyncio.Queue[Event | None],
        ended_elsewhere: Callable[[], None] | None = None,
    ) -> None:
        """Append a run's events from ``events`` in order; those that end it once the run is saved (None).

        The events queued by the time one append is done go in the next one together (one round
        trip and one NOTIFY for an agent's burst, as for a quick run's few events). Once an append
        finds the task ended by another process (the append's own condition: no round trip more),
        nothing more is appended and ``ended_elsewhere`` is called.
        """
        owner = self.store.owner_of(context)
        ending: list[Event] = []
        over = refused = False
        while not over:
            batch: list[Event] = []
            event = await events.get()
            while True:
                if event is None:
                    over = True
                    break
                (ending if ending or _ends(event) else batch).append(event)
                if events.empty():
                    break
                event = events.get_nowait()
            if not refused and not await self._append_all(task, owner, batch):
                refused = True
                if ended_elsewhere is not None:
                    ended_elsewhere()
        if not refused:
            await self._append_all(task, owner, ending)

    async def published(self, task_id: str, event: Event) -> None:
        """An event of a task on the SDK's path, saved (``OutboxPushSender``): a ``Task`` starts a run.

        A turn whose first event is no ``Task`` (an answer to a task waiting for input, a cancel)
        starts a run too: after that event, the task as saved with it is appended as the run's
        first state, so a subscriber joining later starts from it (one that follows already skips it).
        """
        if not self.active:
            return
        task = Task(id=task_id)
        try:
            if isinstance(event, Task):
                await self.cluster.append(_append(task, self.agent, "", START, event.SerializeToString())[1])
                self._turns.add(task_id)
                return
            await self.cluster.append_all(task_id, self.agent, "", [to_stream_response(event).SerializeToString()])
            if task_id not in self._turns and not _ends(event):
                self._turns.add(task_id)
                row = await self.cluster.db.fetch_one(
                    "SELECT data FROM tasks WHERE agent = ? AND id = ?", (self.agent, task_id)
                )
                if row is not None:
                    await self.cluster.append(_append(task, self.agent, "", START, bytes(row[0]))[1])
        except Exception as exc:
            logger.warning("could not publish an event of task %s: %s", task_id, exc)
        finally:
            if _ends(event):
                self._turns.discard(task_id)

    async def _append_all(self, task: Task, owner: str, events: list[Event]) -> bool:
        """Append ``events``; False only when the task is stored finished by another process."""
        if not events:
            return True
        data = [to_stream_response(event).SerializeToString() for event in events]
        try:
            return await self.cluster.append_all(task.id, self.agent, owner, data)
        except Exception as exc:  # followers still end from the saved row (``LATE_END_S``)
            logger.warning("could not publish an event of task %s: %s", task.id, exc)
            return True

    async def follow(self, task: Task, context: ServerCallContext) -> AsyncIterator[Event] | None:
        """Task ``task``'s live events as published by the replica running it; None when it publishes none."""
        owner = self.store.owner_of(context)
        runner, _ = await task_runner(self.cluster.db, (self.agent, owner, task.id))
        if runner == self.cluster.db.runner:
            return None  # this replica runs it (the SDK's path): the handler's own subscription
        rows = await self._rows(task.id, owner, None)
        if not rows:
            return None
        return self._followed(task.id, owner, rows)

    async def _rows(self, task_id: str, owner: str, after: int | None) -> list[tuple[Any, ...]]:
        # By task id and agent: the caller's right to the task was checked on its row (ids are minted here).
        if after is None:  # from the current run's first state
            return await self.cluster.db.fetch_all(
                "SELECT seq, kind, data FROM task_events WHERE task_id = ? AND agent = ? AND seq >= "
                "(SELECT MAX(seq) FROM task_events WHERE task_id = ? AND agent = ? AND kind = ?) ORDER BY seq",
                (task_id, self.agent, task_id, self.agent, START),
            )
        return await self.cluster.db.fetch_all(
            "SELECT seq, kind, data FROM task_events WHERE task_id = ? AND agent = ? AND seq > ? ORDER BY seq",
            (task_id, self.agent, after),
        )

    async def _followed(self, task_id: str, owner: str, rows: list[tuple[Any, ...]]) -> AsyncIterator[Event]:
        waiter = self.cluster.waiter(task_id)
        try:
            snapshot = Task.FromString(bytes(rows[0][2]))
            for _, _, data in rows[1:]:
                _apply(snapshot, stored_event(data))
            yield snapshot
            if snapshot.status.state not in _ENDED:
                async for event in self._tail(task_id, owner, int(rows[-1][0]), waiter, _ENDED):
                    yield event
        finally:
            self.cluster.forget(task_id, waiter)

    async def follow_waiting(self, task: Task, context: ServerCallContext) -> AsyncIterator[Event]:
        """Task ``task``, waiting for input and held by no run here, then the events of its next turns
        (answered on any replica) until one ends it: a cancel on any replica among them."""
        owner = self.store.owner_of(context)
        waiter = self.cluster.waiter(task.id)  # before the cursor is read: no NOTIFY missed in between
        try:
            row = await self.cluster.db.fetch_one(
                "SELECT MAX(seq) FROM task_events WHERE task_id = ? AND agent = ?", (task.id, self.agent)
            )
            yield task
            async for event in self._tail(task.id, owner, int(row[0] or 0) if row else 0, waiter, _TERMINAL):
                yield event
        finally:
            self.cluster.forget(task.id, waiter)

    async def follow_on(self, task_id: str, context: ServerCallContext, since_ns: int) -> AsyncIterator[Event]:
        """The rest of a run whose events stopped here at ``since_ns`` before its end (its saves failed: the store
        was unreachable, and the run stopped here): its events from wherever it resumes, up to its end.

        Waits, up to ``FOLLOW_ON_S``, for the store to be reachable again (``StoreUnavailableError`` after it).
        """
        owner = self.store.owner_of(context)
        waiter = self.cluster.waiter(task_id)
        try:
            async with asyncio.timeout(FOLLOW_ON_S):
                while True:
                    try:  # the events appended by then are this replica's; later ones, the resumed run's
                        row = await self.cluster.db.fetch_one(
                            "SELECT MAX(seq) FROM task_events WHERE task_id = ? AND agent = ? AND at_ns <= ?",
                            (task_id, self.agent, since_ns),
                        )
                        break
                    except StoreUnavailableError:
                        await asyncio.sleep(POLL_S)
        except TimeoutError:
            self.cluster.forget(task_id, waiter)
            raise StoreUnavailableError from None
        try:
            async for event in self._tail(task_id, owner, int(row[0] or 0) if row else 0, waiter, _ENDED):
                yield event
        finally:
            self.cluster.forget(task_id, waiter)

    async def _tail(
        self, task_id: str, owner: str, cursor: int, waiter: asyncio.Event, ends: tuple[TaskState, ...]
    ) -> AsyncIterator[Event]:
        """The live events of ``task_id`` after seq ``cursor``, up to the first in one of the states ``ends``."""
        quiet_since = time.monotonic()
        while True:
            waiter.clear()
            rows = self.cluster.carried(task_id, cursor) or await self._rows(task_id, owner, cursor)
            for seq, kind, data in rows:
                cursor = int(seq)
                if kind == START:  # a run resumed elsewhere, or a turn begun without a Task: updates follow
                    continue
                event = stored_event(data)
                yield event
                if isinstance(event, Task | TaskStatusUpdateEvent) and event.status.state in ends:
                    return
            if rows:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since > LATE_END_S and (end := await self._stored_end(task_id, owner, ends)):
                yield end
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), POLL_S)

    async def _published(self, task_id: str, owner: str) -> bool:
        row = await self.cluster.db.fetch_one(
            "SELECT 1 FROM task_events WHERE task_id = ? AND agent = ? AND kind = ? LIMIT 1",
            (task_id, self.agent, START),
        )
        return row is not None

    async def _stored_end(self, task_id: str, owner: str, ends: tuple[TaskState, ...]) -> TaskStatusUpdateEvent | None:
        """The task's end as saved, when it ended without its ending events (its replica died in between)."""
        row = await self.cluster.db.fetch_one(
            "SELECT data, state FROM tasks WHERE agent = ? AND owner = ? AND id = ?", (self.agent, owner, task_id)
        )
        if row is None or row[1] not in ends:
            return None
        task = Task.FromString(bytes(row[0]))
        return TaskStatusUpdateEvent(task_id=task.id, context_id=task.context_id, status=task.status)

    async def cancel_elsewhere(self, task: Task, context: ServerCallContext) -> Task | None:
        """Cancel ``task``, running on another replica; its final state. None when it is this replica's to cancel.

        The cancel goes to the replica running the task: the one holding its run's lease, when a live
        one does (a run taken over, maybe not saved there yet), else the one that wrote it last. A task
        waiting for input is canceled by the replica that wrote it last, where the SDK's handler may hold
        it parked with subscribers; None (the caller's handler cancels it in the store) when that replica
        is gone or does not confirm in time. A task whose replica is gone is ended CANCELED here, holding
        its run's lease while it does so: a replica taking the run over meanwhile would run it on.
        """
        owner = self.store.owner_of(context)
        key = (self.agent, owner, task.id)
        waiting = task.status.state in _WAITING
        target, leased = await self._target(key, waiting)
        if not target or not await self._published(task.id, owner):
            return None  # not on a runner (the SDK's path): the handler's own cancel
        if target == self.cluster.db.runner:
            handler = self.cluster.handlers.get(self.agent)
            if not leased or handler is None or await handler.runs_here(task.id):
                return None  # written, running or parked here: the handler's own cancel
            # Taken over here and not started yet: the request waits for the run (``Cluster.take_cancels``).
        going = (*INTERRUPTIBLE, *_WAITING) if waiting else INTERRUPTIBLE  # the states it is not over in
        waiter = self.cluster.waiter(task.id)
        try:
            await self.cluster.db.write_many(
                [
                    (
                        "INSERT INTO task_cancels (agent, owner, task_id, requested_ns) VALUES (?, ?, ?, ?) "
                        "ON CONFLICT (agent, owner, task_id) DO NOTHING",
                        (self.agent, owner, task.id, time.time_ns()),
                    ),
                    ("SELECT pg_notify(?, ?)", (CANCELS_CHANNEL, f"{self.agent} {task.id}")),
                ]
            )
            async with asyncio.timeout(CANCEL_CONFIRM_S):
                while True:
                    waiter.clear()
                    now = await self.store.get(task.id, context)
                    if now is None or now.status.state not in going:
                        return now
                    target, _ = await self._target(key, waiting)
                    if target != self.cluster.db.runner and not await self.cluster.db.live_runners({target}):
                        if waiting:  # it died meanwhile
                            return None
                        ended = await self._cancel_abandoned(key, context)
                        if ended is not None:
                            return ended
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiter.wait(), POLL_S)
        except TimeoutError:
            logger.warning("task %s of %s: its replica did not confirm the cancel in time", task.id, self.agent)
            return None if waiting else await self.store.get(task.id, context)
        finally:
            self.cluster.forget(task.id, waiter)
            if waiting:  # not left to be taken later by a replica that writes the task next (an answer's turn)
                await self.cluster.db.write(
                    "DELETE FROM task_cancels WHERE agent = ? AND owner = ? AND task_id = ?", key
                )

    async def _target(self, key: tuple[str, str, str], waiting: bool) -> tuple[str, bool]:
        """The replica that may be running task ``key``: its run's live lease holder (True), else its last writer."""
        if not waiting:
            row = await self.cluster.db.fetch_one(_HOLDER, key)
            if row is not None:
                return str(row[0]), True
        runner, _ = await task_runner(self.cluster.db, key)
        return runner, False

    async def _cancel_abandoned(self, key: tuple[str, str, str], context: ServerCallContext) -> Task | None:
        """End task ``key``, whose replica is gone, CANCELED; None when another replica holds its run's lease now.

        A leased run's lease is taken for the write: no replica takes the run over while it is being
        canceled, and one that takes it after finds it ended (``gateway.hosting.failover``).
        """
        leases = self.store.leases
        lease = None
        if leases is not None and await self.cluster.db.fetch_one(_LEASED, key) is not None:
            lease = await leases.take(key)
            if lease is None:
                return None  # held (a survivor took it over, or its dead holder's lease has not expired yet)
        try:
            await cancel_task(self.cluster.db, key, f"{self.agent}: canceled on request")
        finally:
            if lease is not None:
                await leases.release(lease)
        return await self.store.get(key[2], context)


def _apply(task: Task, event: Event) -> None:
    """``event`` applied to ``task`` as the SDK's task manager applies it (the runner's ``TaskEventQueue`` too)."""
    if isinstance(event, Task):
        task.CopyFrom(event)
    elif isinstance(event, TaskStatusUpdateEvent):
        if event.metadata:
            task.metadata.MergeFrom(event.metadata)
        if task.status.HasField("message"):
            task.history.append(task.status.message)
        task.status.CopyFrom(event.status)
    elif isinstance(event, TaskArtifactUpdateEvent):
        append_artifact_to_task(task, event)


def stored_event(data: bytes) -> Event:
    """A live event as ``task_events`` keeps it (``kind`` ``EVENT``)."""
    response = StreamResponse.FromString(bytes(data))
    return getattr(response, response.WhichOneof("payload") or "task")
