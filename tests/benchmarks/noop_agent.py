"""The no-op agent of ``bench_orchestration.py``: a python runtime that answers "ok" at once.

Its agent files name it ``tests.benchmarks.noop_agent:noop``; the benchmark puts the repository
root on ``sys.path`` so the gateway's ``python`` adapter can import it.
"""

from __future__ import annotations

from gateway.runtime import AgentCall, Emitter, Reply


async def noop(call: AgentCall, emit: Emitter) -> Reply:
    """Does nothing and answers "ok"."""
    return Reply(text="ok")
