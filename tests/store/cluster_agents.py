"""An agent for the cluster tests that runs on the ``LocalRunner`` (a ``(call, emit)`` runtime, not an executor)."""

from __future__ import annotations

import asyncio
import time

from gateway.runtime import AgentCall, Emitter, Reply

TICK_S = 0.25


async def ticker(call: AgentCall, emit: Emitter) -> Reply:
    """Counts to the number it is sent, one progress update every ``TICK_S``."""
    count = int(call.text)
    for n in range(count):
        await emit.progress(f"tick {n + 1} of {count}")
        await asyncio.sleep(TICK_S)
    return Reply(text=f"ticked {count}")


async def stamper(call: AgentCall, emit: Emitter) -> Reply:
    """After ``settle`` seconds, ``count`` progress updates each carrying the time it was sent (ns since the epoch).

    Sent ``"count settle gap"``: the latency benchmark's probe (``tests/benchmarks/bench_cluster.py``).
    """
    count, settle, gap = call.text.split()
    await asyncio.sleep(float(settle))
    for _ in range(int(count)):
        await emit.progress(str(time.time_ns()))
        await asyncio.sleep(float(gap))
    return Reply(text="stamped")
