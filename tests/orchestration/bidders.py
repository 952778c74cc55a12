"""Agents for contract-net tests: they bid when called for bids and work when awarded the task."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.runtime import AgentCall, Emitter, Reply, Runtime

UNSET: Any = "unset"


def phase_of(call: AgentCall) -> dict[str, Any]:
    """The ``contract_net`` data part of a call (empty when there is none)."""
    for part in call.data:
        if isinstance(part.get("contract_net"), dict):
            return dict(part["contract_net"])
    return {}


def bidder(
    cost: float = 1.0,
    capability: Any = 1.0,
    confidence: float = 0.5,
    load: float = 0.0,
    raw: Any = UNSET,
    fail_award: bool = False,
    hang: bool = False,
) -> Runtime:
    """Bids ``{capability, cost, confidence, load}`` (or ``raw`` as the bid, as sent), then does the task.

    ``hang`` never answers the call for bids; ``fail_award`` fails the task once awarded.
    """

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        phase = phase_of(call)
        if phase.get("phase") == "call-for-bids":
            if hang:
                await asyncio.Event().wait()
            bid = (
                raw
                if raw != UNSET
                else {"capability": capability, "cost": cost, "confidence": confidence, "load": load}
            )
            return Reply(text="my bid", data={"bid": bid})
        if fail_award:
            return Reply(text="could not do it after all", state="failed")
        await emit.progress(f"working on round {phase.get('round')}'s award")
        return Reply(
            text=f"done at cost {cost:g}: {call.text}", data={"cost": cost, "coalition": phase.get("coalition")}
        )

    return run


def logging_bidder(log: str, cost: float = 1.0) -> Runtime:
    """Bids like ``bidder``, and records each call's phase in ``log`` (it survives a restart)."""
    inner = bidder(cost=cost, capability=1.0, confidence=0.9)

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        _append(log, str(phase_of(call).get("phase", "none")))
        return await inner(call, emit)

    return run


def _append(log: str, line: str) -> None:
    with open(log, "a") as out:
        out.write(f"{line}\n")
