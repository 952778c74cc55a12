"""Small agents for engine tests (python runtimes), and a folder builder for their agent files.

Agents that keep state across calls (a counter, a flaky agent) write it to a file named in
their ``runtime.options``, so it survives a gateway restart and a test can read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import Part, TaskState

from gateway.errors import GatewayError
from gateway.runtime import AgentCall, Emitter, Reply, Runtime, Usage
from gateway.settings import bundled_agents_dir

MODULE = "tests.orchestration.fixture_agents"


class FlakyError(GatewayError):
    """A failure worth retrying, as an overloaded model endpoint raises."""

    message = "temporarily unavailable"
    reason = "fixture-flaky"
    retryable: ClassVar[bool] = True


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _record(log: Path, text: str) -> int:
    with log.open("a") as out:
        out.write(text.replace("\n", " ") + "\n")
    return len(_calls(log))


def counter(log: str) -> Runtime:
    """Records each call's text in ``log`` and passes the text on."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        count = _record(Path(log), call.text)
        await emit.progress(f"counted call {count}")
        return Reply(text=call.text or "counted")

    return run


async def fail(call: AgentCall, emit: Emitter) -> Reply:
    """Always fails, for a reason of its own (not retryable)."""
    return Reply(text="broken on purpose", state="failed")


async def hang(call: AgentCall, emit: Emitter) -> Reply:
    """Works forever (until canceled)."""
    await emit.progress("working on it")
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def flaky(log: str, failures: int) -> Runtime:
    """Raises a retryable error on the first ``failures`` calls (counted in ``log``), then answers."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        count = _record(Path(log), call.text)
        if count <= failures:
            raise FlakyError(f"attempt {count} of the flaky agent")
        return Reply(text=f"answered on attempt {count}")

    return run


def spender(tokens: int) -> Runtime:
    """Answers and reports ``tokens`` tokens of usage (half in, half out)."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        return Reply(text=f"spent {tokens} tokens", usage=Usage(tokens // 2, tokens - tokens // 2, tokens / 1000))

    return run


def answer(text: str, confidence: float | None = None) -> Runtime:
    """Answers ``text`` with ``{"answer": text, "confidence": ...}`` as data."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        data: dict[str, Any] = {"answer": text}
        if confidence is not None:
            data["confidence"] = confidence
        return Reply(text=text, data=data)

    return run


async def refuse(call: AgentCall, emit: Emitter) -> Reply:
    """Never approves (a checker that keeps a loop going)."""
    return Reply(text="needs more work")


class GarbageExecutor(AgentExecutor):
    """Breaks the protocol: a direct message after its task."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Enqueue the task, then a message, which the SDK refuses."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await event_queue.enqueue_event(new_task(updater.task_id, updater.context_id, TaskState.TASK_STATE_SUBMITTED))
        await event_queue.enqueue_event(updater.new_agent_message([Part(text="not how tasks end")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Nothing to cancel."""


class ExplodingExecutor(AgentExecutor):
    """An executor with a bug: it raises once its task is working."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Start the task, then raise."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await event_queue.enqueue_event(new_task(updater.task_id, updater.context_id, TaskState.TASK_STATE_SUBMITTED))
        await updater.start_work()
        raise RuntimeError("the fuse was lit")

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Nothing to cancel."""


# -- agent files -------------------------------------------------------------------------------


def agent_file(name: str, runtime: Mapping[str, Any], description: str = "") -> dict[str, Any]:
    """The content of one agent file."""
    skill = {"id": name, "name": name, "description": description or f"the {name} agent", "tags": ["test"]}
    return {
        "format": 1,
        "name": name,
        "description": description or f"The {name} test agent.",
        "skills": [{**skill, "examples": [f"ask {name}"]}],
        "runtime": dict(runtime),
    }


def python_agent(name: str, entrypoint: str, **options: Any) -> dict[str, Any]:
    """An agent file for a fixture agent of this module (or any ``module:attr`` with a colon)."""
    target = entrypoint if ":" in entrypoint else f"{MODULE}:{entrypoint}"
    runtime: dict[str, Any] = {"kind": "python", "entrypoint": target}
    if options:
        runtime["options"] = options
    return agent_file(name, runtime)


def workflow(
    name: str,
    pattern: str,
    participants: Iterable[str],
    options: Mapping[str, Any] | None = None,
    limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A workflow agent file."""
    runtime: dict[str, Any] = {"kind": "workflow", "pattern": pattern, "participants": list(participants)}
    if options:
        runtime["options"] = dict(options)
    if limits:
        runtime["limits"] = dict(limits)
    return agent_file(name, runtime, f"The {name} test workflow.")


def agents_folder(folder: Path, files: Iterable[Mapping[str, Any]], bundled: Iterable[str] = ()) -> Path:
    """A folder holding ``files`` (as YAML; JSON is YAML) and copies of the named bundled agents."""
    folder.mkdir(parents=True, exist_ok=True)
    for content in files:
        (folder / f"{content['name']}.yaml").write_text(json.dumps(content, indent=2))
    for name in bundled:
        (folder / f"{name}.yaml").write_text((bundled_agents_dir() / f"{name}.yaml").read_text())
    return folder
