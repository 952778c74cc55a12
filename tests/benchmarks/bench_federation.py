"""Federation overhead: a workflow step on a remote agent (org A -> org B) against the same agent local to A.

Two gateway processes on loopback, each an organisation with its own data dir and signing keys
(``python -m gateway serve``, SQLite, cards signed, bearer auth on B's imported agent). Both host
the same no-op agent (``tests/benchmarks/noop_agent.py``, runtime ``python``: the gateway's
``RuntimeExecutor`` sends four events, the task, working, an "ok" artifact, completed). A imports
B's twice through its peers file: as ``b-noop`` over JSON-RPC (peer ``b``, transports
``[JSONRPC]``) and as ``bg-noop`` over gRPC (peer ``bg``, ``[GRPC]``), each with a static bearer
credential. A's workflows are one sequential step each, and each arm is one of them:

* ``local``    workflow ``local-step`` over ``noop``: the step's child task runs A's own no-op
  agent on A's ``LocalRunner`` (its four events applied in memory, the child saved twice);
* ``jsonrpc``  workflow ``remote-step`` over ``b-noop``: the child task is run the same way, but
  its executor is the relay, which sends the step's message to B with the SDK client (streaming
  ``SendMessage``, JSON-RPC + SSE), mirrors B's four events onto the child task (the same four
  events, applied the same way) and records the remote task id; B runs the no-op agent on its
  ``LocalRunner`` too (a new task: ``LocalRequestHandler``), behind its auth and SSE, on SQLite;
* ``grpc``     workflow ``grpc-step`` over ``bg-noop``: the same over gRPC (server streaming).

So ``p50(remote) - p50(local)`` (the "added p50 per hop") is: the relay at A and the whole hop
(SDK client, loopback, B's request handling and its saves), less the no-op agent's own work at A,
which the remote arm does at B instead. Targets (from the issue): <= 3 ms over JSON-RPC, <= 2 ms
over gRPC. The load is this process sending JSON-RPC ``SendMessage`` to A's workflows one at a
time over one keep-alive connection, in rounds that alternate the arms' order.

The floor (``sdk_hop.py``, arms ``floor-jsonrpc`` and ``floor-grpc``, measured in the same
rounds): the bare a2a-sdk client (``ClientFactory``, streaming ``SendMessage``, configured as the
relay configures its own) calling the bare a2a-sdk server (``bare_sdk_server.py --agent noop``:
the SDK's request handler, in-memory store, no auth) that runs the same no-op agent, with no
gateway at either end. ``p50(floor) - agent work`` (the agent's own CPU, measured in-process) is
the least any relay on the SDK adds per hop: when it exceeds a target, the target cannot be met
with the SDK on this machine; the gap between it and the added p50 is what the gateways add.
The arms ``to-b-jsonrpc`` and ``to-b-grpc`` split the gap: the same SDK client calling B's no-op
agent straight (no A). ``B's hop over floor`` is that call less the floor's (what B adds, or saves,
against the bare SDK server); ``A's relay over a client`` is the added p50 per hop less that call
(what A's relay, its child task and its workflow step add over a bare client of B).
CPU per call is user + system time from /proc: A and B for the gateway arms, this process (the
SDK client) and the server (bare, or B) for the others. Usage::

    python tests/benchmarks/bench_federation.py --quick       # smoke: under a minute
    python tests/benchmarks/bench_federation.py               # a few minutes
    python tests/benchmarks/bench_federation.py --out bench-results/federation.json --rounds 7
    python tests/benchmarks/bench_federation.py --quick --profile a   # also: py-spy A under each arm
    python tests/benchmarks/sdk_hop.py --calls 2000            # the floor alone

``--profile a`` (or ``b``, ``ab``) samples A's (B's) process with py-spy while each gateway arm's
load runs, and prints where its CPU per run goes and what the remote arms spend beyond the local
one. Prints a table and writes the figures as JSON. A delta whose rounds disagree widely is
flagged ``noisy``: on a busy shared machine rerun before reading anything into its verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from a2a.client import A2ACardResolver  # noqa: E402

from tests.benchmarks.bench_a2a import CARD_PATH, BenchError, Ratio, _versions, free_port, percentile  # noqa: E402
from tests.benchmarks.sdk_hop import BINDINGS, LoopbackProcess, SdkHop, agent_work_ms  # noqa: E402  (imports gateway, then the SDK)

NOOP = "tests.benchmarks.noop_agent:noop"
GATEWAY_ARMS = {"local": "local-step", "jsonrpc": "remote-step", "grpc": "grpc-step"}
FLOOR_ARMS = {"floor-jsonrpc": "jsonrpc", "floor-grpc": "grpc"}  # floor arm -> the gateway arm it bounds
DIRECT_ARMS = {"to-b-jsonrpc": "jsonrpc", "to-b-grpc": "grpc"}  # the SDK client straight to B's agent
ARMS = [*GATEWAY_ARMS, *FLOOR_ARMS, *DIRECT_ARMS]
_WHAT = dict.fromkeys(DIRECT_ARMS, "SDK client -> B")
TARGETS_MS = {"jsonrpc": 3.0, "grpc": 2.0}
START_TIMEOUT_S = 60.0
TOKEN = "bench-token"


@dataclass
class Org(LoopbackProcess):
    """One gateway process."""

    name: str
    folder: Path
    port: int
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

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
    """One arm's requests in one round, and the CPU each process of the arm spent on them."""

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


Call = Callable[[], Awaitable[str | None]]  # one request: None when it completed, else what went wrong


@dataclass
class Bench:
    """The processes under test and how to send one request of each arm."""

    http: httpx.AsyncClient
    a: Org
    b: Org
    floor: SdkHop | None

    def call(self, arm: str) -> Call:
        if arm in FLOOR_ARMS or arm in DIRECT_ARMS:
            assert self.floor is not None
            floor = self.floor
            return lambda: floor.call(arm)
        url = f"/agents/{GATEWAY_ARMS[arm]}"

        async def send() -> str | None:
            response = await self.http.post(url, json=_body())
            state = response.json().get("result", {}).get("task", {}).get("status", {}).get("state")
            return None if state == "TASK_STATE_COMPLETED" else response.text[:300]

        return send

    def pids(self, arm: str) -> dict[str, int]:
        """The processes whose CPU an arm's requests cost: A and B, or the SDK client (here) and server."""
        if arm in FLOOR_ARMS:
            assert self.floor is not None
            return {"a": os.getpid(), "b": self.floor.pid}
        if arm in DIRECT_ARMS:
            return {"a": os.getpid(), "b": self.b.pid}
        return {"a": self.a.pid, "b": self.b.pid}


async def measure(bench: Bench, arm: str, seconds: float, round_no: int) -> Window:
    """Requests of ``arm``, one at a time, for ``seconds``."""
    window, call, pids = Window(arm, round_no), bench.call(arm), bench.pids(arm)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        error = await call()
        elapsed = (time.perf_counter() - started) * 1000
        if error is None:
            window.latencies_ms.append(elapsed)
        else:
            window.errors += 1
            window.first_error = window.first_error or error
    window.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return window


def cpu_ms_per_run(windows: list[Window]) -> dict[str, float | None]:
    """CPU milliseconds each process spent per completed request."""
    runs = sum(len(w.latencies_ms) for w in windows)
    names = windows[0].cpu_s.keys() if windows else ()
    return {name: (sum(w.cpu_s[name] for w in windows) * 1000 / runs if runs else None) for name in names}


def _p50(windows: list[Window]) -> float | None:
    values = [v for w in windows for v in w.latencies_ms]
    return statistics.median(values) if values else None


def _delta(windows: dict[str, list[Window]], arm: str, base: str | None, offset: float = 0.0) -> tuple[Any, Any]:
    """``p50(arm) - p50(base) - offset``, pooled over rounds, and per round."""

    def one(ws: list[Window], bs: list[Window] | None) -> float | None:
        value, minus = _p50(ws), (_p50(bs) if bs is not None else 0.0)
        return None if value is None or minus is None else value - minus - offset

    pooled = one(windows[arm], windows[base] if base else None)
    rounds = [one([w], [windows[base][i]] if base else None) for i, w in enumerate(windows[arm])]
    return pooled, rounds


def ratios(windows: dict[str, list[Window]], summary: dict[str, Any], agent_ms: float | None) -> list[Ratio]:
    """The added p50 per hop against its target, the floor against the same target, and the CPU behind both."""
    out = []
    for arm in ("jsonrpc", "grpc"):
        if arm in windows and "local" in windows:
            value, rounds = _delta(windows, arm, "local")
            detail = f"p50({GATEWAY_ARMS[arm]}) - p50(local-step), pooled rounds"
            out.append(Ratio(f"added p50 per hop, {arm}", value, TARGETS_MS[arm], "<=", "ms", detail, rounds))
    for floor, arm in FLOOR_ARMS.items():
        if floor not in windows:
            continue
        value, rounds = _delta(windows, floor, None, agent_ms or 0.0)
        detail = f"p50({floor}) - the agent's own work ({_fmt(agent_ms, '.3f')} ms): the least a relay adds"
        out.append(Ratio(f"floor per hop, {arm}", value, TARGETS_MS[arm], "<=", "ms", detail, rounds))
        if arm in windows and "local" in windows:
            added, added_rounds = _delta(windows, arm, "local")
            pairs = zip(added_rounds, rounds, strict=True)
            gap_rounds = [x - y if x is not None and y is not None else None for x, y in pairs]
            gap = added - value if added is not None and value is not None else None
            detail = "added p50 per hop - floor per hop: what the two gateways add beyond the SDK"
            out.append(Ratio(f"gap to floor, {arm}", gap, None, "<=", "ms", detail, gap_rounds))
    for direct, arm in DIRECT_ARMS.items():
        if direct in windows and f"floor-{arm}" in windows:
            value, rounds = _delta(windows, direct, f"floor-{arm}")
            detail = "the SDK client's call to B's agent minus the same call to the bare SDK server"
            out.append(Ratio(f"B's hop over floor, {arm}", value, None, "<=", "ms", detail, rounds))
        if direct in windows and arm in windows and "local" in windows:
            added, added_rounds = _delta(windows, arm, "local")
            direct_p50, direct_rounds = _delta(windows, direct, None, agent_ms or 0.0)
            pairs = zip(added_rounds, direct_rounds, strict=True)
            a_rounds = [x - y if x is not None and y is not None else None for x, y in pairs]
            value = added - direct_p50 if added is not None and direct_p50 is not None else None
            detail = "added p50 per hop - (the SDK client's call to B - agent work): what A's relay adds"
            out.append(Ratio(f"A's relay over a client, {arm}", value, None, "<=", "ms", detail, a_rounds))
    local = summary.get("local", {}).get("cpu_ms_per_run", {})
    for arm in ("jsonrpc", "grpc"):
        cpu = summary.get(arm, {}).get("cpu_ms_per_run", {})
        floor = summary.get(f"floor-{arm}", {}).get("cpu_ms_per_run", {})
        if cpu and local:
            relay = (cpu["a"] or 0.0) - (local["a"] or 0.0)
            detail = "A's CPU per run, remote arm minus local arm: the relay (vs the floor's SDK client)"
            out.append(Ratio(f"relay CPU at A, {arm}", relay, None, "<=", "ms", detail))
            if floor:
                detail = f"A's relay CPU minus the bare SDK client's ({_fmt(floor['a'])} ms)"
                out.append(Ratio(f"relay CPU over floor, {arm}", relay - (floor["a"] or 0.0), None, "<=", "ms", detail))
                detail = f"B's CPU per run minus the bare SDK server's ({_fmt(floor['b'])} ms)"
                over = (cpu["b"] or 0.0) - (floor["b"] or 0.0)
                out.append(Ratio(f"B CPU over floor, {arm}", over, None, "<=", "ms", detail))
    return out


async def run(args: argparse.Namespace, a: Org, b: Org, floor: SdkHop | None, work: Path) -> dict[str, Any]:
    arms = [arm for arm in ARMS if arm in args.arms]
    windows: dict[str, list[Window]] = {arm: [] for arm in arms}
    headers = {"A2A-Version": "1.0"}
    profiles: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=a.url, timeout=30, headers=headers) as http:
        if floor is not None:
            await floor.open()
            if set(arms) & set(DIRECT_ARMS):
                card = await A2ACardResolver(floor.http, b.url, f"/agents/noop{CARD_PATH}").get_agent_card()
                floor.add_clients(card, {arm: BINDINGS[f"floor-{DIRECT_ARMS[arm]}"] for arm in DIRECT_ARMS})
        bench = Bench(http, a, b, floor)
        try:
            for arm in arms:  # warm up every path: connections, channels, card caches
                await measure(bench, arm, args.warmup, 0)
            for round_no in range(1, args.rounds + 1):
                for arm in arms if round_no % 2 else reversed(arms):
                    windows[arm].append(await measure(bench, arm, args.window, round_no))
            if args.profile:
                profiles = await profile_orgs(bench, args, work)
        finally:
            if floor is not None:
                await floor.aclose()
    summary = {}
    for arm, ws in windows.items():
        values = [v for w in ws for v in w.latencies_ms]
        summary[arm] = {
            "what": GATEWAY_ARMS.get(
                arm, "SDK client -> B" if arm in DIRECT_ARMS else "bare SDK client -> bare SDK server"
            ),
            "runs": len(values),
            "errors": sum(w.errors for w in ws),
            "first_error": next((w.first_error for w in ws if w.first_error), None),
            "latency_ms": {q: percentile(values, p) for q, p in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))},
            "p50_ms_by_round": [statistics.median(w.latencies_ms) if w.latencies_ms else None for w in ws],
            "cpu_ms_per_run": cpu_ms_per_run(ws),
        }
    agent_ms = await agent_work_ms() if floor is not None else None
    found = ratios(windows, summary, agent_ms)
    return {
        "arms": summary,
        "agent_work_ms": agent_ms,
        "ratios": [{**asdict(r), "verdict": r.verdict, "noisy": r.noisy} for r in found],
        "profiles": profiles,
    }


# --- profile: where A's (or B's) CPU goes under each gateway arm -------------------------------------------


async def profile_orgs(bench: Bench, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """py-spy on each org in ``args.profile`` under each gateway arm; and the remote arms less the local one."""
    from tests.benchmarks.bench_mcp import profile_delta
    from tests.benchmarks.bench_orchestration import Profile, py_spy_during, py_spy_note

    profiles: dict[str, Any] = {}
    seconds, rate = args.profile_seconds, args.profile_rate
    for org_name in args.profile:
        org = bench.a if org_name == "a" else bench.b
        for arm in (a for a in GATEWAY_ARMS if a in args.arms):
            print(f"profiling {org.name} under {arm} ({args.profile_seconds:g}s of py-spy)", flush=True)
            out = work / f"py-spy-{org_name}-{arm}.txt"
            load = functools.partial(measure, bench, arm, seconds + 1.0, -1)  # outlasts the sampling
            window, self_w, total_w = await py_spy_during(org.pid, seconds, rate, out, lambda _, load=load: load())
            runs = max(len(window.latencies_ms), 1)
            cpu_ms = window.cpu_s[org_name] * 1000 / runs
            wall_ms = args.profile_seconds * 1000 / runs
            note = py_spy_note(args.profile_rate).replace("CPU per run", f"{org.name}'s CPU per run (/proc)")
            profile = Profile("py-spy", runs, wall_ms, cpu_ms, self_w, total_w, {}, note, unit="runs")
            report = profile.report(args.profile_top)
            report["all_self"] = profile.report(10_000)["top_self"]
            profiles[f"{org_name}_{arm}"] = report
        local = profiles.get(f"{org_name}_local")
        for arm in ("jsonrpc", "grpc"):
            if local is not None and f"{org_name}_{arm}" in profiles:
                delta = profile_delta(profiles[f"{org_name}_{arm}"], local, args.profile_top)
                profiles[f"{org_name}_{arm}_minus_local"] = delta
    for report in profiles.values():
        report.pop("all_self", None)
    return profiles


def python_speed_ms() -> float:
    """CPU ms of a fixed pure-Python loop, to scale absolute figures between machines (the CPU-bound part)."""
    started, total = time.process_time(), 0
    for i in range(3_000_000):
        total += i
    return round((time.process_time() - started) * 1000, 1)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    config, machine = report["config"], report["machine"]
    print(f"\n== one workflow step vs one bare SDK call, {config['rounds']} rounds x {config['window_s']}s per arm")
    load, loop_ms = machine["loadavg_at_end"][0], machine["python_loop_ms"]
    print(f"(machine: {machine['cpus']} CPUs, load {load:.2f} at the end; a 3M-step Python loop takes {loop_ms} ms")
    print(" of CPU: where it takes N times less, expect the CPU-bound figures below about N times lower)")
    head = f"{'arm':<15}{'what':<14}{'runs':>7}{'errors':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}"
    print(head + f"{'A|client':>10}{'B|server':>10}  p50 by round  (CPU ms per run)")
    for arm, s in report["arms"].items():
        lat, cpu = s["latency_ms"], s["cpu_ms_per_run"]
        rounds = ", ".join(_fmt(v) for v in s["p50_ms_by_round"])
        what = s["what"] if arm in GATEWAY_ARMS else "SDK -> B" if arm in DIRECT_ARMS else "bare SDK"
        print(
            f"{arm:<15}{what:<14}{s['runs']:>7}{s['errors']:>7}{_fmt(lat['p50']):>9}"
            f"{_fmt(lat['p95']):>9}{_fmt(lat['p99']):>9}{_fmt(cpu.get('a')):>10}{_fmt(cpu.get('b')):>10}  [{rounds}]"
        )
    if report.get("agent_work_ms") is not None:
        agent = report["agent_work_ms"]
        print(f"agent work (the no-op agent's executor in-process, events dropped): {agent:.3f} ms CPU")
    print("\n== per hop (target; verdict)")
    for r in report["ratios"]:
        rounds = ", ".join(_fmt(v) for v in r["by_round"])
        target = f"<= {r['target']:g}" if r["target"] is not None else "     "
        print(
            f"{r['name']:<32}{_fmt(r['value']):>8} ms  {target}  {r['verdict']:<5} rounds: [{rounds}]"
            + ("  (noisy)" if r["noisy"] else "")
        )
    profiles = report.get("profiles") or {}
    if profiles:
        from tests.benchmarks.bench_mcp import print_delta
        from tests.benchmarks.bench_orchestration import print_profile

        for key, prof in profiles.items():
            if key.endswith("_minus_local"):
                print_delta(key, prof)
            else:
                print_profile(key, prof)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s: a smoke run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--window", type=float, default=3.0, help="seconds per arm per round")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds per arm before measuring")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"a subset of {','.join(ARMS)}")
    parser.add_argument("--profile", default="", help="py-spy these orgs under each gateway arm: a, b or ab")
    parser.add_argument("--profile-seconds", type=float, default=8.0, help="seconds sampled per arm")
    parser.add_argument("--profile-rate", type=int, default=500, help="py-spy samples per second")
    parser.add_argument("--profile-top", type=int, default=20, help="functions listed per profile")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.window, args.warmup = 3, 1.0, 1.0
    args.arms = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    unknown = set(args.arms) - set(ARMS) or set(args.profile) - {"a", "b"}
    if unknown:
        parser.error(f"unknown arms or orgs: {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="bench-federation-") as tmp:
        work = Path(tmp)
        floor = SdkHop(work / "sdk-hop") if set(args.arms) & {*FLOOR_ARMS, *DIRECT_ARMS} else None
        a, b = start_orgs(work)
        try:
            if floor is not None:
                floor.start()
            figures = asyncio.run(run(args, a, b, floor, work))
        finally:
            a.stop()
            b.stop()
            if floor is not None:
                floor.stop()
    report = {
        "benchmark": "federation",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_at_end": os.getloadavg(),
            "python": platform.python_version(),
            "python_loop_ms": python_speed_ms(),
        },
        "versions": _versions(),
        "config": {"rounds": args.rounds, "window_s": args.window, "warmup_s": args.warmup, "arms": args.arms},
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
