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
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from a2a.server.context import ServerCallContext  # noqa: E402

from gateway.app import Gateway, create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.benchmarks.bench_a2a import BenchError, Ratio, machine_info, percentile, print_report, ratio_rows  # noqa: E402
from tests.benchmarks.bench_orchestration import RunFn, _completed, request, window  # noqa: E402
from tests.benchmarks.rounds_cli import measured, round_args  # noqa: E402
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


Samples = dict[str, list[list[float]]]


async def measure(args: argparse.Namespace, work: Path) -> tuple[Samples, Samples]:
    settings = Settings(
        data_dir=work / "data", agents=write_agents(work / "agents"), grpc_port=0, sign_cards=False, mcp_tools=[]
    )
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    walls: Samples = {arm: [] for arm in ARMS}
    cpus: Samples = {arm: [] for arm in ARMS}
    async with app.router.lifespan_context(app):
        runners = {arm: arm_runner(gateway, arm) for arm in ARMS}
        for runner in runners.values():
            await window(runner, args.warmup, 2)
        for r in range(args.rounds):
            for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                wall, cpu = await window(runners[arm], args.window, args.min_runs)
                walls[arm].append(wall)
                cpus[arm].append(cpu)
                p50 = percentile(wall, 0.5) or 0.0
                print(f"  round {r + 1}/{args.rounds} {arm:<13} {len(wall):5d} runs  p50 {p50:8.3f} ms", flush=True)
    return walls, cpus


def overhead_ratio(walls: Samples, index: int | None = None) -> tuple[float, float, float] | None:
    """(contract-net overhead, concurrent overhead, their ratio) in ms, pooled or of round ``index``."""

    def p50(arm: str) -> float:
        samples = walls[arm] if index is None else [walls[arm][index]]
        return percentile([x for s in samples for x in s], 0.5) or 0.0

    net, fan = p50(CONTRACT_NET) - p50(DIRECT), p50(CONCURRENT) - p50(DIRECT)
    return (net, fan, net / fan) if fan > 0 else None


def main(argv: Sequence[str] | None = None) -> int:
    args = round_args(
        argv,
        "Contract-net round vs concurrent fan-out over 10 no-op agents.",
        out="contract_net.json",
        min_runs=5,
        rounds=5,
        window_s=2.0,
        quick_window_s=0.5,
    )
    load = list(os.getloadavg())
    walls, cpus = measured(args, "cnet", measure)
    pooled = overhead_ratio(walls)
    by_round = [overhead_ratio(walls, i) for i in range(args.rounds)]
    ratio = Ratio(
        "contract-net round overhead / concurrent fan-out overhead (10 no-op agents)",
        pooled[2] if pooled else None,
        TARGET_RATIO,
        "<=",
        "x",
        "(p50 contract-net - p50 direct) / (p50 concurrent - p50 direct), pooled rounds",
        [r[2] if r else None for r in by_round],
    )
    cpu_pooled = overhead_ratio(cpus)
    cpu_ratio = Ratio(
        "the same, of CPU time per run",
        cpu_pooled[2] if cpu_pooled else None,
        None,
        "<=",
        "x",
        "(p50 CPU contract-net - p50 CPU direct) / (p50 CPU concurrent - p50 CPU direct), pooled rounds",
        [r[2] if r else None for r in (overhead_ratio(cpus, i) for i in range(args.rounds))],
    )
    arms = {
        arm: {
            "runs": sum(map(len, w)),
            "p50_ms": percentile([x for s in w for x in s], 0.5),
            "cpu_p50_ms": percentile([x for s in cpus[arm] for x in s], 0.5),
        }
        for arm, w in walls.items()
    }
    for arm, figures in arms.items():
        print(
            f"{arm:<13} {figures['runs']:6d} runs  p50 {figures['p50_ms']:.3f} ms  CPU {figures['cpu_p50_ms']:.3f} ms"
        )
    if pooled:
        print(f"overhead: contract-net {pooled[0]:.3f} ms, concurrent {pooled[1]:.3f} ms per run")
    rows = ratio_rows([ratio, cpu_ratio])
    print_report({"phases": {}, "ratios": rows, "skipped": {}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "contract-net",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(load),
        "config": {"rounds": args.rounds, "window_s": args.window, "width": WIDTH},
        "arms": arms,
        "overhead_ms": {"contract-net": pooled[0], "concurrent": pooled[1]} if pooled else None,
        "ratios": rows,
    }
    args.out.write_text(json.dumps(report, indent=2, default=str))
    missed = pooled is None or pooled[2] > TARGET_RATIO
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
