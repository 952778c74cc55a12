"""Run checkpoints: a run's request and every finished step, saved after each step.

One row per run in the ``runs`` table, beside the tasks in the same database. The engine
resumes by replay: the pattern runs again from the start, and each step whose result the
checkpoint holds returns that result without calling the agent (see ``engine``).

Each step is saved under its number with the result's fields and ``key``, the step's identity
(``engine.step_key``: who was asked what, at which point of the pattern), by which a replay finds
it. A checkpoint written before steps had keys holds results by number only (``unkeyed``).

A run's deadline is a budget of time spent running: ``elapsed_ns`` is the time the run had spent
at its last checkpoint, measured on the monotonic clock of the process running it (``engine``),
so a resumed run gets the budget it had left then, and the time the gateway was down (or a paused
run waited for its answer) does not count. ``started_ns`` and ``updated_ns`` are wall-clock times,
for people and for ordering. A checkpoint written before ``elapsed_ns`` was kept (read back as -1)
is taken to have spent the wall-clock time between its start and its last save.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from a2a.types.a2a_pb2 import Message

from gateway.auth.policy import Identity
from gateway.orchestration.api import StepResult
from gateway.runtime import Usage
from gateway.store.database import Database
from gateway.store.leases import Lease, LeaseLostError, fence_clause
from gateway.store.tasks import INTERRUPTIBLE

RunState = Literal["running", "input-required", "completed", "failed", "canceled"]
FINISHED_RUN_STATES: frozenset[str] = frozenset({"completed", "failed", "canceled"})

_COLUMNS = (
    "run_id, agent, owner, task_id, context_id, state, fingerprint, hops, request, steps, started_ns, updated_ns, "
    "elapsed_ns, caller"
)
_UPSERT = (
    f"INSERT INTO runs ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id) DO UPDATE SET state = excluded.state, fingerprint = excluded.fingerprint, "
    "steps = excluded.steps, updated_ns = excluded.updated_ns, elapsed_ns = excluded.elapsed_ns, "
    "caller = excluded.caller"
)
_UPSERT_FENCED = _UPSERT + fence_clause("excluded.agent, excluded.owner, excluded.task_id")


_STEP_FIELDS = tuple(f.name for f in dataclasses.fields(StepResult))


def step_to_json(result: StepResult) -> dict[str, Any]:
    """A step result as plain JSON values (shallow: ``asdict`` would deep-copy every step's data)."""
    value = {name: getattr(result, name) for name in _STEP_FIELDS}
    value["usage"] = dataclasses.asdict(result.usage) if result.usage else None
    return value


def step_from_json(value: dict[str, Any]) -> StepResult:
    """A step result saved by ``step_to_json``."""
    usage = value.get("usage")
    fields = {f.name for f in dataclasses.fields(StepResult)}
    return StepResult(**{**{k: v for k, v in value.items() if k in fields}, "usage": Usage(**usage) if usage else None})


@dataclass
class RunRecord:
    """One run of a workflow, as checkpointed.

    ``caller`` is who the run acts for (None: anonymous): every step is authorised as that caller,
    so a resumed run's steps are checked as the first ones were. A follow-up's caller replaces it.
    """

    run_id: str
    agent: str
    owner: str
    task_id: str
    context_id: str
    fingerprint: str
    request: Message
    hops: int = 0
    state: RunState = "running"
    steps: dict[int, StepResult] = field(default_factory=dict)
    keys: dict[int, str] = field(default_factory=dict)  # each step's identity (``engine.step_key``), by number
    started_ns: int = field(default_factory=time.time_ns)
    updated_ns: int = 0
    elapsed_ns: int = 0  # time spent running, as of the last checkpoint (see the module docstring)
    caller: Identity | None = None
    _encoded: dict[int, tuple[StepResult, str, str]] = field(default_factory=dict, repr=False, compare=False)
    _request_bytes: bytes = field(default=b"", repr=False, compare=False)  # the request, encoded once per run
    lease: Lease | None = field(default=None, repr=False, compare=False)
    """On PostgreSQL, the run's lease on this replica: its checkpoints are written only while it is held."""

    def _steps_json(self) -> str:
        # A checkpoint is saved after every step: encode each step once, not the whole run each time
        # (a fan-out of 100 spent most of its checkpoint time re-encoding finished steps).
        parts = []
        for number, result in sorted(self.steps.items()):
            key = self.keys.get(number, "")
            cached = self._encoded.get(number)
            if cached is None or cached[0] is not result or cached[1] != key:
                value = step_to_json(result)
                if key:
                    value["key"] = key
                cached = (result, key, json.dumps(value, ensure_ascii=False))
                self._encoded[number] = cached
            parts.append(f'"{number}":{cached[2]}')
        return "{" + ",".join(parts) + "}"

    @property
    def unkeyed(self) -> bool:
        """Whether some finished step has no key: the checkpoint was written before steps had keys."""
        return any(number not in self.keys for number in self.steps)

    @property
    def finished(self) -> bool:
        """Whether the run ended (completed, failed or canceled)."""
        return self.state in FINISHED_RUN_STATES

    def row(self) -> tuple[Any, ...]:
        """The values of the row, in ``_COLUMNS`` order."""
        steps = self._steps_json()
        if not self._request_bytes:
            self._request_bytes = self.request.SerializeToString()
        return (
            self.run_id,
            self.agent,
            self.owner,
            self.task_id,
            self.context_id,
            self.state,
            self.fingerprint,
            self.hops,
            self._request_bytes,
            steps,
            self.started_ns,
            self.updated_ns,
            self.elapsed_ns,
            self.caller.to_json() if self.caller is not None else "",
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> RunRecord:
        """A record read back from the database."""
        run_id, agent, owner, task_id, context_id, state, fingerprint, hops, request, steps = row[:10]
        started, updated, spent = (int(value) for value in row[10:13])
        saved = {int(n): v for n, v in json.loads(steps).items()}
        return cls(
            run_id=run_id,
            agent=agent,
            owner=owner,
            task_id=task_id,
            context_id=context_id,
            state=state,
            fingerprint=fingerprint,
            hops=int(hops),
            request=Message.FromString(bytes(request)),
            steps={n: step_from_json(v) for n, v in saved.items()},
            keys={n: v["key"] for n, v in saved.items() if isinstance(v.get("key"), str) and v["key"]},
            started_ns=started,
            updated_ns=updated,
            elapsed_ns=spent if spent >= 0 else max(updated - started, 0),
            caller=Identity.from_json(row[13]),
        )


class SqlRunStore:
    """Run checkpoints in the gateway's database (SQLite or PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, record: RunRecord) -> None:
        """Insert or update the run; returns after the write committed (fenced by the run's lease, if it has one)."""
        record.updated_ns = time.time_ns()
        if record.lease is not None:  # ``LeaseLostError`` once another replica may run it
            try:
                await self._db.write(_UPSERT_FENCED, (*record.row(), *record.lease.fence()))
            except LeaseLostError:
                record.lease.refused()
                raise
            return
        await self._db.write(_UPSERT, record.row())

    async def get(self, agent: str, owner: str, task_id: str) -> RunRecord | None:
        """The run of task ``task_id`` of workflow ``agent`` for ``owner``, or None."""
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM runs WHERE agent = ? AND owner = ? AND task_id = ?", (agent, owner, task_id)
        )
        return RunRecord.from_row(row) if row else None

    async def interrupted(self) -> list[RunRecord]:
        """Every run whose task a stop left submitted or working, oldest first."""
        marks = ", ".join("?" for _ in INTERRUPTIBLE)
        columns = ", ".join(f"r.{c.strip()}" for c in _COLUMNS.split(","))
        rows = await self._db.fetch_all(
            f"SELECT {columns} FROM runs r JOIN tasks t ON t.agent = r.agent AND t.owner = r.owner "
            f"AND t.id = r.task_id WHERE t.state IN ({marks}) ORDER BY r.started_ns",
            [int(s) for s in INTERRUPTIBLE],
        )
        return [RunRecord.from_row(row) for row in rows]
