"""An agent that holds its run until the test opens its gate (the gateway runs in the test's event loop)."""

from __future__ import annotations

import asyncio

from gateway.runtime import AgentCall, Emitter, Reply, Runtime

MODULE = "tests.hosting.gated_agents"
_GATES: dict[str, asyncio.Event] = {}
_ENTERED: dict[str, asyncio.Queue[str]] = {}


def gate(name: str) -> asyncio.Event:
    """The gate of agent ``name``: its runs end once it is set."""
    return _GATES.setdefault(name, asyncio.Event())


def entered(name: str) -> asyncio.Queue[str]:
    """The texts of the runs of agent ``name`` that started (in order)."""
    return _ENTERED.setdefault(name, asyncio.Queue())


def reset() -> None:
    """Fresh gates for the next test (each gateway has its own event loop)."""
    _GATES.clear()
    _ENTERED.clear()


def gated(gate_name: str) -> Runtime:
    """Says it started, waits for its gate, then answers."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        entered(gate_name).put_nowait(call.text)
        await emit.progress(f"{gate_name} holding")
        await gate(gate_name).wait()
        return Reply(text=f"{gate_name} done: {call.text}")

    return run


async def fast(call: AgentCall, emit: Emitter) -> Reply:
    """Answers at once (a fallback for degraded mode)."""
    return Reply(text=f"fast answer: {call.text}")
