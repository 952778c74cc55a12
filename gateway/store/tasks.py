"""The SDK's ``TaskStore`` and ``PushNotificationConfigStore`` on the gateway's database.

A task is one row: its protobuf bytes plus the columns ``ListTasks`` filters and sorts on.
One UPSERT per save, no read before write; the owner (the caller's identity) is part of the
key, so no caller can read, list or overwrite another's task.

The SDK looks a new task up several times before its first save (three SELECTs that can only
miss, per message). The store mints the ids of new tasks itself (``NewTaskIds``, handed to the
request context builder) and answers those lookups without a query until the task is saved:
an id it has just drawn at random is in no database, whichever process shares it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from a2a.server.cluster.task_store import ConcurrentTaskModificationError
from a2a.server.context import ServerCallContext
from a2a.server.id_generator import IDGenerator, IDGeneratorContext
from a2a.server.owner_resolver import OwnerResolver, resolve_user_scope
from a2a.server.tasks.push_notification_config_store import (
    PushNotificationConfigStore,
    normalize_push_notification_config,
)
from a2a.server.tasks.task_store import TaskStore
from a2a.types.a2a_pb2 import (
    ListTasksRequest,
    ListTasksResponse,
    Message,
    Part,
    Role,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.constants import DEFAULT_LIST_TASKS_PAGE_SIZE, MAX_LIST_TASKS_PAGE_SIZE
from a2a.utils.errors import InvalidParamsError
from a2a.utils.task import ListTasksCursor, decode_list_tasks_cursor, encode_list_tasks_cursor
from google.protobuf.timestamp_pb2 import Timestamp

from gateway.store.database import INT64_MAX, INT64_MIN, Database, Params
from gateway.store.leases import LeaseBook, LeaseLostError, fence_clause

logger = logging.getLogger(__name__)

_NO_TIME = -1  # sorts tasks without a status timestamp last, as the SDK's stores do
_UPSERT = (
    "INSERT INTO tasks (agent, owner, id, context_id, state, updated_ns, data, runner) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (agent, owner, id) DO UPDATE SET context_id = excluded.context_id, state = excluded.state, "
    "updated_ns = excluded.updated_ns, data = excluded.data, runner = excluded.runner"
)
_UPSERT_FENCED = _UPSERT + fence_clause("excluded.agent, excluded.owner, excluded.id")
"""A leased run's task: written only while this replica holds the run's lease (``gateway.store.leases``)."""
INTERRUPTIBLE = (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
FINISHED = (
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
)
"""The terminal states: a task in one of them never changes again."""
ENDED_SQLSTATE = "SB002"
_FINISHED_SQL = ", ".join(str(int(s)) for s in FINISHED)
STAYS_ENDED = (
    f"CASE WHEN tasks.state IN ({_FINISHED_SQL}) AND tasks.runner <> excluded.runner THEN switchboard_ended(tasks.id) "
    "ELSE TRUE END"
)
"""On PostgreSQL, the condition of every task save: a task another process ended is not written again.

A replica paused (or cut off) long enough for another to end its task (``gateway.hosting.failover``)
must not complete it, or add to it, once it continues. Only a finished row written by another
process calls ``switchboard_ended``, which raises ``ENDED_SQLSTATE`` (``TaskEndedElsewhereError``):
the common save costs no round trip and no function call. The process that ended a task may save it
again (a retried save whose first try was committed)."""
ENDED_SCHEMA = (
    f"""CREATE OR REPLACE FUNCTION switchboard_ended(t TEXT) RETURNS BOOLEAN AS $$
    BEGIN
        RAISE EXCEPTION 'task % was ended by another gateway process', t
            USING ERRCODE = '{ENDED_SQLSTATE}', DETAIL = t;
    END $$ LANGUAGE plpgsql""",
)
"""The function behind ``STAYS_ENDED`` (created with PostgreSQL's other cluster tables)."""
_UPSERT_OPEN = f"{_UPSERT} WHERE {STAYS_ENDED}"
_UPSERT_FENCED_OPEN = f"{_UPSERT_FENCED} AND {STAYS_ENDED}"


class TaskEndedElsewhereError(ConcurrentTaskModificationError):
    """A save of a task that another gateway process ended meanwhile: refused, the task stays as it ended.

    The SDK's request handler takes it as it takes any concurrent modification: it reads the task
    again, tells its subscribers the stored end and stops the agent's execution.
    """

    def __init__(self, task_id: str) -> None:
        super().__init__(task_id)
        self.args = (f"Task {task_id} was ended by another gateway process; this write of it is refused",)


LIST_PAGE_BYTES = 4 * 1024 * 1024
"""A ListTasks page stops adding tasks past this many stored bytes (and gives a next page token)."""
UNSAVED_IDS_LIMIT = 4096  # ids minted but never saved (a request that failed first) are forgotten past this


def stamp_ns(stamp: Timestamp) -> int | None:
    """``stamp`` in nanoseconds since the epoch, or None when no BIGINT holds it (before 1677, after 2262).

    None too for a stamp that is no valid ``Timestamp`` (nanos out of range): binary protobuf
    (gRPC) carries both kinds, and the JSON wire could not serve either back.
    """
    if not 0 <= stamp.nanos < 1_000_000_000:
        return None
    ns = stamp.seconds * 1_000_000_000 + stamp.nanos
    return ns if INT64_MIN <= ns <= INT64_MAX else None


def _updated_ns(task: Task) -> int:
    if task.HasField("status") and task.status.HasField("timestamp"):
        stamp = task.status.timestamp
        ns = stamp_ns(stamp)
        if ns is None:  # a time no column holds sorts at its end of time rather than failing the save
            return INT64_MAX if stamp.seconds > 0 else INT64_MIN
        return ns
    return _NO_TIME


def _cursor(page_token: str) -> ListTasksCursor:
    """The position a page token names; ``InvalidParamsError`` for one this store did not make."""
    cursor = decode_list_tasks_cursor(page_token)
    if cursor is not None and (cursor.timestamp_ns is None or INT64_MIN <= cursor.timestamp_ns <= INT64_MAX):
        try:
            cursor.task_id.encode()
        except UnicodeEncodeError:  # a lone surrogate: JSON can carry it, no database can
            pass
        else:
            return cursor
    raise InvalidParamsError(message=f"Invalid page token: {page_token}")


def _parse(data: bytes) -> Task:
    task = Task()
    task.ParseFromString(bytes(data))
    return task


class NewTaskIds(IDGenerator):
    """Mints the ids of new tasks (random UUIDs) and remembers those not saved yet.

    Bounded: past ``limit`` unsaved ids the oldest is forgotten, and a lookup of it simply
    goes to the database again.
    """

    def __init__(self, limit: int = UNSAVED_IDS_LIMIT) -> None:
        self._unsaved: dict[str, None] = {}  # insertion-ordered: the oldest first
        self._limit = limit

    def generate(self, context: IDGeneratorContext) -> str:
        """A new task id, known to be in no store until it is saved."""
        task_id = str(uuid.uuid4())
        self._unsaved[task_id] = None
        if len(self._unsaved) > self._limit:
            del self._unsaved[next(iter(self._unsaved))]
        return task_id

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._unsaved

    def saved(self, task_id: str) -> None:
        """``task_id`` is being written: from now on only the database knows."""
        self._unsaved.pop(task_id, None)


def _within(rows: list[tuple[Any, ...]], budget: int) -> list[tuple[Any, ...]]:
    """The leading ``(id, updated_ns, size)`` rows whose sizes fit ``budget`` bytes (always the first)."""
    used = 0
    for n, (_, _, size) in enumerate(rows):
        used += int(size or 0)
        if n and used > budget:
            return rows[:n]
    return rows


STARTED_BY = "switchboard.started_by"
"""The ``ServerCallContext.state`` key of what started a run when no caller's message did (``gateway.triggers``).

Only the gateway builds the call contexts that carry it, so a caller cannot claim a trigger started its task.
"""


ON_RUN_END = "switchboard.on_run_end"
"""The ``ServerCallContext.state`` key of a ``RunEnd``: run when the call's task is saved no longer running."""


@dataclass(frozen=True)
class RunEnd:
    """What to do once a task of ``agent`` is saved ended or waiting for input (an admission slot given back).

    Only that agent's saves count: a workflow's steps share its call context, and their tasks are
    other agents' (a workflow never names itself as a step).
    """

    agent: str
    call: Callable[[], None]


class SqlTaskStore(TaskStore):
    """One agent's tasks in SQLite or PostgreSQL; ``save`` returns only after the row is committed."""

    def __init__(
        self,
        db: Database,
        agent: str,
        owner_resolver: OwnerResolver = resolve_user_scope,
        list_page_bytes: int = LIST_PAGE_BYTES,
    ) -> None:
        self._db = db
        self._agent = agent
        self._owner = owner_resolver
        self._list_page_bytes = list_page_bytes
        self.new_ids = NewTaskIds()
        """The id generator for this agent's new tasks (give it to the request context builder)."""
        self.leases: LeaseBook | None = None
        """On PostgreSQL: the leases of runs on this replica; a leased task's writes are fenced by its lease."""

    async def save(self, task: Task, context: ServerCallContext) -> None:
        """Insert or replace the task for the caller; a leased run's lease is released once its task stops running."""
        leases = self.leases
        lease = leases.held.get((self._agent, self._owner(context), task.id)) if leases is not None else None
        try:
            await self._db.write(*self.save_statement(task, context))
        except LeaseLostError:
            if lease is not None:
                lease.refused()
            raise
        except TaskEndedElsewhereError:  # the SDK's handler stops the agent's execution (see the error)
            logger.warning(
                "task %s of %s was ended by another gateway process; its save is refused", task.id, self._agent
            )
            raise
        if leases is not None and lease is not None and task.status.state not in INTERRUPTIBLE:
            await leases.release(lease)

    def save_statement(self, task: Task, context: ServerCallContext) -> tuple[str, Params]:
        """What ``save`` runs, for a caller that commits it with other statements (its push notifications).

        A task started by a trigger (``STARTED_BY`` in the call's state) keeps what started it in
        its metadata's ``trigger`` entry, whichever executor built it. ``LeaseLostError`` for a
        leased run's task whose lease this replica lost; ``TaskEndedElsewhereError`` (on PostgreSQL)
        for a task another process ended meanwhile.
        """
        self.new_ids.saved(task.id)
        started_by = context.state.get(STARTED_BY)
        if started_by is not None and "trigger" not in task.metadata:
            task.metadata.update({"trigger": started_by})
        run_end = context.state.get(ON_RUN_END)
        if isinstance(run_end, RunEnd) and run_end.agent == self._agent and task.status.state not in INTERRUPTIBLE:
            run_end.call()  # before the commit: whoever sees the task ended finds its slot free
        owner = self._owner(context)
        params = (self._agent, owner, task.id, task.context_id, task.status.state, _updated_ns(task))
        shared = self._db.dialect == "postgresql"
        if self.leases is not None and (lease := self.leases.held.get((self._agent, owner, task.id))) is not None:
            sql = _UPSERT_FENCED_OPEN if shared else _UPSERT_FENCED
            return sql, (*params, task.SerializeToString(), self._db.runner, *lease.fence())
        return _UPSERT_OPEN if shared else _UPSERT, (*params, task.SerializeToString(), self._db.runner)

    def owner_of(self, context: ServerCallContext) -> str:
        """The owner a task saved for ``context``'s caller is stored under."""
        return self._owner(context)

    @property
    def db(self) -> Database:
        """The database the tasks are in."""
        return self._db

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        """The caller's task ``task_id``, or None."""
        if task_id in self.new_ids:
            return None  # minted here and not saved yet: no row can exist
        row = await self._db.fetch_one(
            "SELECT data FROM tasks WHERE agent = ? AND owner = ? AND id = ?",
            (self._agent, self._owner(context), task_id),
        )
        return _parse(row[0]) if row else None

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        """Delete the caller's task ``task_id`` if it exists."""
        self.new_ids.saved(task_id)
        await self._db.write(
            "DELETE FROM tasks WHERE agent = ? AND owner = ? AND id = ?", (self._agent, self._owner(context), task_id)
        )

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        """The caller's tasks, newest first, filtered and paged by ``params``."""
        where, args = self._filters(params, context)
        total_rows = await self._db.scan(f"SELECT COUNT(*) FROM tasks WHERE {where}", args)
        if params.page_token:
            cursor = _cursor(params.page_token)
            ts = cursor.timestamp_ns if cursor.timestamp_ns is not None else _NO_TIME
            where += " AND (updated_ns < ? OR (updated_ns = ? AND id < ?))"
            args += [ts, ts, cursor.task_id]
        page_size = min(params.page_size or DEFAULT_LIST_TASKS_PAGE_SIZE, MAX_LIST_TASKS_PAGE_SIZE)
        rows = await self._db.scan(
            f"SELECT id, updated_ns, length(data) FROM tasks WHERE {where} ORDER BY updated_ns DESC, id DESC LIMIT ?",
            [*args, page_size + 1],
        )
        page = _within(rows[:page_size], self._list_page_bytes)
        tasks = await self._read(page, context)
        next_token = ""
        if len(rows) > len(page):
            task_id, stamp, _ = page[-1]
            next_token = encode_list_tasks_cursor(
                ListTasksCursor(timestamp_ns=None if stamp == _NO_TIME else stamp, task_id=task_id)
            )
        total = int(total_rows[0][0]) if total_rows else 0
        return ListTasksResponse(tasks=tasks, next_page_token=next_token, total_size=total, page_size=page_size)

    async def _read(self, page: list[tuple[Any, ...]], context: ServerCallContext) -> list[Task]:
        """The tasks of a list page, in its order (one that went away since it was listed is left out)."""
        if not page:
            return []
        marks = ", ".join("?" for _ in page)
        rows = await self._db.scan(
            f"SELECT id, data FROM tasks WHERE agent = ? AND owner = ? AND id IN ({marks})",
            [self._agent, self._owner(context), *(row[0] for row in page)],
        )
        found = {task_id: data for task_id, data in rows}
        return [_parse(found[row[0]]) for row in page if row[0] in found]

    def _filters(self, params: ListTasksRequest, context: ServerCallContext) -> tuple[str, list[Any]]:
        clauses, args = ["agent = ? AND owner = ?"], [self._agent, self._owner(context)]
        if params.context_id:
            clauses.append("context_id = ?")
            args.append(params.context_id)
        if params.status:
            clauses.append("state = ?")
            args.append(int(params.status))
        if params.HasField("status_timestamp_after"):
            after = stamp_ns(params.status_timestamp_after)
            if after is None:
                raise InvalidParamsError(
                    message="statusTimestampAfter must be a valid time from 1677-09-22 to 2262-04-11 (UTC)"
                )
            clauses.append("updated_ns >= ?")
            args.append(after)
        return " AND ".join(clauses), args


TaskKey = tuple[str, str, str]
"""(agent, owner, task id): one task row."""


_FAIL_IF_UNCHANGED = (
    "UPDATE tasks SET state = ?, updated_ns = ?, data = ?, runner = ? "
    "WHERE agent = ? AND owner = ? AND id = ? AND data = ?"
)
FAIL_ATTEMPTS = 3  # a task rewritten this often while being failed is being worked on: it is left alone


def _failed(
    db: Database, agent: str, owner: str, data: bytes, reason: str, state: TaskState = TaskState.TASK_STATE_FAILED
) -> tuple[str, tuple[Any, ...]]:
    """The statement that ends the task stored as ``data`` FAILED (or ``state``), only if its row still holds ``data``.

    Compare-and-set: a write that landed since ``data`` was read (a COMPLETED save pending in the
    same SQLite flush, another replica's progress) wins, and the statement changes no row. The
    row then names this process as its writer: the one that ran the task, should it still live
    (paused, cut off), can no longer save it (``STAYS_ENDED``).
    """
    task = _parse(data)
    task.status.state = state
    task.status.message.CopyFrom(
        Message(
            message_id=f"sweep-{task.id}",
            role=Role.ROLE_AGENT,
            task_id=task.id,
            context_id=task.context_id,
            parts=[Part(text=reason)],
        )
    )
    task.status.timestamp.FromNanoseconds(time.time_ns())
    params = (task.status.state, _updated_ns(task), task.SerializeToString(), db.runner, agent, owner, task.id, data)
    return _FAIL_IF_UNCHANGED, params


async def abandoned(db: Database, rows: list[tuple[str, int]], unchanged_since_ns: int | None = None) -> list[bool]:
    """For each ``(runner, updated_ns)`` of a task left running, whether its process is gone.

    On a database this process uses alone (``unchanged_since_ns`` None), every one was left by a
    stop. On a shared one, a task was abandoned only when the process that last wrote it holds
    its lock no more (``Database.live_runners``), however long it has been silent; a row written
    before runners were recorded is judged by its age, as before: unchanged since ``unchanged_since_ns``.
    """
    if unchanged_since_ns is None:
        return [True] * len(rows)
    live = await db.live_runners({runner for runner, _ in rows if runner})
    return [runner not in live if runner else updated_ns < unchanged_since_ns for runner, updated_ns in rows]


async def fail_interrupted(
    db: Database, reason: str, keep: frozenset[TaskKey] = frozenset(), unchanged_since_ns: int | None = None
) -> list[str]:
    """End every task a crash left submitted or working as FAILED with ``reason``; returns their ids.

    Runs at start-up, before any request is served, so no task stays non-terminal forever.
    Tasks waiting for input are left alone: a follow-up message resumes them; so are the tasks
    in ``keep`` (workflow runs about to resume from their checkpoints). On a shared database
    (``unchanged_since_ns`` given) another replica may be running a task right now: only tasks
    ``abandoned`` by their process are failed, and none written since it was read.
    """
    marks = ", ".join("?" for _ in INTERRUPTIBLE)
    sql = f"SELECT agent, owner, id, data, runner, updated_ns FROM tasks WHERE state IN ({marks})"
    rows = [row for row in await db.fetch_all(sql, [int(s) for s in INTERRUPTIBLE]) if tuple(row[:3]) not in keep]
    gone = await abandoned(db, [(row[4], row[5]) for row in rows], unchanged_since_ns)
    rows = [row for row, left in zip(rows, gone, strict=True) if left]
    counts = await asyncio.gather(
        *(db.write(*_failed(db, agent, owner, data, reason)) for agent, owner, _, data, *_ in rows)
    )
    return [row[2] for row, count in zip(rows, counts, strict=True) if count]


async def task_runner(db: Database, key: TaskKey) -> tuple[str, int]:
    """The runner that last wrote task ``key`` and when (``("", -1)`` when there is no such task)."""
    row = await db.fetch_one("SELECT runner, updated_ns FROM tasks WHERE agent = ? AND owner = ? AND id = ?", key)
    return (str(row[0]), int(row[1])) if row else ("", _NO_TIME)


async def fail_task(db: Database, key: TaskKey, reason: str, state: TaskState = TaskState.TASK_STATE_FAILED) -> bool:
    """End one task as FAILED (or ``state``) with ``reason`` unless it already ended; whether it was ended here."""
    agent, owner, _ = key
    for _ in range(FAIL_ATTEMPTS):
        row = await db.fetch_one("SELECT data, state FROM tasks WHERE agent = ? AND owner = ? AND id = ?", key)
        if row is None or row[1] not in INTERRUPTIBLE:
            return False
        if await db.write(*_failed(db, agent, owner, row[0], reason, state)):
            return True
    return False


async def cancel_task(db: Database, key: TaskKey, reason: str) -> bool:
    """End one task CANCELED (its process is gone) unless it already ended; whether it was ended here."""
    return await fail_task(db, key, reason, TaskState.TASK_STATE_CANCELED)


class SqlPushConfigStore(PushNotificationConfigStore):
    """Push-notification configs, scoped to the owner who registered them."""

    def __init__(self, db: Database, owner_resolver: OwnerResolver = resolve_user_scope) -> None:
        self._db = db
        self._owner = owner_resolver
        self._tasks_with_configs: set[str] | None = None

    async def _may_have_configs(self, task_id: str) -> bool:
        """False only when certain: the push sender asks on every event of every task, and most have none.

        Only a database this process owns alone (SQLite) can be answered from memory; with a
        shared one (PostgreSQL) another replica may have registered a config.
        """
        if not self._db.exclusive:
            return True
        if self._tasks_with_configs is None:
            rows = await self._db.fetch_all("SELECT DISTINCT task_id FROM push_configs")
            self._tasks_with_configs = {r[0] for r in rows}
        return task_id in self._tasks_with_configs

    async def set_info(
        self, task_id: str, notification_config: TaskPushNotificationConfig, context: ServerCallContext
    ) -> TaskPushNotificationConfig:
        """Store a normalised copy of the config and return it."""
        config = normalize_push_notification_config(task_id, notification_config)
        if not await self._may_have_configs(task_id) and self._tasks_with_configs is not None:
            self._tasks_with_configs.add(task_id)  # before the write: a dispatch racing it must look
        await self._db.write(
            "INSERT INTO push_configs (owner, task_id, id, data) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (owner, task_id, id) DO UPDATE SET data = excluded.data",
            (self._owner(context), task_id, config.id, config.SerializeToString()),
        )
        return config

    async def get_info(self, task_id: str, context: ServerCallContext) -> list[TaskPushNotificationConfig]:
        """The caller's configs for ``task_id``."""
        rows = await self._db.fetch_all(
            "SELECT data FROM push_configs WHERE owner = ? AND task_id = ? ORDER BY id", (self._owner(context), task_id)
        )
        return [TaskPushNotificationConfig.FromString(bytes(r[0])) for r in rows]

    async def get_info_for_dispatch(self, task_id: str) -> list[TaskPushNotificationConfig]:
        """Every config registered for ``task_id``, whoever registered it (for delivery)."""
        if not await self._may_have_configs(task_id):
            return []
        rows = await self._db.fetch_all("SELECT data FROM push_configs WHERE task_id = ? ORDER BY id", (task_id,))
        return [TaskPushNotificationConfig.FromString(bytes(r[0])) for r in rows]

    async def dispatch_targets(self, task_id: str) -> list[tuple[str, str]]:
        """(owner, config id) of every config registered for ``task_id``: where its notifications go."""
        if not await self._may_have_configs(task_id):
            return []
        rows = await self._db.fetch_all("SELECT owner, id FROM push_configs WHERE task_id = ? ORDER BY id", (task_id,))
        return [(r[0], r[1]) for r in rows]

    async def get_for_delivery(self, owner: str, task_id: str, config_id: str) -> TaskPushNotificationConfig | None:
        """One config as it is now (None once deleted): a delivery uses its current URL and credentials."""
        row = await self._db.fetch_one(
            "SELECT data FROM push_configs WHERE owner = ? AND task_id = ? AND id = ?", (owner, task_id, config_id)
        )
        return TaskPushNotificationConfig.FromString(bytes(row[0])) if row else None

    async def delete_info(self, task_id: str, context: ServerCallContext, config_id: str | None = None) -> None:
        """Delete one config of the caller's (or all of them for the task when ``config_id`` is None)."""
        sql, args = "DELETE FROM push_configs WHERE owner = ? AND task_id = ?", [self._owner(context), task_id]
        if config_id is not None:
            sql += " AND id = ?"
            args.append(config_id)
        await self._db.write(sql, args)
