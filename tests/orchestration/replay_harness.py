"""The real engine over scripted agents, in-process, keeping every checkpoint it writes: to interrupt and resume.

``execute`` runs a workflow plan on ``EngineRun`` as the workflow executor does, with each step a
``LocalChild`` whose runner (``ScriptedRunner``) answers from a script instead of running an
executor: the engine's numbering, retries, fallbacks, checkpoints and the patterns are the real
ones. The run's database is a ``CheckpointLog``: every checkpoint row the engine writes, in order,
so row ``k`` is what a gateway killed right after its ``k``-th checkpoint committed leaves on disk.
``resume`` runs the plan again from such a row, as a restarted gateway does (a new ``EngineRun``
on the record read back from the row, fresh breakers, a new clock).

A script answers ``(agent, text, data, call)``, where ``call`` counts the calls of that agent with
that input in this execution (1 for the first), and may make the answer wait some event-loop
passes, so steps started together finish in another order than they started.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Artifact, Message, Part, Role, Task, TaskState, TaskStatus

from gateway.errors import UnknownAgentError
from gateway.hosting.executor import data_part, message_input, reply_metadata
from gateway.orchestration.api import AgentInfo, Limits, Outcome, PatternSpec
from gateway.orchestration.breaker import BreakerBoard
from gateway.orchestration.catalog import pattern
from gateway.orchestration.checkpoints import RunRecord
from gateway.orchestration.engine import EngineRun
from gateway.orchestration.step_outputs import StepOutput
from gateway.orchestration.workflows import WorkflowPlan
from gateway.runtime import Reply, Usage

_STATES = {
    "completed": TaskState.TASK_STATE_COMPLETED,
    "failed": TaskState.TASK_STATE_FAILED,
    "input-required": TaskState.TASK_STATE_INPUT_REQUIRED,
}


@dataclass(frozen=True)
class Answer:
    """What a scripted agent answers: a reply, whether a failure is worth retrying, and how late it comes."""

    text: str = ""
    state: str = "completed"
    data: dict[str, Any] | None = None
    retryable: bool = False
    handoff_to: str = ""
    delay: int = 0  # event-loop passes before the answer
    tokens: int = 0  # output tokens the answer reports (for budgets)


Script = Callable[[str, str, tuple[dict[str, Any], ...], int], Answer]


class ScriptedRunner:
    """A ``LocalRunner`` look-alike for one agent: the step's task, answered by the script."""

    def __init__(self, agent: str, agents: ScriptedAgents) -> None:
        self.agent = agent
        self._agents = agents

    async def run(self, message: Message, context: ServerCallContext, progress: Any = None, **_: Any) -> Task:
        """Answer ``message`` as a finished (or input-required) task."""
        message.task_id = message.task_id or uuid.uuid4().hex
        text, _files, data = message_input(message)
        answer = self._agents.answer(self.agent, text, data)
        for _ in range(answer.delay):
            await asyncio.sleep(0)
        self._agents.answered.append(self.agent)
        usage = Usage(output_tokens=answer.tokens) if answer.tokens else None
        reply = Reply(text=answer.text, data=answer.data, state=answer.state, handoff_to=answer.handoff_to, usage=usage)  # type: ignore[arg-type]
        status = Message(role=Role.ROLE_AGENT, message_id=uuid.uuid4().hex, parts=[Part(text=answer.text)])
        status.metadata.update(reply_metadata(reply, retryable=answer.retryable))
        task = Task(id=message.task_id, context_id=message.context_id, status=TaskStatus(state=_STATES[answer.state]))
        task.status.message.CopyFrom(status)
        if answer.data is not None:
            task.artifacts.append(Artifact(artifact_id="result", parts=[data_part(answer.data)]))
        return task

    async def cancel(self, task_id: str) -> bool:
        """Nothing keeps running between answers."""
        return False


@dataclass
class ScriptedAgents:
    """The agents of one execution: their script, and every call they got, in order."""

    script: Script
    names: Collection[str]
    calls: list[tuple[str, str]] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)  # the agents that gave their answer, in order
    _counts: dict[str, int] = field(default_factory=dict)

    def answer(self, agent: str, text: str, data: tuple[dict[str, Any], ...]) -> Answer:
        """The script's answer to this call (counting it)."""
        self.calls.append((agent, text))
        seen = f"{agent}\n{text}\n{json.dumps(data, sort_keys=True)}"
        self._counts[seen] = count = self._counts.get(seen, 0) + 1
        return self.script(agent, text, data, count)


class CheckpointLog:
    """The run's database as the engine uses it: each checkpoint row written, in order."""

    dialect = "sqlite"
    exclusive = True

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    async def write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Keep the row; commit in a later loop pass, as the real database does."""
        self.rows.append(tuple(params))
        await asyncio.sleep(0)
        return 1


class ScriptedHost:
    """The ``Host`` a run sees: scripted agents, a checkpoint log, fresh breakers (as after a restart)."""

    def __init__(self, agents: ScriptedAgents, db: CheckpointLog) -> None:
        self.db = db
        self.breakers = BreakerBoard()
        self.stopping = False
        self.leases = None
        self.work_items = None
        self._agents = agents

    def handler(self, name: str) -> Any:
        raise UnknownAgentError(f"{name!r} is not hosted here")

    def local_runner(self, name: str) -> ScriptedRunner | None:
        return ScriptedRunner(name, self._agents) if name in self._agents.names else None

    def spec(self, name: str) -> None:
        return None

    def describe(self, name: str) -> AgentInfo:
        return AgentInfo(name=name, description=f"the {name} agent")


class Events:
    """The run's published progress and step outputs."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.outputs: list[StepOutput] = []
        self.artifacts: list[tuple[str, Any]] = []

    async def progress(self, *lines: str) -> None:
        self.lines.extend(lines)

    async def steps(self, outputs: Sequence[StepOutput]) -> None:
        self.outputs.extend(outputs)

    async def artifact(self, name: str, data: Any) -> None:
        self.artifacts.append((name, data))


def plan(
    name: str,
    participants: Sequence[str],
    options: Mapping[str, Any] | None = None,
    limits: Limits | None = None,
    fallbacks: Mapping[str, Sequence[str]] | None = None,
) -> WorkflowPlan:
    """A workflow plan, as ``plan_workflow`` makes one from a file."""
    spec: PatternSpec = pattern(name)
    return WorkflowPlan(
        name=f"{name}-flow",
        pattern=spec,
        participants=tuple(participants),
        options=spec.options.model_validate(dict(options or {})),
        limits=limits or Limits(),
        fallbacks={agent: tuple(alts) for agent, alts in (fallbacks or {}).items()},
        fingerprint="f" * 32,
    )


def new_record(text: str = "", data: Mapping[str, Any] | None = None) -> RunRecord:
    """A fresh run's record for a request with ``text`` and an optional data part."""
    parts = [Part(text=text)] if text else []
    if data is not None:
        parts.append(data_part(dict(data)))
    request = Message(role=Role.ROLE_USER, message_id="request", parts=parts)
    return RunRecord("run-1", "flow", "", "task-1", "ctx-1", "f" * 32, request)


@dataclass
class Execution:
    """One execution of a run: its outcome, the checkpoints it wrote, and the calls its agents got."""

    outcome: Outcome
    checkpoints: list[tuple[Any, ...]]
    calls: list[tuple[str, str]]
    events: Events
    answered: list[str] = field(default_factory=list)


async def execute(
    flow: WorkflowPlan,
    record: RunRecord,
    script: Script,
    *,
    clock: Callable[[], float] | None = None,
    published: Collection[int] = (),
    answer: str | None = None,
) -> Execution:
    """Run ``flow`` on ``record`` to its outcome, as the workflow executor does (``answer``: the caller's answer
    to a run that asked for input)."""
    agents = ScriptedAgents(script, flow.agents())
    log = CheckpointLog()
    events = Events()
    extra: dict[str, Any] = {"clock": clock} if clock is not None else {}
    if answer is not None:
        extra["answer"] = Message(role=Role.ROLE_USER, message_id="answer", parts=[Part(text=answer)])
    run = EngineRun(
        flow,
        ScriptedHost(agents, log),  # type: ignore[arg-type]
        record,
        ServerCallContext(),
        events,
        published=published,
        rng=random.Random(0),
        **extra,
    )
    outcome = await run.execute()
    return Execution(outcome, log.rows, agents.calls, events, agents.answered)


async def resume(flow: WorkflowPlan, row: tuple[Any, ...], script: Script) -> Execution:
    """Run ``flow`` again from checkpoint ``row``, as a restarted gateway does."""
    return await execute(flow, RunRecord.from_row(row), script)
