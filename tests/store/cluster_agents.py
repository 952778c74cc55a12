"""An agent for the cluster tests that runs on the ``LocalRunner`` (a ``(call, emit)`` runtime, not an executor)."""

from __future__ import annotations

import asyncio
import os
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


PROBE_TICK_S = 0.1


def _probe_log(key: str, kind: str) -> None:
    """One line ``key pid kind ns`` appended to the file named by ``SWITCHBOARD_PROBE_LOG`` (shared by processes)."""
    with open(os.environ["SWITCHBOARD_PROBE_LOG"], "a") as log:
        log.write(f"{key} {os.getpid()} {kind} {time.time_ns()}\n")


async def _probe(name: str, call: AgentCall, emit: Emitter) -> Reply:
    """Sent ``"label ticks"``: works ``ticks`` times ``PROBE_TICK_S``, stamping each moment it runs; replies the same.

    Every moment its code runs is a stamp (start, each tick, end), so two executions of one step
    that overlap in time show as interleaved stamps; a cancel is stamped as such (no work after it).
    """
    label, ticks = call.text.split()
    key = f"{label}:{name}"
    _probe_log(key, "start")
    try:
        for n in range(int(ticks)):
            await asyncio.sleep(PROBE_TICK_S)
            _probe_log(key, "tick")
            if n % 5 == 0:
                await emit.progress(f"{name} tick {n + 1}")
    except asyncio.CancelledError:
        _probe_log(key, "canceled")
        raise
    _probe_log(key, "end")
    return Reply(text=call.text)


async def probe_a(call: AgentCall, emit: Emitter) -> Reply:
    """Step a of the failover tests' pipeline (``_probe``)."""
    return await _probe("a", call, emit)


async def probe_b(call: AgentCall, emit: Emitter) -> Reply:
    """Step b (``_probe``)."""
    return await _probe("b", call, emit)


async def probe_c(call: AgentCall, emit: Emitter) -> Reply:
    """Step c (``_probe``)."""
    return await _probe("c", call, emit)
