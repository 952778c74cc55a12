"""The no-op agent of ``bench_orchestration.py``: a python runtime that answers "ok" at once.

Its agent files name it ``tests.benchmarks.noop_agent:noop``; the benchmark puts the repository
root on ``sys.path`` so the gateway's ``python`` adapter can import it.
"""

from __future__ import annotations

import asyncio

from gateway.runtime import AgentCall, Emitter, Reply


async def noop(call: AgentCall, emit: Emitter) -> Reply:
    """Does nothing and answers "ok"."""
    return Reply(text="ok")


async def noop_bidder(call: AgentCall, emit: Emitter) -> Reply:
    """Bids at once when called for bids (a ``contract_net`` data part), else does nothing and answers "ok"."""
    if any(isinstance(part.get("contract_net"), dict) for part in call.data):
        phase = next(part["contract_net"] for part in call.data if isinstance(part.get("contract_net"), dict))
        if phase.get("phase") == "call-for-bids":
            return Reply(text="bid", data={"bid": {"capability": 1.0, "cost": 1.0, "confidence": 0.5}})
    return Reply(text="ok")


async def wait_briefly(call: AgentCall, emit: Emitter) -> Reply:
    """Waits a millisecond (as an agent waiting on I/O does), then answers "ok"."""
    await asyncio.sleep(0.001)
    return Reply(text="ok")
