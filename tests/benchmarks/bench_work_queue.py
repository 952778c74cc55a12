"""Distributed work queue (issue 20): what sharing items through PostgreSQL costs, against the same queue local.

    SWITCHBOARD_TEST_PG_DSN=postgresql://postgres@127.0.0.1:5432/test python tests/benchmarks/bench_work_queue.py

Two ``python -m gateway serve`` replicas on a schema of their own, each hosting the no-op agent
and two work queues over it with the same options but ``distribute``: ``local`` runs its items on
the run's replica, ``shared`` posts each as a ``work_items`` row that either replica claims. Each
round runs one batch of ``--items`` items through each (streamed to its end with the SDK's
client, on R1), in alternating order, and times it; the floor is the local queue in the same
rounds. Reported: the medians per batch and per item, the ratio shared / local, and how many of
the shared items each replica ran (from the child tasks' runners in the database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
from a2a.types.a2a_pb2 import SendMessageRequest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.bindings.a2a_clients import BINDINGS, a2a_client, user_message  # noqa: E402
from tests.federation.support import org, python_agent, workflow  # noqa: E402

SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")


async def batch(client, items: int) -> float:  # type: ignore[no-untyped-def]
    """Seconds for one batch of ``items`` no-op items, streamed to the run's end."""
    text = "\n".join(f"item {n}" for n in range(items))
    started = time.perf_counter()
    async for _ in client.send_message(SendMessageRequest(message=user_message(text))):
        pass
    return time.perf_counter() - started


async def per_replica(dsn: str) -> dict[str, dict[str, int]]:
    """Per queue, how many no-op child tasks each replica ran (a child shares its run's context)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT p.agent AS queue, c.runner, count(*) AS n FROM tasks c JOIN tasks p "
            "ON p.context_id = c.context_id AND p.agent IN ('local', 'shared') WHERE c.agent = 'noop' GROUP BY 1, 2"
        )
        spread: dict[str, dict[str, int]] = {}
        for row in rows:
            spread.setdefault(row["queue"], {})[row["runner"][:8]] = int(row["n"])
        return spread
    finally:
        await conn.close()


async def measure(dsn: str, url: str, rounds: int, items: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"local": [], "shared": []}
    async with a2a_client(f"{url}/agents/local", SSE) as local, a2a_client(f"{url}/agents/shared", SSE) as shared:
        await batch(local, 4)  # warm both paths
        await batch(shared, 4)
        for n in range(rounds):
            order = [("local", local), ("shared", shared)]
            for name, client in order if n % 2 == 0 else order[::-1]:
                times[name].append(await batch(client, items))
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--items", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    base = os.environ["SWITCHBOARD_TEST_PG_DSN"]
    schema = f"sb_bench_wq_{uuid.uuid4().hex[:8]}"
    dsn = f"{base}{'&' if '?' in base else '?'}search_path={schema}"

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(base)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f"CREATE SCHEMA {schema}"))
    replicas = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("r1", "r2"):
                replica = org(name, Path(tmp), SWITCHBOARD_DATABASE_URL=dsn, SWITCHBOARD_LOG_LEVEL="warning")
                agents = replica.folder / "agents"
                python_agent(agents, "noop", "tests.benchmarks.noop_agent:noop")
                python_agent(agents, "echo", "gateway.agents.echo:EchoExecutor")
                for queue, distribute in (("local", False), ("shared", True)):
                    options = {"concurrency": args.concurrency, "distribute": distribute}
                    workflow(agents, queue, "work-queue", ["noop"], options=options)
                replicas.append(replica)
            for replica in replicas:
                replica.start()
            for replica in replicas:
                replica.wait_ready()
            times = asyncio.run(measure(dsn, replicas[0].url, args.rounds, args.items))
            spread = asyncio.run(per_replica(dsn))
    finally:
        for replica in replicas:
            replica.stop()
        asyncio.run(sql(f"DROP SCHEMA {schema} CASCADE"))

    local, shared = (statistics.median(times[name]) for name in ("local", "shared"))
    print(f"{args.rounds} rounds of {args.items} no-op items, concurrency {args.concurrency}, 2 replicas on PostgreSQL")
    print(f"local : median {local * 1000:.0f} ms a batch, {local / args.items * 1000:.1f} ms an item")
    print(f"shared: median {shared * 1000:.0f} ms a batch, {shared / args.items * 1000:.1f} ms an item")
    ratios = [round(one / floor, 2) for one, floor in zip(times["shared"], times["local"], strict=True)]
    print(f"shared / local: {shared / local:.2f}x (rounds: {ratios})")
    print(f"no-op child tasks per replica (runner id prefix), per queue: {spread}")


if __name__ == "__main__":
    main()
