"""SendMessage throughput for ``bench_cluster.py``: one replica on PostgreSQL vs one on SQLite, two vs one.

Arms, each ``python -m gateway serve`` with the ``noop`` agent (``tests/benchmarks/noop_agent.py``,
on the ``LocalRunner``: the task saved working, then completed):

* ``sqlite x1``  one gateway on SQLite (its data dir);
* ``pg x1``      one gateway on PostgreSQL (R1);
* ``pg x2``      R1 and R2 on the same PostgreSQL, the load's connections split between them.

Load: ``concurrency`` workers in this process, each its own keep-alive connection, JSON-RPC
``SendMessage`` (non-streaming) back to back for ``window`` seconds. Rounds alternate the order
of the arms. Also recorded per arm: the gateways' CPU seconds per 1000 requests (utime+stime from
/proc), PostgreSQL's too (its backends' CPU, when /proc shows them), and this load generator's.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx

HEADERS = {"A2A-Version": "1.0", "Content-Type": "application/json"}
ARMS = ("sqlite x1", "pg x1", "pg x2")


def _body() -> bytes:
    message = {"role": "ROLE_USER", "parts": [{"text": "hi"}], "messageId": str(uuid.uuid4())}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}).encode()


def cpu_s(pids: Sequence[int]) -> float:
    """utime + stime of ``pids`` (and nothing of processes that are gone), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total / ticks


def postgres_pids() -> list[int]:
    """PostgreSQL's processes on this machine (its backends do the database's share of the work)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as comm:
                    if comm.read().strip() in ("postgres", "postmaster"):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


@dataclass
class Window:
    """One arm's window in one round."""

    requests: int
    errors: int
    seconds: float
    gateway_cpu_s: float
    postgres_cpu_s: float
    client_cpu_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


@dataclass
class Arm:
    """Where an arm sends its load: one URL per replica, and the replicas' process ids."""

    name: str
    urls: list[str]
    pids: list[int]
    windows: list[Window] = field(default_factory=list)


async def _worker(client: httpx.AsyncClient, url: str, stop: float, counts: list[int]) -> None:
    while time.monotonic() < stop:
        response = await client.post(url, content=_body(), headers=HEADERS)
        ok = response.status_code == 200 and "TASK_STATE_COMPLETED" in response.text
        counts[0 if ok else 1] += 1


async def measure(arm: Arm, concurrency: int, seconds: float) -> Window:
    """Run the load against ``arm`` for ``seconds``; what it did."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as client:
        for url in arm.urls:  # connections made and every replica warm before the clock starts
            await client.post(url, content=_body(), headers=HEADERS)
        counts = [0, 0]
        pg = postgres_pids()
        before = (cpu_s(arm.pids), cpu_s(pg), time.process_time())
        started = time.monotonic()
        stop = started + seconds
        await asyncio.gather(*(_worker(client, arm.urls[n % len(arm.urls)], stop, counts) for n in range(concurrency)))
        elapsed = time.monotonic() - started
        after = (cpu_s(arm.pids), cpu_s(pg), time.process_time())
    return Window(counts[0], counts[1], elapsed, after[0] - before[0], after[1] - before[1], after[2] - before[2])


async def run(arms: list[Arm], rounds: int, concurrency: int, seconds: float) -> dict[str, object]:
    """Alternating rounds over ``arms``; the figures and the two ratios the issue asks for."""
    for n in range(rounds):
        order = arms if n % 2 == 0 else list(reversed(arms))
        line = []
        for arm in order:
            window = await measure(arm, concurrency, seconds)
            arm.windows.append(window)
            line.append(f"{arm.name} {window.rps:.0f} req/s")
        print(f"throughput round {n + 1}: " + ", ".join(line))
    by = {arm.name: arm for arm in arms}

    def median_rps(name: str) -> float:
        return statistics.median(w.rps for w in by[name].windows)

    def per_round(a: str, b: str) -> list[float]:
        return [x.rps / y.rps for x, y in zip(by[a].windows, by[b].windows, strict=True)]

    def cpu_per_k(name: str, part: str) -> float:
        windows = by[name].windows
        return 1000 * sum(getattr(w, part) for w in windows) / max(1, sum(w.requests for w in windows))

    figures = {
        name: {
            "rps_p50": median_rps(name),
            "errors": sum(w.errors for w in by[name].windows),
            "gateway_cpu_s_per_1000": cpu_per_k(name, "gateway_cpu_s"),
            "postgres_cpu_s_per_1000": cpu_per_k(name, "postgres_cpu_s"),
            "client_cpu_s_per_1000": cpu_per_k(name, "client_cpu_s"),
        }
        for name in by
    }
    return {
        "arms": figures,
        "pg_vs_sqlite": statistics.median(per_round("pg x1", "sqlite x1")),
        "pg_vs_sqlite_rounds": per_round("pg x1", "sqlite x1"),
        "two_vs_one": statistics.median(per_round("pg x2", "pg x1")),
        "two_vs_one_rounds": per_round("pg x2", "pg x1"),
        "concurrency": concurrency,
        "window_s": seconds,
        "rounds": rounds,
    }


def report(result: dict[str, object]) -> None:
    """Print the throughput table and the two ratios with their targets."""
    arms = result["arms"]
    assert isinstance(arms, dict)
    print(f"\n{'arm':<11}{'req/s p50':>11}{'errors':>8}{'gw CPU s/1k':>13}{'PG CPU s/1k':>13}{'client s/1k':>13}")
    for name, f in arms.items():
        print(
            f"{name:<11}{f['rps_p50']:>11.0f}{f['errors']:>8}{f['gateway_cpu_s_per_1000']:>13.2f}"
            f"{f['postgres_cpu_s_per_1000']:>13.2f}{f['client_cpu_s_per_1000']:>13.2f}"
        )
    ratio = float(result["pg_vs_sqlite"])  # type: ignore[arg-type]
    verdict = "PASS" if ratio >= 0.7 else "MISS"
    print(f"\n(b) one replica on PostgreSQL / one on SQLite: {ratio:.2f}x (target >= 0.7x): {verdict}")
    print(f"(c) two replicas / one, on PostgreSQL: {float(result['two_vs_one']):.2f}x (report)")  # type: ignore[arg-type]
