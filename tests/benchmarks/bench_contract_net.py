"""Contract-net overhead: a round with 10 no-op bidders against a concurrent fan-out to the same 10, in one process.

The gateway app is built in-process (as ``bench_orchestration.py`` does) over ten no-op python
agents (``noop_agent.noop_bidder``: a fixed bid when called for bids, "ok" otherwise) and two
workflows over them: ``bench-tender`` (``contract-net``, one contractor: 10 bid steps, then 1
award step) and ``bench-fan`` (``concurrent``, merge ``concatenate``: 10 steps). Three arms,
their order alternating every round (A B C, C B A, ...):

* ``contract-net``  the tender workflow's handler, one run at a time, to its completed task;
* ``concurrent``    the fan-out workflow's handler, the same way;
* ``direct``        the ten agents' own handlers with ``asyncio.gather`` (the floor both are measured against).

Overhead is ``p50(arm) - p50(direct)`` of wall time per run; the target (issue #20) is
contract-net's overhead <= 2x the concurrent fan-out's. The same ratio of CPU time per run (this
process only) is reported beside it: on a busy shared machine it is the steadier of the two. Usage::

    python tests/benchmarks/bench_contract_net.py --quick     # under a minute
    python tests/benchmarks/bench_contract_net.py             # a few minutes
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from a2a.server.context import ServerCallContext  # noqa: E402

from gateway.app import Gateway  # noqa: E402
from tests.benchmarks import rounds_cli as rounds  # noqa: E402
from tests.benchmarks.bench_a2a import BenchError  # noqa: E402
from tests.benchmarks.bench_orchestration import RunFn, _completed, request, window  # noqa: E402
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow  # noqa: E402

BIDDER = "tests.benchmarks.noop_agent:noop_bidder"
WIDTH = 10
TENDER, FAN = "bench-tender", "bench-fan"
CONTRACT_NET, CONCURRENT, DIRECT = "contract-net", "concurrent", "direct"
ARMS = (CONTRACT_NET, CONCURRENT, DIRECT)
TARGET_RATIO = 2.0


def bidders() -> list[str]:
    return [f"bidder-{i:02d}" for i in range(1, WIDTH + 1)]


def write_agents(folder: Path) -> Path:
    files = [python_agent(name, BIDDER) for name in bidders()]
    files.append(workflow(TENDER, "contract-net", bidders(), {"bid_deadline_s": 30}))
    files.append(workflow(FAN, "concurrent", bidders(), {"merge": "concatenate"}))
    return agents_folder(folder, files)


def arm_runner(gateway: Gateway, arm: str) -> RunFn:
    """One run through ``arm`` (see the module docstring)."""
    if arm == DIRECT:
        handlers = [(name, gateway.agents[name].handler) for name in bidders()]

        async def one(name: str, handler: Any) -> None:
            _completed(await handler.on_message_send(request(), ServerCallContext()), name)

        async def run_direct() -> None:
            await asyncio.gather(*(one(name, h) for name, h in handlers))

        return run_direct
    agent, answers = (TENDER, 1) if arm == CONTRACT_NET else (FAN, WIDTH)
    handler = gateway.agents[agent].handler

    async def run_workflow() -> None:
        task = await handler.on_message_send(request(), ServerCallContext())
        _completed(task, agent)
        text = "\n".join(p.text for p in task.status.message.parts)  # type: ignore[union-attr]
        if text.count("ok") != answers:
            raise BenchError(f"{agent} answered {text[:200]!r}, not {answers} x ok")

    return run_workflow


async def measure(args: argparse.Namespace, work: Path) -> dict[str, rounds.Samples]:
    async with rounds.in_process(work, write_agents(work / "agents")) as gateway:
        return await rounds.alternate(args, {arm: arm_runner(gateway, arm) for arm in ARMS}, window)


def overheads(samples: rounds.Samples, index: int | None = None) -> tuple[float, float]:
    """(contract-net overhead, concurrent overhead) in ms over the direct floor, pooled or of round ``index``."""
    floor = rounds.p50(samples, DIRECT, index)
    return rounds.p50(samples, CONTRACT_NET, index) - floor, rounds.p50(samples, CONCURRENT, index) - floor


def overhead_ratio(samples: rounds.Samples, index: int | None = None) -> float | None:
    """Contract-net's overhead over the concurrent fan-out's (None if the fan-out shows none)."""
    net, fan = overheads(samples, index)
    return net / fan if fan > 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    args = rounds.round_args(
        argv,
        "Contract-net round vs concurrent fan-out over 10 no-op agents.",
        out="contract_net.json",
        min_runs=5,
        rounds=5,
        window_s=2.0,
        quick_window_s=0.5,
    )
    load = list(os.getloadavg())
    times = rounds.measured(args, "cnet", measure)
    walls, cpus = times["wall"], times["cpu"]
    ratio = rounds.ratio(
        "contract-net round overhead / concurrent fan-out overhead (10 no-op agents)",
        "(p50 contract-net - p50 direct) / (p50 concurrent - p50 direct), pooled rounds",
        lambda i: overhead_ratio(walls, i),
        args.rounds,
        TARGET_RATIO,
    )
    cpu_ratio = rounds.ratio(
        "the same, of CPU time per run",
        "(p50 CPU contract-net - p50 CPU direct) / (p50 CPU concurrent - p50 CPU direct), pooled rounds",
        lambda i: overhead_ratio(cpus, i),
        args.rounds,
    )
    arms = rounds.arm_medians(times)
    net, fan = overheads(walls)
    print(f"overhead: contract-net {net:.3f} ms, concurrent {fan:.3f} ms per run")
    overhead = {"contract-net": net, "concurrent": fan} if ratio.value is not None else None
    rounds.write_report(args, "contract-net", load, arms, [ratio, cpu_ratio], {"width": WIDTH}, overhead_ms=overhead)
    missed = ratio.value is None or ratio.value > TARGET_RATIO
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
