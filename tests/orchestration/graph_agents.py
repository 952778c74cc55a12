"""Agents for graph tests: each reads the run's state from its data part and writes fields back."""

from __future__ import annotations

from typing import Any

from gateway.runtime import AgentCall, Emitter, Reply, Runtime


def state_of(call: AgentCall) -> dict[str, Any]:
    """The graph's state as a node gets it (``{"state": ..., "graph": ...}``)."""
    for part in call.data:
        if isinstance(part.get("state"), dict):
            return dict(part["state"])
    return {}


def setter(field: str, value: Any, text: str = "") -> Runtime:
    """Writes ``field: value`` and answers ``text`` (or what it got)."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        return Reply(text=text or call.text, data={field: value})

    return run


def bump(field: str) -> Runtime:
    """Adds one to the integer ``field`` of the state."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        count = int(state_of(call).get(field, 0)) + 1
        await emit.progress(f"{field} is now {count}")
        return Reply(text=f"attempt {count}", data={field: count})

    return run


def judge(field: str, at_least: int) -> Runtime:
    """Approves once the state's ``field`` reaches ``at_least``."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        approved = int(state_of(call).get(field, 0)) >= at_least
        return Reply(text="approved" if approved else "not yet", data={"approved": approved})

    return run
