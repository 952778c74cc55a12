"""Federation overhead: a workflow step on a remote agent (org A -> org B) against the same agent local to A.

Two gateway processes on loopback, each an organisation with its own data dir and signing keys
(``python -m gateway serve``, SQLite, cards signed). Org B hosts the no-op agent
(``tests/benchmarks/noop_agent.py``); org A hosts it too, and imports B's twice through its peers
file: as ``b-noop`` over JSON-RPC (peer ``b``, transports ``[JSONRPC]``) and as ``bg-noop`` over
gRPC (peer ``bg``, ``[GRPC]``), each with a static bearer credential. A's workflows are one
sequential step each:

* ``local-step``   over ``noop`` (A's own agent: a child task in A's process);
* ``remote-step``  over ``b-noop`` (the child task is A's relay task, mirroring a task at B, JSON-RPC + SSE);
* ``grpc-step``    over ``bg-noop`` (the same over gRPC).

The load is this process sending JSON-RPC ``SendMessage`` to A's workflows one at a time over one
keep-alive connection, in rounds that alternate the arms' order. The figure that matters is the
added p50 per hop, ``p50(remote) - p50(local)``: what sending one step to another organisation
costs over running it at home (the relay, B's handling of the task, the loopback round trips).
Targets (from the issue): <= 3 ms over JSON-RPC, <= 2 ms over gRPC. Both arms run their step on
A's ``LocalRunner`` (no SDK request handler at A), so the delta is the relay (SDK client, mirror,
one link row), B's whole task through its SDK request handler (streaming), and the loopback trips:
it cannot go below what B's handler takes for one streaming SendMessage, which
``bench_a2a.py --phases stream,grpc --concurrency 1`` measures for the bare SDK server. Usage::

    python tests/benchmarks/bench_federation.py --quick       # smoke: under a minute
    python tests/benchmarks/bench_federation.py               # a few minutes
    python tests/benchmarks/bench_federation.py --out bench-results/federation.json --rounds 7

Prints a table and writes the figures as JSON. A delta whose rounds disagree widely is flagged
``noisy``: on a busy shared machine rerun before reading anything into its verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_a2a import BenchError, Ratio, _versions, free_port, percentile  # noqa: E402

NOOP = "tests.benchmarks.noop_agent:noop"
ARMS = {"local": "local-step", "jsonrpc": "remote-step", "grpc": "grpc-step"}
TARGETS_MS = {"jsonrpc": 3.0, "grpc": 2.0}
START_TIMEOUT_S = 60.0
TOKEN = "bench-token"


@dataclass
class Org:
    """One gateway process."""

    name: str
    folder: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = (self.folder / "gateway.log").open("wb")
        env = {**os.environ, **self.env, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve"], env=env, cwd=REPO, stdout=log, stderr=log
        )

    def wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise BenchError(f"{self.name} exited: {(self.folder / 'gateway.log').read_text()[-2000:]}")
                try:
                    if http.get("/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise BenchError(f"{self.name} did not become ready")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _agent(folder: Path, name: str, runtime: dict[str, Any]) -> None:
    value = {
        "format": 1,
        "name": name,
        "description": f"{name}, for the federation benchmark.",
        "skills": [{"id": name, "name": name, "description": "does nothing", "tags": ["bench"]}],
        "runtime": runtime,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(value, sort_keys=False))


def _org(name: str, work: Path, **env: str) -> Org:
    folder = work / name
    (folder / "agents").mkdir(parents=True)
    port = free_port()
    values = {
        "SWITCHBOARD_AGENTS": str(folder / "agents"),
        "SWITCHBOARD_DATA_DIR": str(folder / "data"),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
        "SWITCHBOARD_ROOT_AGENT": "noop",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        **env,
    }
    return Org(name, folder, port, values)


def start_orgs(work: Path) -> tuple[Org, Org]:
    """Org B with the no-op agent; then org A with its own and B's, and one-step workflows over each."""
    b = _org("org-b", work)
    _agent(b.folder / "agents", "noop", {"kind": "python", "entrypoint": NOOP})
    b.start()
    b.wait_ready()
    jwks = httpx.get(f"{b.url}/.well-known/jwks.json").json()
    a = _org("org-a", work, SWITCHBOARD_PEERS=str(work / "org-a" / "peers.yaml"), BENCH_PEER_TOKEN=TOKEN)
    agents = a.folder / "agents"
    _agent(agents, "noop", {"kind": "python", "entrypoint": NOOP})
    for workflow, step in (("local-step", "noop"), ("remote-step", "b-noop"), ("grpc-step", "bg-noop")):
        _agent(agents, workflow, {"kind": "workflow", "pattern": "sequential", "participants": [step]})
    credentials = {"kind": "bearer", "token_env": "BENCH_PEER_TOKEN"}
    peers = [
        {"name": name, "base_url": b.url, "trust": {"jwks": jwks}, "credentials": credentials,
         "transports": [transport], "import": ["noop"]}
        for name, transport in (("b", "JSONRPC"), ("bg", "GRPC"))
    ]  # fmt: skip
    (a.folder / "peers.yaml").write_text(yaml.safe_dump({"format": 1, "peers": peers}, sort_keys=False))
    a.start()
    try:
        a.wait_ready()
    except BenchError:
        b.stop()
        raise
    return a, b


@dataclass
class Window:
    """One arm's requests in one round, and the CPU each organisation's process spent on them."""

    arm: str
    round_no: int
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    first_error: str | None = None
    cpu_s: dict[str, float] = field(default_factory=dict)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (steadier than wall time on a busy machine)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _body() -> dict[str, Any]:
    message = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": "go"}]}
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}


async def measure(http: httpx.AsyncClient, arm: str, seconds: float, round_no: int, orgs: dict[str, int]) -> Window:
    """Runs of ``arm``'s workflow, one at a time, for ``seconds``."""
    window = Window(arm, round_no)
    url = f"/agents/{ARMS[arm]}"
    before = {name: cpu_seconds(pid) for name, pid in orgs.items()}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        response = await http.post(url, json=_body())
        elapsed = (time.perf_counter() - started) * 1000
        state = response.json().get("result", {}).get("task", {}).get("status", {}).get("state")
        if state == "TASK_STATE_COMPLETED":
            window.latencies_ms.append(elapsed)
        else:
            window.errors += 1
            window.first_error = window.first_error or response.text[:300]
    window.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in orgs.items()}
    return window


def cpu_ms_per_run(windows: list[Window]) -> dict[str, float | None]:
    """CPU milliseconds each organisation spent per completed run."""
    runs = sum(len(w.latencies_ms) for w in windows)
    names = windows[0].cpu_s.keys() if windows else ()
    return {name: (sum(w.cpu_s[name] for w in windows) * 1000 / runs if runs else None) for name in names}


def added_p50(windows: dict[str, list[Window]], arm: str) -> Ratio:
    """``p50(arm) - p50(local)``: pooled over rounds, and per round for the spread."""
    pooled = {name: [v for w in ws for v in w.latencies_ms] for name, ws in windows.items()}
    value = None
    if pooled[arm] and pooled["local"]:
        value = statistics.median(pooled[arm]) - statistics.median(pooled["local"])
    by_round = [
        statistics.median(r.latencies_ms) - statistics.median(loc.latencies_ms)
        if r.latencies_ms and loc.latencies_ms
        else None
        for r, loc in zip(windows[arm], windows["local"], strict=True)
    ]
    detail = f"p50({ARMS[arm]}) - p50(local-step), pooled rounds"
    return Ratio(f"added p50 per hop, {arm}", value, TARGETS_MS[arm], "<=", "ms", detail, by_round)


async def run(args: argparse.Namespace, a: Org, b: Org) -> dict[str, Any]:
    windows: dict[str, list[Window]] = {arm: [] for arm in ARMS}
    headers = {"A2A-Version": "1.0"}
    assert a.proc is not None and b.proc is not None
    pids = {"a": a.proc.pid, "b": b.proc.pid}
    async with httpx.AsyncClient(base_url=a.url, timeout=30, headers=headers) as http:
        for arm in ARMS:  # warm up every path: connections, channels, card caches
            await measure(http, arm, args.warmup, 0, pids)
        for round_no in range(1, args.rounds + 1):
            order = list(ARMS) if round_no % 2 else list(reversed(ARMS))
            for arm in order:
                windows[arm].append(await measure(http, arm, args.window, round_no, pids))
    summary = {}
    for arm, ws in windows.items():
        values = [v for w in ws for v in w.latencies_ms]
        summary[arm] = {
            "workflow": ARMS[arm],
            "runs": len(values),
            "errors": sum(w.errors for w in ws),
            "first_error": next((w.first_error for w in ws if w.first_error), None),
            "latency_ms": {q: percentile(values, p) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "p50_ms_by_round": [statistics.median(w.latencies_ms) if w.latencies_ms else None for w in ws],
            "cpu_ms_per_run": cpu_ms_per_run(ws),
        }
    ratios = [added_p50(windows, "jsonrpc"), added_p50(windows, "grpc")]
    local_cpu = sum(v or 0.0 for v in summary["local"]["cpu_ms_per_run"].values())
    for arm in ("jsonrpc", "grpc"):
        remote_cpu = sum(v or 0.0 for v in summary[arm]["cpu_ms_per_run"].values())
        detail = "CPU ms per run of A + B, remote arm minus local arm (steadier than wall time when busy)"
        ratios.append(Ratio(f"added CPU per hop, {arm}", remote_cpu - local_cpu, None, "<=", "ms", detail))
    return {"arms": summary, "ratios": [{**asdict(r), "verdict": r.verdict, "noisy": r.noisy} for r in ratios]}


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    print(f"\n== one workflow step, {report['config']['rounds']} rounds x {report['config']['window_s']}s per arm")
    head = f"{'arm':<10}{'workflow':<14}{'runs':>7}{'errors':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    print(head + f"{'A cpu ms':>10}{'B cpu ms':>10}  p50 by round")
    for arm, s in report["arms"].items():
        lat, cpu = s["latency_ms"], s["cpu_ms_per_run"]
        rounds = ", ".join(_fmt(v) for v in s["p50_ms_by_round"])
        print(
            f"{arm:<10}{s['workflow']:<14}{s['runs']:>7}{s['errors']:>7}{_fmt(lat['p50']):>9}"
            f"{_fmt(lat['p95']):>9}{_fmt(lat['p99']):>9}{_fmt(cpu.get('a')):>10}{_fmt(cpu.get('b')):>10}  [{rounds}]"
        )
    print("\n== added per hop (target; verdict)")
    for r in report["ratios"]:
        rounds = ", ".join(_fmt(v) for v in r["by_round"])
        target = f"<= {r['target']:g}" if r["target"] is not None else "     "
        print(
            f"{r['name']:<32}{_fmt(r['value']):>8} ms  {target}  {r['verdict']:<5} rounds: [{rounds}]"
            + ("  (noisy)" if r["noisy"] else "")
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s: a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=3.0, help="seconds per arm per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per arm before measuring")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.window, args.warmup = 3, 1.0, 1.0
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        a, b = start_orgs(Path(tmp))
        try:
            figures = asyncio.run(run(args, a, b))
        finally:
            a.stop()
            b.stop()
    report = {
        "benchmark": "federation",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "loadavg_at_end": os.getloadavg(), "python": platform.python_version()},
        "versions": _versions(),
        "config": {"rounds": args.rounds, "window_s": args.window, "warmup_s": args.warmup},
        **figures,
    }
    print_report(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))
    errors = sum(s["errors"] for s in report["arms"].values())
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
