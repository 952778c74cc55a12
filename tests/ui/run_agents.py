"""Fixture agents for the dashboard's run pages: a magentic manager that plans, stalls, re-plans and
finishes, and a work-queue worker that fails some items and holds others until the test releases them.

A hold is a named pipe: the worker blocks opening it for reading until the test opens it for
writing, so the test decides when a held item finishes, with no sleeping on either side.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from gateway.runtime import AgentCall, Emitter, Reply, Runtime
from tests.orchestration.fixture_agents import python_agent, workflow

MODULE = "tests.ui.run_agents"
FIRST_PLAN = {"facts": ["test_io is flaky"], "plan": ["find what makes test_io flaky", "fix it"]}
NEW_PLAN = {"facts": ["test_io sleeps 1 s", "the sleep races the writer"], "plan": ["replace the sleep by an event"]}


def _ledger(speaker: str, instruction: str, *, progress: bool = True, satisfied: bool = False) -> dict[str, Any]:
    return {
        "is_request_satisfied": {"answer": satisfied, "reason": "the fix is in" if satisfied else "not yet"},
        "is_in_loop": {"answer": False, "reason": "-"},
        "is_progress_being_made": {"answer": progress, "reason": "-" if progress else "the same search again"},
        "next_speaker": {"answer": speaker, "reason": "-"},
        "instruction_or_question": {"answer": instruction, "reason": "-"},
        **({"final_answer": "test_io now waits on an event"} if satisfied else {}),
    }


async def manager(call: AgentCall, emit: Emitter) -> Reply:
    """Plans; round 1 sends the searcher; round 2 reports no progress (a stall: re-plan with max_stalls 1);
    after the new plan the coder fixes it; then the request is satisfied."""
    context = next((part["magentic"] for part in call.data if "magentic" in part), {})
    if context.get("role") == "plan":
        return Reply(data=FIRST_PLAN)
    if context.get("role") == "replan":
        return Reply(data=NEW_PLAN)
    steps = context.get("steps", [])
    replanned = context.get("task_ledger") == NEW_PLAN
    if not steps:
        return Reply(data=_ledger("searcher", "find what makes test_io flaky"))
    if len(steps) == 1 and not replanned:
        return Reply(data=_ledger("searcher", "search the logs again", progress=False))
    if len(steps) == 1:
        return Reply(data=_ledger("coder", "replace the sleep in test_io by an event"))
    return Reply(data=_ledger("", "", satisfied=True))


async def searcher(call: AgentCall, emit: Emitter) -> Reply:
    """Finds the sleep."""
    return Reply(text="test_io sleeps 1 s before reading what the writer wrote")


async def coder(call: AgentCall, emit: Emitter) -> Reply:
    """Patches the test."""
    return Reply(text="patched test_io: it waits on the writer's event")


def worker(holds: str) -> Runtime:
    """Does an item: ``broken ...`` fails; ``flaky ...`` fails the first time (a marker file in ``holds``
    remembers it); ``hold NAME ...`` waits on the named pipe ``holds/NAME`` first."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        words = call.text.split()
        if words[0] == "broken":
            return Reply(text=f"cannot do {call.text!r}", state="failed")
        if words[0] == "flaky":
            marker = Path(holds) / f"tried {call.text}"
            if not marker.exists():
                marker.touch()
                return Reply(text=f"not this time: {call.text!r}", state="failed")
        if words[0] == "hold":
            await asyncio.to_thread((Path(holds) / words[1]).read_text)
        return Reply(text=f"did {call.text}")

    return run


def pipe(holds: Path, name: str) -> Path:
    """The named pipe an item ``hold NAME`` waits on (made when missing)."""
    path = holds / name
    if not path.exists():
        os.mkfifo(path)
    return path


def release(hold: Path) -> None:
    """Let the held item finish: open the pipe for writing (it waits for the worker to open it) and close it."""
    hold.write_text("go")


def release_if_waiting(hold: Path) -> None:
    """Release a worker already waiting on the pipe, without waiting for one (a test that failed half-way)."""
    with contextlib.suppress(OSError):
        os.close(os.open(hold, os.O_WRONLY | os.O_NONBLOCK))


def release_all(holds: Path) -> None:
    """Release every worker waiting on a pipe in ``holds`` (at the end, whatever the tests did)."""
    for hold in holds.iterdir():
        if hold.is_fifo():
            release_if_waiting(hold)


def files(holds: Path) -> list[dict[str, Any]]:
    """The agent files: the magentic team and workflow, the work-queue pool and workflow."""
    return [
        python_agent("manager", f"{MODULE}:manager"),
        python_agent("searcher", f"{MODULE}:searcher"),
        python_agent("coder", f"{MODULE}:coder"),
        workflow("fix-flaky", "magentic", ["manager", "searcher", "coder"], {"max_stalls": 1}),
        python_agent("pool-a", f"{MODULE}:worker", holds=str(holds)),
        python_agent("pool-b", f"{MODULE}:worker", holds=str(holds)),
        workflow("batch", "work-queue", ["pool-a", "pool-b"], {"concurrency": 2, "max_attempts": 2}),
    ]
