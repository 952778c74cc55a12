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
import json
import os
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from a2a.server.context import ServerCallContext  # noqa: E402
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest  # noqa: E402

from gateway.app import Gateway, create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.benchmarks.bench_a2a import BenchError, Ratio, machine_info, percentile, print_report, ratio_rows  # noqa: E402
from tests.benchmarks.bench_orchestration import RunFn, _completed, window  # noqa: E402
from tests.benchmarks.rounds_cli import measured, round_args  # noqa: E402
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


async def measure(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[list[float]]]]:
    settings = Settings(
        data_dir=work / "data", agents=write_agents(work / "agents"), grpc_port=0, sign_cards=False, mcp_tools=[]
    )
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    samples: dict[str, dict[str, list[list[float]]]] = {arm: {"wall": [], "cpu": []} for arm in ARMS}
    async with app.router.lifespan_context(app):
        await gateway.agents[AGENTS[HIT]].handler.on_message_send(same_request(), ServerCallContext())  # the entry
        runners = {arm: arm_runner(gateway, arm) for arm in ARMS}
        for runner in runners.values():
            await window(runner, args.warmup, 2)
        for r in range(args.rounds):
            for arm in ARMS if r % 2 == 0 else ARMS[::-1]:
                wall, cpu = await window(runners[arm], args.window, args.min_runs)
                samples[arm]["wall"].append(wall)
                samples[arm]["cpu"].append(cpu)
                p50 = percentile(wall, 0.5) or 0.0
                print(f"  round {r + 1}/{args.rounds} {arm:<5} {len(wall):6d} runs  p50 {p50:8.3f} ms", flush=True)
    return samples


def p50(samples: dict[str, dict[str, list[list[float]]]], arm: str, kind: str, index: int | None = None) -> float:
    rounds = samples[arm][kind] if index is None else [samples[arm][kind][index]]
    return percentile([x for s in rounds for x in s], 0.5) or 0.0


def main(argv: Sequence[str] | None = None) -> int:
    args = round_args(argv, "A result-cache hit vs a call to a no-op agent.", out="cache.json", min_runs=20)
    load = list(os.getloadavg())
    samples = measured(args, "cache", measure)
    ratios = [
        Ratio(
            f"cache hit / no-op agent call ({kind} p50)",
            p50(samples, HIT, kind) / p50(samples, FLOOR, kind),
            TARGET_RATIO,
            "<=",
            "x",
            f"p50 {kind} ms of a hit over p50 {kind} ms of a no-op agent's task, pooled rounds",
            [p50(samples, HIT, kind, i) / p50(samples, FLOOR, kind, i) for i in range(args.rounds)],
        )
        for kind in ("wall", "cpu")
    ]
    arms = {
        arm: {
            "runs": sum(map(len, s["wall"])),
            "p50_wall_ms": p50(samples, arm, "wall"),
            "p50_cpu_ms": p50(samples, arm, "cpu"),
        }
        for arm, s in samples.items()
    }
    for arm, figures in arms.items():
        print(
            f"{arm:<5} {figures['runs']:6d} runs  p50 wall {figures['p50_wall_ms']:.3f} ms  "
            f"cpu {figures['p50_cpu_ms']:.3f} ms"
        )
    rows = ratio_rows(ratios)
    print_report({"phases": {}, "ratios": rows, "skipped": {}})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "cache",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(load),
        "config": {"rounds": args.rounds, "window_s": args.window},
        "arms": arms,
        "ratios": rows,
    }
    args.out.write_text(json.dumps(report, indent=2, default=str))
    missed = any(r.value is None or r.value >= TARGET_RATIO for r in ratios)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
