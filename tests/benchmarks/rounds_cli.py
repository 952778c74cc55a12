"""What every alternating-rounds benchmark shares (cache, contract-net, framework adapter, mcp runtime).

``round_args`` parses ``--quick --rounds --window --min-runs --warmup --out --strict`` with the
script's defaults (``--quick``: 2 short rounds); ``measured`` runs the script's ``measure(args, work)``
in a fresh temporary folder, removed afterwards, with SIGTERM turned into a clean exit.
``alternate`` runs the arms in rounds, their order reversed every other round; ``p50`` and
``ratio`` read what it measured; ``arm_medians`` and ``write_report`` print and save it.
``in_process`` is the gateway the arms run against: its app built in this process, no server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from gateway.app import Gateway, create_app
from gateway.settings import Settings
from tests.benchmarks.bench_a2a import Ratio, machine_info, percentile, print_report, ratio_rows

T = TypeVar("T")
RunFn = Callable[[], Awaitable[None]]
Window = Callable[[RunFn, float, int], Awaitable[tuple[list[float], list[float]]]]
"""Runs ``run`` for ``seconds`` (at least ``min_runs`` times): each run's wall and CPU ms."""
Samples = dict[str, list[list[float]]]
"""Per arm, one list of per-run milliseconds per round."""
KINDS = ("wall", "cpu")


def round_args(
    argv: Sequence[str] | None,
    description: str,
    *,
    out: str,
    min_runs: int,
    rounds: int = 6,
    window_s: float = 3.0,
    quick_window_s: float = 1.0,
) -> argparse.Namespace:
    """The parsed options, ``rounds`` and ``window`` filled in from ``--quick`` or the defaults given."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="2 short rounds")
    p.add_argument("--rounds", type=int)
    p.add_argument("--window", type=float, help="seconds of runs per arm per round")
    p.add_argument("--min-runs", type=int, default=min_runs)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--out", type=Path, default=Path("bench-results") / out)
    p.add_argument("--strict", action="store_true", help="exit 1 if the target is missed")
    args = p.parse_args(argv)
    args.rounds = args.rounds or (2 if args.quick else rounds)
    args.window = args.window or (quick_window_s if args.quick else window_s)
    return args


def measured(args: argparse.Namespace, prefix: str, measure: Callable[[argparse.Namespace, Path], Awaitable[T]]) -> T:
    """``measure(args, work)`` run to its end in a temporary folder ``work`` (removed after)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix=f"switchboard-bench-{prefix}-"))
    try:
        return asyncio.run(measure(args, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)


@asynccontextmanager
async def in_process(work: Path, agents: Path) -> AsyncIterator[Gateway]:
    """The gateway over the agent files in ``agents`` (its data in ``work``), built in this process, its lifespan
    running; no gRPC server, card signing or MCP tools."""
    settings = Settings(data_dir=work / "data", agents=agents, grpc_port=0, sign_cards=False, mcp_tools=[])
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app.state.gateway


async def alternate(
    args: argparse.Namespace, runners: Mapping[str, RunFn], window: Window, warmup_runs: int = 2
) -> dict[str, Samples]:
    """Each arm warmed up, then ``args.rounds`` rounds of every arm, in ``runners``' order and reversed every other
    round: the wall and CPU ms of each run (``{"wall": samples, "cpu": samples}``)."""
    times: dict[str, Samples] = {kind: {arm: [] for arm in runners} for kind in KINDS}
    for runner in runners.values():  # imports, caches, sessions, the first tasks of each agent
        await window(runner, args.warmup, warmup_runs)
    arms = list(runners)
    width = max(map(len, arms))
    for r in range(args.rounds):
        for arm in arms if r % 2 == 0 else arms[::-1]:
            wall, cpu = await window(runners[arm], args.window, args.min_runs)
            times["wall"][arm].append(wall)
            times["cpu"][arm].append(cpu)
            median = percentile(wall, 0.5) or 0.0
            print(f"  round {r + 1}/{args.rounds} {arm:<{width}} {len(wall):6d} runs  p50 {median:8.3f} ms", flush=True)
    return times


def p50(samples: Samples, arm: str, index: int | None = None) -> float:
    """The median ms of ``arm``'s runs: pooled over the rounds, or of round ``index`` (0.0 without runs)."""
    rounds = samples[arm] if index is None else [samples[arm][index]]
    return percentile([x for s in rounds for x in s], 0.5) or 0.0


def ratio(
    name: str, detail: str, value: Callable[[int | None], float | None], rounds: int, target: float | None = None
) -> Ratio:
    """A report's ratio (at most ``target``; without one, reported to explain the others): ``value(None)``, of the
    pooled rounds, with ``value(i)`` of each round ``i`` beside it."""
    return Ratio(name, value(None), target, "<=", "x", detail, [value(i) for i in range(rounds)])


def arm_medians(times: Mapping[str, Samples]) -> dict[str, dict[str, float]]:
    """Per arm, its number of runs and its p50 wall and CPU ms over the pooled rounds; printed a line an arm."""
    arms = {
        arm: {
            "runs": sum(map(len, walls)),
            "p50_wall_ms": p50(times["wall"], arm),
            "p50_cpu_ms": p50(times["cpu"], arm),
        }
        for arm, walls in times["wall"].items()
    }
    width = max(map(len, arms))
    for arm, figures in arms.items():
        print(
            f"{arm:<{width}} {figures['runs']:6d} runs  p50 wall {figures['p50_wall_ms']:.3f} ms  "
            f"cpu {figures['p50_cpu_ms']:.3f} ms"
        )
    return arms


def write_report(
    args: argparse.Namespace,
    benchmark: str,
    load: list[float],
    arms: Mapping[str, Any],
    ratios: Sequence[Ratio],
    config: Mapping[str, Any] | None = None,
    **figures: Any,
) -> None:
    """Print the ratios' table and write the report to ``args.out``: the machine (``load`` at the start), the
    configuration (``config`` besides the rounds and window), ``arms``, ``figures`` and the ratios."""
    rows = ratio_rows(ratios)
    print_report({"phases": {}, "ratios": rows, "skipped": {}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": benchmark,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(load),
        "config": {"rounds": args.rounds, "window_s": args.window, **(config or {})},
        "arms": arms,
        **figures,
        "ratios": rows,
    }
    args.out.write_text(json.dumps(report, indent=2, default=str))
