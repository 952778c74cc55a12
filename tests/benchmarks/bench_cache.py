"""Result cache: a cache hit against a call to a no-op agent, in one process, alternating rounds.

The gateway app is built in-process (as ``bench_orchestration.py`` does) over two python agents
running ``noop_agent.noop`` (answers "ok" at once): ``bench-noop`` without a cache and
``bench-cached`` with ``cache: {ttl_s: 3600}``. Two arms, their order alternating every round:

* ``hit``   the cached agent's request handler, the same request every time (a hit after the first);
* ``noop``  the uncached agent's request handler (the floor: a task run on the agent's runner).

Both return a completed task saved in the task store. The target (issue #20) is that the hit is
cheaper: ``p50(hit) / p50(noop) < 1`` in wall time, and in CPU time. Usage::

    python tests/benchmarks/bench_cache.py --quick     # under half a minute
    python tests/benchmarks/bench_cache.py             # about a minute
"""

from __future__ import annotations

import argparse
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from a2a.server.context import ServerCallContext  # noqa: E402
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from tests.benchmarks import rounds_cli as rounds  # noqa: E402
from tests.benchmarks.bench_a2a import BenchError  # noqa: E402
from tests.benchmarks.bench_orchestration import RunFn, _completed, window  # noqa: E402
from tests.orchestration.fixture_agents import agents_folder, python_agent  # noqa: E402

NOOP = "tests.benchmarks.noop_agent:noop"
HIT, FLOOR = "hit", "noop"
ARMS = (HIT, FLOOR)
AGENTS = {HIT: "bench-cached", FLOOR: "bench-noop"}
TARGET_RATIO = 1.0


def write_agents(folder: Path) -> Path:
    cached = {**python_agent(AGENTS[HIT], NOOP), "cache": {"ttl_s": 3600}}
    return agents_folder(folder, [cached, python_agent(AGENTS[FLOOR], NOOP)])


def same_request() -> SendMessageRequest:
    """The same request text every time (a new message id, as a real caller sends)."""
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="the same question")])
    return SendMessageRequest(message=message)


def arm_runner(gateway: Gateway, arm: str) -> RunFn:
    agent = AGENTS[arm]
    handler = gateway.agents[agent].handler

    async def run() -> None:
        task = await handler.on_message_send(same_request(), ServerCallContext())
        _completed(task, agent)
        hit = "cache" in task.metadata  # type: ignore[union-attr]
        if hit != (arm == HIT):
            raise BenchError(f"{agent}: expected {'a hit' if arm == HIT else 'no cache'}, got {task.metadata}")  # type: ignore[union-attr]

    return run


async def measure(args: argparse.Namespace, work: Path) -> dict[str, rounds.Samples]:
    async with rounds.in_process(work, write_agents(work / "agents")) as gateway:
        await gateway.agents[AGENTS[HIT]].handler.on_message_send(same_request(), ServerCallContext())  # the entry
        return await rounds.alternate(args, {arm: arm_runner(gateway, arm) for arm in ARMS}, window)


def main(argv: Sequence[str] | None = None) -> int:
    args = rounds.round_args(argv, "A result-cache hit vs a call to a no-op agent.", out="cache.json", min_runs=20)
    load = list(os.getloadavg())
    times = rounds.measured(args, "cache", measure)
    ratios = [
        rounds.ratio(
            f"cache hit / no-op agent call ({kind} p50)",
            f"p50 {kind} ms of a hit over p50 {kind} ms of a no-op agent's task, pooled rounds",
            lambda i, kind=kind: rounds.p50(times[kind], HIT, i) / rounds.p50(times[kind], FLOOR, i),
            args.rounds,
            TARGET_RATIO,
        )
        for kind in rounds.KINDS
    ]
    rounds.write_report(args, "cache", load, rounds.arm_medians(times), ratios)
    missed = any(r.value is None or r.value >= TARGET_RATIO for r in ratios)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
