"""Cluster on PostgreSQL (issue 16): cross-replica event latency, and SendMessage throughput on PG vs SQLite, 2 vs 1.

    SWITCHBOARD_TEST_PG_DSN=postgresql://postgres@127.0.0.1:5432/test python tests/benchmarks/bench_cluster.py --quick
    SWITCHBOARD_TEST_PG_DSN=... python tests/benchmarks/bench_cluster.py     # -> bench-results/cluster.json
    SWITCHBOARD_TEST_PG_DSN=... python tests/benchmarks/bench_cluster.py --part throughput --rounds 4

(a) latency. Two ``python -m gateway serve`` replicas (R1, R2) on a schema of their own. Each round starts a task
on R1 (the ``stamper`` agent of ``tests/store/cluster_agents.py``, on R1's ``LocalRunner``), subscribes
to it on R1 and on R2 (SubscribeToTask, JSON-RPC over SSE), and the agent then sends progress
updates each carrying the time it was sent; each subscriber takes ``received - sent`` per update
(one machine, one clock). In the same rounds, a ``SELECT 1`` round trip to the database is timed
between updates, and so is a bare NOTIFY hop (one connection notifies, another of the same process listens).
Target (issue 16): cross-replica p50 <= same-replica p50 + 3 x SELECT 1 p50. The floor printed beside it is
same-replica p50 + SELECT 1 (the event's INSERT + NOTIFY statement) + NOTIFY hop (its delivery to R2).

(b), (c) throughput (``cluster_throughput.py``): SendMessage of the no-op agent against R1 alone, a
third gateway on SQLite, and R1 + R2 together, in alternating rounds. Targets: PG / SQLite >= 0.7x;
two replicas vs one is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from a2a.types.a2a_pb2 import SendMessageRequest, StreamResponse, SubscribeToTaskRequest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.benchmarks import cluster_throughput  # noqa: E402
from tests.bindings.a2a_clients import BINDINGS, a2a_client, user_message  # noqa: E402
from tests.federation.support import org, python_agent  # noqa: E402

SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")


def stamps(event: StreamResponse) -> int | None:
    if event.HasField("status_update"):
        text = "".join(p.text for p in event.status_update.status.message.parts)
        if text.isdigit():
            return int(text)
    return None


async def follow(client, task_id: str, into: list[float], subscribed: asyncio.Event) -> None:  # type: ignore[no-untyped-def]
    stream = client.subscribe(SubscribeToTaskRequest(id=task_id))
    async for event in stream:
        subscribed.set()
        sent = stamps(event)
        if sent is not None:
            into.append((time.time_ns() - sent) / 1e6)


async def pings(dsn: str, figures: dict[str, list[float]], stop: asyncio.Event) -> None:
    """Time a ``SELECT 1`` and a bare NOTIFY hop (one connection notifies, another listens) in turn."""
    conn, listener = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    heard: asyncio.Queue[float] = asyncio.Queue()
    await listener.add_listener("sb_bench_hop", lambda *_: heard.put_nowait(time.perf_counter()))
    try:
        while not stop.is_set():
            started = time.perf_counter()
            await conn.fetchval("SELECT 1")
            figures["SELECT 1"].append((time.perf_counter() - started) * 1e3)
            started = time.perf_counter()
            await conn.execute("NOTIFY sb_bench_hop")
            figures["NOTIFY hop"].append((await asyncio.wait_for(heard.get(), 5) - started) * 1e3)
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
        await listener.close()


async def one_round(urls: tuple[str, str], dsn: str, count: int, figures: dict[str, list[float]]) -> None:
    async with a2a_client(urls[0], SSE) as c1, a2a_client(urls[0], SSE) as s1, a2a_client(urls[1], SSE) as s2:
        stream = c1.send_message(SendMessageRequest(message=user_message(f"{count} 1.0 0.02")))
        first = await anext(stream)
        task_id = first.task.id if first.HasField("task") else first.status_update.task_id
        stop = asyncio.Event()
        ready = [asyncio.Event(), asyncio.Event()]
        followers = [
            asyncio.ensure_future(follow(s1, task_id, figures["same replica"], ready[0])),
            asyncio.ensure_future(follow(s2, task_id, figures["other replica"], ready[1])),
        ]
        pinging = asyncio.ensure_future(pings(dsn, figures, stop))
        async for _ in stream:
            pass
        await asyncio.wait_for(asyncio.gather(*followers), 30)
        stop.set()
        await pinging


def p50(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


async def latency(urls: tuple[str, str], dsn: str, rounds: int, updates: int) -> dict[str, object]:
    """(a): the event latency rounds and their summary."""
    figures: dict[str, list[float]] = {"same replica": [], "other replica": [], "SELECT 1": [], "NOTIFY hop": []}
    per_round = []
    for n in range(rounds):
        before = {k: len(v) for k, v in figures.items()}
        await one_round(urls, dsn, updates, figures)
        per_round.append({k: p50(v[before[k] :]) for k, v in figures.items()})
        print(f"round {n + 1}: " + ", ".join(f"{k} p50 {v:.2f} ms" for k, v in per_round[-1].items()))
    same, other, ping, hop = (p50(figures[k]) for k in ("same replica", "other replica", "SELECT 1", "NOTIFY hop"))
    worst = {k: (statistics.quantiles(v, n=100)[98] if len(v) > 1 else float("nan")) for k, v in figures.items()}
    print(f"\n{'arm':<16}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}")
    for key, values in figures.items():
        print(f"{key:<16}{len(values):>6}{p50(values):>10.2f}{worst[key]:>10.2f}")
    target = same + 3 * ping
    verdict = "PASS" if other <= target else "MISS"
    print(f"\n(a) cross-replica p50 {other:.2f} ms <= same-replica p50 + 3 x SELECT 1 = {target:.2f} ms: {verdict}")
    # The floor: what crossing to another process through PostgreSQL costs before any gateway code runs there.
    floor = same + ping + hop
    print(
        f"    floor: same-replica p50 + the event's INSERT round trip (SELECT 1) + a bare NOTIFY hop = {floor:.2f} ms; "
        f"cross-replica is {other - floor:+.2f} ms from it"
    )
    return {
        "p50_ms": {"same": same, "other": other, "select1": ping, "notify_hop": hop, "floor": floor},
        "p99_ms": worst,
        "rounds": per_round,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of 20 updates; 2 throughput rounds of 2 s")
    parser.add_argument("--part", choices=["latency", "throughput", "all"], default="all")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16, help="throughput: concurrent requests")
    parser.add_argument("--window", type=float, default=5.0, help="throughput: seconds per arm per round")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results" / "cluster.json")
    args = parser.parse_args()
    rounds, updates = (3, 20) if args.quick else (args.rounds, args.updates)
    window, throughput_rounds = (2.0, 2) if args.quick else (args.window, max(2, min(args.rounds, 6)))
    base = os.environ["SWITCHBOARD_TEST_PG_DSN"]
    schema = f"sb_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(base)
    await admin.execute(f"CREATE SCHEMA {schema}")
    dsn = f"{base}{'&' if '?' in base else '?'}search_path={schema}"
    result: dict[str, object] = {}
    replicas = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            quiet = {"SWITCHBOARD_LOG_LEVEL": "warning"}
            replicas = [org(f"r{n}", Path(tmp), SWITCHBOARD_DATABASE_URL=dsn, **quiet) for n in (1, 2)]
            replicas.append(org("sqlite", Path(tmp), **quiet))
            for replica in replicas:
                python_agent(replica.folder / "agents", "stamper", "tests.store.cluster_agents:stamper")
                python_agent(replica.folder / "agents", "noop", "tests.benchmarks.noop_agent:noop")
                replica.start()
            for replica in replicas:
                replica.wait_ready()
            r1, r2, lite = replicas
            if args.part in ("latency", "all"):
                urls = (r1.agent_url("stamper"), r2.agent_url("stamper"))
                result["latency"] = await latency(urls, dsn, rounds, updates)
            if args.part in ("throughput", "all"):
                pids = {r.name: r.proc.pid for r in replicas if r.proc is not None}
                arms = [
                    cluster_throughput.Arm("sqlite x1", [lite.agent_url("noop")], [pids["sqlite"]]),
                    cluster_throughput.Arm("pg x1", [r1.agent_url("noop")], [pids["r1"]]),
                    cluster_throughput.Arm(
                        "pg x2", [r1.agent_url("noop"), r2.agent_url("noop")], [pids["r1"], pids["r2"]]
                    ),
                ]
                result["throughput"] = await cluster_throughput.run(arms, throughput_rounds, args.concurrency, window)
                cluster_throughput.report(result["throughput"])  # type: ignore[arg-type]
            for replica in replicas:
                replica.stop()
    finally:
        for replica in replicas:
            replica.stop()
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")
        await admin.close()
    result["load_average"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
