"""The dashboard's task list: a caller's tasks on every agent, newest first, one bounded page at a time.

A2A's ``ListTasks`` lists one agent's tasks; the dashboard shows one list over all of them. A
page is at most ``MAX_PAGE`` rows, read through an index on ``(owner, updated_ns, id)`` (or on
``(updated_ns, id)`` for an operator, who sees every owner), so its cost and size do not grow
with the number of tasks stored. The cursor is the last row's ``(updated_ns, id)``, opaque to
the client. Each row carries a short summary (the status message's first text, clipped) and the
parent run a workflow step's child task names, never the task's full history.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from a2a.types.a2a_pb2 import Task, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.hosting.executor import METADATA_KEY
from gateway.store.database import INT64_MAX, INT64_MIN, Database

DEFAULT_PAGE = 25
MAX_PAGE = 100
SUMMARY_CHARS = 160
TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
ACTIVE_STATES = tuple(int(s) for s in TaskState.values() if s not in TERMINAL and s != TaskState.TASK_STATE_UNSPECIFIED)


class BadQueryError(ValueError):
    """A list query the dashboard API cannot answer (a bad cursor or limit); the message says what."""


@dataclass(frozen=True)
class TaskQuery:
    """What one page of the list asks for."""

    owner: str | None
    """The caller whose tasks are listed; None: every owner's (an operator)."""
    limit: int = DEFAULT_PAGE
    cursor: str = ""
    agents: tuple[str, ...] = ()
    active: bool = False
    task_id: str = ""

    @classmethod
    def parse(cls, owner: str | None, params: Mapping[str, str], workflows: tuple[str, ...]) -> TaskQuery:
        """The query of a request's parameters (``limit``, ``cursor``, ``agent``, ``kind``, ``state``, ``id``)."""
        limit = whole_number(params, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
        kind = params.get("kind", "all")
        if kind not in ("all", "runs"):
            raise BadQueryError(f"kind must be 'all' or 'runs', not {kind[:20]!r}")
        state = params.get("state", "all")
        if state not in ("all", "active"):
            raise BadQueryError(f"state must be 'all' or 'active', not {state[:20]!r}")
        agent = params.get("agent", "")
        agents: tuple[str, ...] = (agent,) if agent else ()
        if kind == "runs":
            agents = tuple(a for a in workflows if not agents or a in agents) or ("",)  # "": no workflow: no row
        return cls(owner, limit, params.get("cursor", ""), agents, state == "active", params.get("id", ""))


def whole_number(params: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    """Parameter ``name`` as a whole number from ``low`` to ``high``; absent: ``default``; else ``BadQueryError``."""
    text = params.get(name)
    if text is None:
        return default
    # ASCII digits only: str.isdigit() also passes "²", which int() refuses.
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise BadQueryError(f"{name} must be a whole number from {low} to {high}, not {text[:20]!r}")
    return int(text)


def encode_cursor(updated_ns: int, task_id: str) -> str:
    """The opaque cursor after the row ``(updated_ns, task_id)``."""
    return base64.urlsafe_b64encode(f"{updated_ns}:{task_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The row a cursor names; ``BadQueryError`` for one this API did not make."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, _, task_id = text.partition(":")
        updated_ns = int(stamp)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadQueryError("cursor is not one this API gave out; start again without it") from None
    if not task_id or not INT64_MIN <= updated_ns <= INT64_MAX:
        raise BadQueryError("cursor is not one this API gave out; start again without it")
    return updated_ns, task_id


def task_sql(query: TaskQuery) -> tuple[str, list[Any]]:
    """The SELECT (and its parameters) of one page of ``query``: one more row than the page, to know if more follow."""
    where: list[str] = []
    args: list[Any] = []
    if query.owner is not None:
        where.append("owner = ?")
        args.append(query.owner)
    if query.agents:
        where.append(f"agent IN ({', '.join('?' for _ in query.agents)})")
        args += list(query.agents)
    if query.active:
        where.append(f"state IN ({', '.join('?' for _ in ACTIVE_STATES)})")
        args += list(ACTIVE_STATES)
    if query.task_id:
        where.append("id = ?")
        args.append(query.task_id)
    if query.cursor:
        stamp, task_id = decode_cursor(query.cursor)
        where.append("(updated_ns < ? OR (updated_ns = ? AND id < ?))")
        args += [stamp, stamp, task_id]
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    sql = f"SELECT agent, owner, id, context_id, state, updated_ns, data FROM tasks {clause}"
    return sql + "ORDER BY updated_ns DESC, id DESC LIMIT ?", [*args, query.limit + 1]


def state_name(state: int) -> str:
    """``TASK_STATE_WORKING`` as the A2A JSON wire names it."""
    try:
        return str(TaskState.Name(state))
    except ValueError:
        return "TASK_STATE_UNSPECIFIED"


def _summary(task: Task) -> str:
    parts = task.status.message.parts if task.status.HasField("message") else []
    text = next((p.text for p in parts if p.HasField("text") and p.text.strip()), "")
    if not text and task.history:
        text = next((p.text for p in task.history[0].parts if p.HasField("text")), "")
    text = " ".join(text.split())
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _parent(task: Task) -> str:
    """The run a workflow step's child task belongs to (its first message names it), or ``""``."""
    for message in task.history[:1]:
        if message.HasField("metadata"):
            entry = MessageToDict(message.metadata).get(METADATA_KEY)
            if isinstance(entry, dict) and isinstance(entry.get("parent_task_id"), str):
                return str(entry["parent_task_id"])
    return ""


def _row(
    agent: str, owner: str, task_id: str, context_id: str, state: int, updated_ns: int, data: bytes
) -> dict[str, Any]:
    task = Task()
    task.ParseFromString(bytes(data))
    return {
        "agent": agent,
        "owner": owner,
        "id": task_id,
        "contextId": context_id,
        "state": state_name(state),
        "updatedNs": updated_ns,
        "summary": _summary(task),
        "parent": _parent(task),
    }


async def list_tasks(db: Database, query: TaskQuery, workflows: frozenset[str]) -> dict[str, Any]:
    """One page of tasks as JSON: ``{"tasks": [...], "next": cursor or ""}``."""
    sql, args = task_sql(query)
    rows = await db.scan(sql, args)
    page = rows[: query.limit]
    tasks = [_row(*row) | {"run": row[0] in workflows} for row in page]
    after = encode_cursor(int(page[-1][5]), str(page[-1][2])) if len(rows) > query.limit else ""
    return {"tasks": tasks, "next": after}


async def read_task(db: Database, agent: str, task_id: str, owner: str | None) -> dict[str, Any] | None:
    """One task as the A2A JSON wire shows it, with its owner (``owner`` None: whoever owns it), or None."""
    sql = "SELECT owner, data FROM tasks WHERE agent = ? AND id = ?"
    args: list[Any] = [agent, task_id]
    if owner is not None:
        sql += " AND owner = ?"
        args.append(owner)
    rows = await db.fetch_all(sql + " LIMIT 1", args)
    if not rows:
        return None
    task = Task()
    task.ParseFromString(bytes(rows[0][1]))
    return {"owner": rows[0][0], "task": MessageToDict(task)}
