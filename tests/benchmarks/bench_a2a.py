"""A2A benchmark: the gateway against the bare a2a-sdk server, as ratios measured in one run.

Every server under test is its own uvicorn subprocess on a free loopback port; the load comes
from this process (httpx, HTTP/1.1 keep-alive, one pooled connection per concurrent worker;
gRPC through the SDK's stub on one channel). Rounds alternate the order of the servers
(A B C, C B A, ...) so that a noisy neighbour on a shared machine hits all of them alike, and
every figure that matters is a ratio of two servers measured in the same rounds.

Servers:

* ``gateway``       ``python -m gateway serve`` in its default, durable configuration (SQLite).
* ``bare-memory``   ``bare_sdk_server.py --store memory``: the SDK's ``InMemoryTaskStore``.
* ``bare-sqlite``   ``bare_sdk_server.py --store sqlite``: the SDK's ``DatabaseTaskStore``
                    on ``sqlite+aiosqlite`` (SDK defaults; ``--sdk-sqlite-wal`` for WAL).
* ``gateway-nosign``  the gateway with ``SWITCHBOARD_SIGN_CARDS=false`` (card phase only).

OpenTelemetry: the SDK wraps its handlers in spans unless ``OTEL_INSTRUMENTATION_A2A_SDK_ENABLED``
is false; the gateway turns them off when no tracing is configured (``gateway/telemetry.py``),
the bare server keeps the SDK's default (on). ``--bare-otel off`` turns the bare servers' spans
off too and ``--gateway-tracing on`` turns the gateway's on, so each comparison can be made like
for like; the report records both settings.

Both kinds run the same agent, ``gateway.agents.echo:EchoExecutor``. Usage::

    python tests/benchmarks/bench_a2a.py --quick          # smoke: under a minute
    python tests/benchmarks/bench_a2a.py                  # a few minutes
    python tests/benchmarks/bench_a2a.py --out bench-results/a2a.json --rounds 5 --window 5

Prints a table and writes every figure, with each ratio's target and PASS/MISS, as JSON. A ratio
whose rounds disagree widely is flagged ``noisy``: on a busy shared machine rerun it (or raise
``--rounds``/``--window``) before reading anything into its verdict. Server CPU per request
(utime+stime from /proc, reported as INFO ratios) is steadier than throughput under such noise.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

HOST = "127.0.0.1"
HERE = Path(__file__).resolve().parent
BARE_SERVER = HERE / "bare_sdk_server.py"
CARD_PATH = "/.well-known/agent-card.json"
RPC_HEADERS = {"A2A-Version": "1.0", "Content-Type": "application/json"}
SSE_HEADERS = {**RPC_HEADERS, "Accept": "text/event-stream"}
GRPC_METADATA = (("a2a-version", "1.0"),)
COMPLETED = "TASK_STATE_COMPLETED"
STARTUP_TIMEOUT_S = 60.0
MAX_ERRORS_PER_WINDOW = 2000  # a dead server fails fast; stop spinning on it
CLIENT_BOUND_UTILIZATION = 0.8
NOISY_SPREAD_RATIO = 1.5  # a ratio whose rounds differ by more than this factor is flagged noisy
NOISY_SPREAD_MS = 2.0  # likewise for a latency delta whose rounds differ by more than this

OTEL_SWITCH = "OTEL_INSTRUMENTATION_A2A_SDK_ENABLED"  # read by a2a-sdk when a2a.utils.telemetry is imported
GATEWAY, BARE_MEMORY, BARE_SQLITE, GATEWAY_NOSIGN = "gateway", "bare-memory", "bare-sqlite", "gateway-nosign"


class BenchError(Exception):
    """A response that is not what a healthy server sends."""


# --- servers ------------------------------------------------------------------------------------


def free_port() -> int:
    """A currently free loopback port (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM if this process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class Server:
    """One server under test, run as a subprocess."""

    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    rpc_path: str
    card_path: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    card: dict[str, Any] = field(default_factory=dict)
    card_bytes: int = 0
    startup_s: float = 0.0

    @property
    def base(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def rpc_url(self) -> str:
        return self.base + self.rpc_path

    @property
    def card_url(self) -> str:
        return self.base + self.card_path

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, cwd: Path) -> None:
        log = self.log_path.open("wb")
        linux = sys.platform.startswith("linux")
        self._started_at = time.perf_counter()
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if linux else None,
        )
        log.close()
        _CHILDREN.append(self)

    def wait_ready(self, deadline: float) -> None:
        """Poll the card URL until it answers 200 (bounded by ``deadline``)."""
        assert self.proc is not None
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; log:\n{self.log_tail()}")
                try:
                    r = client.get(self.card_url)
                    if r.status_code == 200:
                        self.card, self.card_bytes = r.json(), len(r.content)
                        self.startup_s = time.perf_counter() - self._started_at
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{self.name} did not serve its card within the timeout; log:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def cpu_seconds(self) -> float | None:
        """utime + stime of the server process (all its threads), from /proc; None where unavailable."""
        if self.pid is None:
            return None
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def rss_mb(self) -> float | None:
        if self.pid is None:
            return None
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            return None
        return None

    def grpc_target(self) -> tuple[str, str] | None:
        """``(host:port, tenant)`` of the card's GRPC interface, if it lists one."""
        for interface in self.card.get("supportedInterfaces", []):
            if interface.get("protocolBinding") == "GRPC":
                return str(interface["url"]), str(interface.get("tenant", ""))
        return None

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=8)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


_CHILDREN: list[Server] = []


def stop_all() -> None:
    """Stop every server this process started (only those, by their own Popen)."""
    for server in reversed(_CHILDREN):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(stop_all)


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without inherited ``SWITCHBOARD_*`` settings or the SDK's span switch, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_") and k != OTEL_SWITCH}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def make_servers(work: Path, args: argparse.Namespace) -> dict[str, Server]:
    """The servers of this run (not started)."""
    servers: dict[str, Server] = {}

    def gateway(name: str, **env: str) -> Server:
        port = free_port()
        argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(work / name)]
        # gRPC on a free port (never the default 50051, which a developer's gateway may hold).
        if args.gateway_tracing != "default":
            env.setdefault("SWITCHBOARD_TRACING", args.gateway_tracing)
        return Server(
            name=name,
            argv=argv,
            env=_clean_env(SWITCHBOARD_GRPC_PORT="0", **env),
            port=port,
            rpc_path="/agents/echo",
            card_path=f"/agents/echo{CARD_PATH}",
            log_path=work / f"{name}.log",
        )

    def bare(name: str, store: str) -> Server:
        port = free_port()
        argv = [sys.executable, str(BARE_SERVER), "--store", store, "--port", str(port)]
        argv += ["--data-dir", str(work / name)]
        if not args.no_grpc:
            argv += ["--grpc-port", "0"]
        if store == "sqlite" and args.sdk_sqlite_wal:
            argv.append("--sqlite-wal")
        otel = {} if args.bare_otel == "default" else {OTEL_SWITCH: "true" if args.bare_otel == "on" else "false"}
        return Server(
            name=name,
            argv=argv,
            env=_clean_env(**otel),
            port=port,
            rpc_path="/",
            card_path=CARD_PATH,
            log_path=work / f"{name}.log",
        )

    servers[GATEWAY] = gateway(GATEWAY)
    servers[BARE_MEMORY] = bare(BARE_MEMORY, "memory")
    servers[BARE_SQLITE] = bare(BARE_SQLITE, "sqlite")
    if "card" in args.phases:
        servers[GATEWAY_NOSIGN] = gateway(GATEWAY_NOSIGN, SWITCHBOARD_SIGN_CARDS="false")
    return servers


# --- one measured window ------------------------------------------------------------------------


@dataclass
class Window:
    """One server, one fixed-time window of closed-loop load."""

    server: str
    round: int
    concurrency: int
    ok: int
    errors: int
    seconds: float
    server_cpu_s: float | None
    client_cpu_s: float
    latencies_ms: list[float]
    extra_ms: list[float]  # e.g. time to first streamed event
    first_error: str | None = None

    @property
    def rps(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


Call = Callable[[Any, Server], Awaitable[float | None]]
SessionFactory = Callable[[Server, int], contextlib.AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class Probe:
    """What one request is and how to hold connections for it."""

    session: SessionFactory
    call: Call


async def measure(server: Server, probe: Probe, concurrency: int, seconds: float, round_no: int) -> Window:
    """Closed-loop load from ``concurrency`` workers for ``seconds`` (after warming the connections)."""
    async with probe.session(server, concurrency) as session:
        # Open (and warm) every pooled connection outside the timed window.
        await asyncio.gather(*(probe.call(session, server) for _ in range(concurrency)), return_exceptions=True)
        latencies: list[float] = []
        extra: list[float] = []
        errors = 0
        first_error: str | None = None
        cpu0, client0 = server.cpu_seconds(), time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + seconds

        async def worker() -> None:
            nonlocal errors, first_error
            while time.perf_counter() < deadline and errors < MAX_ERRORS_PER_WINDOW:
                start = time.perf_counter()
                try:
                    value = await probe.call(session, server)
                except Exception as exc:  # every failure counts; the first is kept for the report
                    errors += 1
                    first_error = first_error or f"{type(exc).__name__}: {exc}"[:300]
                    await asyncio.sleep(0.001)
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                if value is not None:
                    extra.append(value)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        cpu1, client1 = server.cpu_seconds(), time.process_time()
    return Window(
        server=server.name,
        round=round_no,
        concurrency=concurrency,
        ok=len(latencies),
        errors=errors,
        seconds=elapsed,
        server_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        client_cpu_s=client1 - client0,
        latencies_ms=latencies,
        extra_ms=extra,
        first_error=first_error,
    )


# --- probes ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def http_session(server: Server, concurrency: int) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as client:
        yield client


def rpc_body(method: str) -> bytes:
    message = {"role": "ROLE_USER", "parts": [{"text": "hi"}], "messageId": str(uuid.uuid4())}
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": {"message": message}}).encode()


def _state(result: dict[str, Any]) -> str | None:
    for key in ("task", "statusUpdate"):
        if key in result:
            return result[key].get("status", {}).get("state")
    return None


async def call_send(client: httpx.AsyncClient, server: Server) -> None:
    r = await client.post(server.rpc_url, content=rpc_body("SendMessage"), headers=RPC_HEADERS)
    if r.status_code != 200:
        raise BenchError(f"HTTP {r.status_code}: {r.text[:200]}")
    state = _state(json.loads(r.content).get("result") or {})
    if state != COMPLETED:
        raise BenchError(f"not a completed task: {r.text[:200]}")


async def call_stream(client: httpx.AsyncClient, server: Server) -> float:
    """Stream one message to the end; returns the time to its first ``data:`` line (ms)."""
    start = time.perf_counter()
    first: float | None = None
    last = ""
    async with client.stream(
        "POST", server.rpc_url, content=rpc_body("SendStreamingMessage"), headers=SSE_HEADERS
    ) as r:
        if r.status_code != 200:
            await r.aread()
            raise BenchError(f"HTTP {r.status_code}: {r.text[:200]}")
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                if first is None:
                    first = time.perf_counter()
                last = line
    if first is None:
        raise BenchError("the stream carried no events")
    if _state(json.loads(last[5:]).get("result") or {}) != COMPLETED:
        raise BenchError(f"the stream did not end with a completed task: {last[:200]}")
    return (first - start) * 1000


async def call_card(client: httpx.AsyncClient, server: Server) -> None:
    r = await client.get(server.card_url)
    if r.status_code != 200 or not r.content.startswith(b"{"):
        raise BenchError(f"HTTP {r.status_code}: {r.text[:200]}")


# ==== gRPC SendMessage ===========================================================================
# Runs only when the gateway's card lists a GRPC interface (SWITCHBOARD_GRPC_PORT=0 gives it a
# free port; the interface url is host:port and its tenant names the agent). The bare servers
# serve the SDK's GrpcHandler on the same request handler (and store) as their HTTP side.


@dataclass(frozen=True)
class GrpcSession:
    stub: Any
    tenant: str


@contextlib.asynccontextmanager
async def grpc_session(server: Server, concurrency: int) -> AsyncIterator[GrpcSession]:
    import grpc.aio
    from a2a.types import a2a_pb2_grpc

    target = server.grpc_target()
    if target is None:
        raise BenchError(f"{server.name} lists no GRPC interface")
    address, tenant = target
    async with grpc.aio.insecure_channel(address, options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield GrpcSession(a2a_pb2_grpc.A2AServiceStub(channel), tenant)


async def call_grpc_send(session: GrpcSession, server: Server) -> None:
    from a2a.types import a2a_pb2

    message = a2a_pb2.Message(
        role=a2a_pb2.Role.ROLE_USER, parts=[a2a_pb2.Part(text="hi")], message_id=str(uuid.uuid4())
    )
    request = a2a_pb2.SendMessageRequest(tenant=session.tenant, message=message)
    response = await session.stub.SendMessage(request, metadata=GRPC_METADATA, timeout=30.0)
    if response.task.status.state != a2a_pb2.TaskState.TASK_STATE_COMPLETED:
        raise BenchError(f"not a completed task: {str(response)[:200]}")


def grpc_available(servers: Sequence[Server]) -> str | None:
    """None when every server lists a GRPC interface, else why the gRPC phase is skipped."""
    try:
        import grpc.aio  # noqa: F401
        from a2a.types import a2a_pb2_grpc  # noqa: F401
    except ImportError as exc:
        return f"grpc is not importable: {exc}"
    missing = [s.name for s in servers if s.grpc_target() is None]
    return f"no GRPC interface on the card of {', '.join(missing)}" if missing else None


# ==== end gRPC ===================================================================================

PROBES = {
    "send": Probe(http_session, call_send),
    "stream": Probe(http_session, call_stream),
    "card": Probe(http_session, call_card),
    "grpc": Probe(grpc_session, call_grpc_send),
}


# --- phases, summaries, ratios ----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summarize(windows: list[Window]) -> dict[str, Any]:
    ok = sum(w.ok for w in windows)
    seconds = sum(w.seconds for w in windows)
    latencies = [x for w in windows for x in w.latencies_ms]
    extra = [x for w in windows for x in w.extra_ms]
    cpu = [w.server_cpu_s for w in windows]
    server_cpu = None if any(c is None for c in cpu) else sum(c for c in cpu if c is not None)
    client_cpu = sum(w.client_cpu_s for w in windows)
    out: dict[str, Any] = {
        "requests": ok,
        "errors": sum(w.errors for w in windows),
        "first_error": next((w.first_error for w in windows if w.first_error), None),
        "seconds": round(seconds, 3),
        "rps": ok / seconds if seconds else 0.0,
        "rps_by_round": [round(w.rps, 1) for w in windows],
        "rps_median_round": statistics.median(w.rps for w in windows),
        "latency_ms": {f"p{int(q * 100)}": percentile(latencies, q) for q in (0.5, 0.95, 0.99)},
        "latency_p50_ms_by_round": [percentile(w.latencies_ms, 0.5) for w in windows],
        "server_cpu_us_per_request": server_cpu / ok * 1e6 if server_cpu is not None and ok else None,
        "server_cpu_utilization": server_cpu / seconds if server_cpu is not None and seconds else None,
        "client_cpu_us_per_request": client_cpu / ok * 1e6 if ok else None,
        "client_cpu_utilization": client_cpu / seconds if seconds else None,
        # The load generator near a full core means the figure measures the client, not the server.
        "client_bound": bool(seconds and client_cpu / seconds > CLIENT_BOUND_UTILIZATION),
    }
    if extra:
        out["first_event_ms"] = {f"p{int(q * 100)}": percentile(extra, q) for q in (0.5, 0.95, 0.99)}
        out["first_event_p50_ms_by_round"] = [percentile(w.extra_ms, 0.5) for w in windows]
    return out


async def run_phase(
    label: str, probe: Probe, servers: list[Server], concurrency: int, rounds: int, seconds: float
) -> dict[str, list[Window]]:
    """``rounds`` windows per server, the order reversed every other round."""
    windows: dict[str, list[Window]] = {s.name: [] for s in servers}
    for r in range(rounds):
        order = servers if r % 2 == 0 else servers[::-1]
        for server in order:
            window = await measure(server, probe, concurrency, seconds, r)
            windows[server.name].append(window)
            err = f" errors={window.errors}" if window.errors else ""
            print(f"  [{label}] round {r + 1}/{rounds} {server.name:<15} {window.rps:8.1f} req/s{err}", flush=True)
    return windows


@dataclass
class Ratio:
    name: str
    value: float | None
    target: float | None  # None: reported to explain the others, not judged
    op: str  # ">=" or "<="
    unit: str
    detail: str
    by_round: list[float | None] = field(default_factory=list)

    @property
    def noisy(self) -> bool:
        """Whether the rounds disagree too much for the verdict to mean much (a busy shared machine)."""
        values = [v for v in self.by_round if v is not None]
        if len(values) < 2:
            return False
        if self.unit == "ms":
            return max(values) - min(values) > NOISY_SPREAD_MS
        return min(values) <= 0 or max(values) / min(values) > NOISY_SPREAD_RATIO

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "INFO"
        if self.value is None:
            return "N/A"
        ok = self.value >= self.target if self.op == ">=" else self.value <= self.target
        return "PASS" if ok else "MISS"


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def throughput_ratio(
    name: str, results: dict[str, list[Window]], a: str, b: str, target: float, op: str = ">="
) -> Ratio:
    """``a``/``b`` req/s: the median of the per-round ratios (each pair measured back to back)."""
    by_round = [wa.rps / wb.rps if wb.rps else None for wa, wb in zip(results[a], results[b], strict=True)]
    return Ratio(name, _median(by_round), target, op, "x", f"{a} / {b} req/s, median of rounds", by_round)


def cpu_ratio(name: str, results: dict[str, list[Window]], a: str, b: str) -> Ratio:
    """Server CPU per request of ``a`` / ``b`` (utime+stime from /proc), per round and pooled."""

    def per_request(windows: Sequence[Window]) -> float | None:
        cpu = [w.server_cpu_s for w in windows]
        ok = sum(w.ok for w in windows)
        return None if None in cpu or not ok else sum(c for c in cpu if c is not None) / ok

    by_round = []
    for wa, wb in zip(results[a], results[b], strict=True):
        pa, pb = per_request([wa]), per_request([wb])
        by_round.append(pa / pb if pa is not None and pb else None)
    pa, pb = per_request(results[a]), per_request(results[b])
    value = pa / pb if pa is not None and pb else None
    return Ratio(name, value, None, "<=", "x", f"server CPU per request {a} / {b}, pooled rounds", by_round)


def p50_delta(name: str, results: dict[str, list[Window]], a: str, b: str, target: float) -> Ratio:
    """p50(a) - p50(b) in ms, pooled over the rounds (per-round deltas alongside)."""
    pooled = [percentile([x for w in results[s] for x in w.latencies_ms], 0.5) for s in (a, b)]
    value = pooled[0] - pooled[1] if None not in pooled else None  # type: ignore[operator]
    by_round = []
    for wa, wb in zip(results[a], results[b], strict=True):
        pa, pb = percentile(wa.latencies_ms, 0.5), percentile(wb.latencies_ms, 0.5)
        by_round.append(pa - pb if pa is not None and pb is not None else None)
    return Ratio(name, value, target, "<=", "ms", f"p50({a}) - p50({b}), pooled rounds", by_round)


def first_event_ratio(name: str, results: dict[str, list[Window]], a: str, b: str, target: float) -> Ratio:
    pooled = [percentile([x for w in results[s] for x in w.extra_ms], 0.5) for s in (a, b)]
    value = pooled[0] / pooled[1] if pooled[0] is not None and pooled[1] else None
    by_round = []
    for wa, wb in zip(results[a], results[b], strict=True):
        pa, pb = percentile(wa.extra_ms, 0.5), percentile(wb.extra_ms, 0.5)
        by_round.append(pa / pb if pa is not None and pb else None)
    return Ratio(name, value, target, "<=", "x", f"p50 first event {a} / {b}, pooled rounds", by_round)


# --- the run -------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, servers: dict[str, Server]) -> dict[str, Any]:
    phases: dict[str, dict[str, Any]] = {}
    ratios: list[Ratio] = []
    skipped: dict[str, str] = {}
    rounds, window = args.rounds, args.window
    gw, mem, sql = servers[GATEWAY], servers[BARE_MEMORY], servers[BARE_SQLITE]

    def record(key: str, results: dict[str, list[Window]], concurrency: int, probe: str) -> None:
        phases[key] = {
            "probe": probe,
            "concurrency": concurrency,
            "window_s": window,
            "rounds": rounds,
            "servers": {name: summarize(ws) for name, ws in results.items()},
        }

    print(f"warm-up ({args.warmup:g}s per server)", flush=True)
    for server in (gw, mem, sql):
        await measure(server, PROBES["send"], 4, args.warmup, -1)

    if "send" in args.phases:
        for c in args.concurrency:
            results = await run_phase(f"SendMessage c={c}", PROBES["send"], [gw, mem, sql], c, rounds, window)
            record(f"send_c{c}", results, c, "JSON-RPC SendMessage")
            ratios.append(throughput_ratio(f"send c={c}: gateway / bare-memory", results, GATEWAY, BARE_MEMORY, 0.85))
            ratios.append(throughput_ratio(f"send c={c}: gateway / bare-sqlite", results, GATEWAY, BARE_SQLITE, 5.0))
            if c == 1:
                ratios.append(p50_delta("send c=1: added p50 over bare-memory", results, GATEWAY, BARE_MEMORY, 0.5))
            ratios.append(cpu_ratio(f"send c={c}: server CPU/req gateway / bare-memory", results, GATEWAY, BARE_MEMORY))

    if "stream" in args.phases:
        results = await run_phase("stream c=1", PROBES["stream"], [gw, mem], 1, rounds, window)
        record("stream_c1", results, 1, "JSON-RPC SendStreamingMessage (SSE), time to first data: line")
        ratios.append(
            first_event_ratio("stream: first-event p50 gateway / bare-memory", results, GATEWAY, BARE_MEMORY, 1.2)
        )
        ratios.append(throughput_ratio("stream c=1: gateway / bare-memory", results, GATEWAY, BARE_MEMORY, 0.85))

    if "card" in args.phases:
        nosign = servers[GATEWAY_NOSIGN]
        c = args.card_concurrency
        results = await run_phase(f"card c={c}", PROBES["card"], [gw, nosign], c, rounds, window)
        record(f"card_c{c}", results, c, "GET agent card")
        ratios.append(throughput_ratio(f"card c={c}: signed / unsigned", results, GATEWAY, GATEWAY_NOSIGN, 0.95))
        ratios.append(cpu_ratio(f"card c={c}: server CPU/req signed / unsigned", results, GATEWAY, GATEWAY_NOSIGN))

    if "grpc" in args.phases:
        reason = "--no-grpc" if args.no_grpc else grpc_available([gw, mem, sql])
        if reason:
            skipped["grpc"] = reason
            print(f"gRPC phase skipped: {reason}", flush=True)
        else:
            for c in args.concurrency:
                results = await run_phase(f"gRPC SendMessage c={c}", PROBES["grpc"], [gw, mem, sql], c, rounds, window)
                record(f"grpc_send_c{c}", results, c, "gRPC SendMessage")
                ratios.append(
                    throughput_ratio(f"gRPC c={c}: gateway / bare-memory", results, GATEWAY, BARE_MEMORY, 0.85)
                )
                ratios.append(
                    throughput_ratio(f"gRPC c={c}: gateway / bare-sqlite", results, GATEWAY, BARE_SQLITE, 5.0)
                )
                if c == 1:
                    ratios.append(p50_delta("gRPC c=1: added p50 over bare-memory", results, GATEWAY, BARE_MEMORY, 0.5))
                ratios.append(
                    cpu_ratio(f"gRPC c={c}: server CPU/req gateway / bare-memory", results, GATEWAY, BARE_MEMORY)
                )

    return {"phases": phases, "ratios": ratios, "skipped": skipped}


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def print_report(report: dict[str, Any]) -> None:
    print()
    for key, phase in report["phases"].items():
        print(
            f"== {key}: {phase['probe']}, concurrency {phase['concurrency']}, {phase['rounds']} x {phase['window_s']}s"
        )
        head = f"{'server':<16}{'req/s':>9}{'med rnd':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}"
        head += f"{'1st ev':>8}{'errors':>7}{'srv us/req':>11}{'srv cpu':>8}{'cli cpu':>8}"
        print(head)
        for name, s in phase["servers"].items():
            lat = s["latency_ms"]
            first = s.get("first_event_ms", {}).get("p50")
            srv, cli = s["server_cpu_utilization"], s["client_cpu_utilization"]
            print(
                f"{name:<16}{s['rps']:>9.1f}{s['rps_median_round']:>9.1f}{_fmt(lat['p50']):>8}{_fmt(lat['p95']):>8}"
                f"{_fmt(lat['p99']):>8}{_fmt(first):>8}{s['errors']:>7}"
                f"{_fmt(s['server_cpu_us_per_request'], '.0f'):>11}"
                f"{_fmt(None if srv is None else srv * 100, '.0f') + '%':>8}"
                f"{_fmt(None if cli is None else cli * 100, '.0f') + '%':>8}"
                + ("  (client-bound)" if s["client_bound"] else "")
            )
        print()
    print("== ratios (target; verdict)")
    for ratio in report["ratios"]:
        rounds = ", ".join(_fmt(v, ".3f") for v in ratio["by_round"])
        print(
            f"{ratio['name']:<48}{_fmt(ratio['value'], '.3f'):>9} {ratio['unit']:<3}"
            f"{ratio['op'] if ratio['target'] is not None else ' '} {_fmt(ratio['target'], 'g'):<5} "
            f"{ratio['verdict']:<5} rounds: [{rounds}]" + ("  (noisy)" if ratio["noisy"] else "")
        )
    for phase, reason in report["skipped"].items():
        print(f"{phase}: skipped ({reason})")


def _versions() -> dict[str, str]:
    out = {}
    for dist in (
        "a2a-sdk",
        "switchboard-gateway",
        "starlette",
        "uvicorn",
        "httpx",
        "grpcio",
        "sqlalchemy",
        "aiosqlite",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    for opt in ("uvloop", "httptools"):
        try:
            out[opt] = metadata.version(opt)
        except metadata.PackageNotFoundError:
            out[opt] = "not installed"
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="A2A: the gateway against the bare a2a-sdk server, as ratios.")
    p.add_argument("--quick", action="store_true", help="smoke mode: 2 short rounds, well under a minute")
    p.add_argument("--rounds", type=int, help="rounds per phase (default 5, quick 2)")
    p.add_argument("--window", type=float, help="seconds per server per round (default 2, quick 0.7)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up load per server (default 2, quick 0.5)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="SendMessage concurrencies")
    p.add_argument("--card-concurrency", type=int, default=16)
    p.add_argument("--phases", default="send,stream,card,grpc", help="comma-separated subset of send,stream,card,grpc")
    p.add_argument("--no-grpc", action="store_true", help="do not start or measure gRPC")
    p.add_argument("--sdk-sqlite-wal", action="store_true", help="bare-sqlite with WAL + synchronous=NORMAL")
    p.add_argument(
        "--bare-otel",
        choices=["default", "on", "off"],
        default="default",
        help="the bare servers' SDK spans (default: the SDK's own default, on)",
    )
    p.add_argument(
        "--gateway-tracing",
        choices=["default", "on", "off"],
        default="default",
        help="SWITCHBOARD_TRACING for the gateway (default: its own default, spans off unless tracing is configured)",
    )
    p.add_argument("--out", type=Path, default=Path("bench-results/a2a.json"), help="JSON results path")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dirs and server logs")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed or a request failed")
    args = p.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.window = args.window or (0.7 if quick else 2.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if quick else 2.0)
    args.phases = {x.strip() for x in args.phases.split(",") if x.strip()}
    unknown = args.phases - set(PROBES)
    if unknown:
        p.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    return args


# -- shared by the benchmark scripts (bench_orchestration, bench_mcp import these) -------------


def machine_info(load_at_start: list[float] | None) -> dict[str, Any]:
    """What the report records about the machine the run was on."""
    return {
        "cpus": os.cpu_count(),
        "loadavg_at_start": load_at_start,
        "loadavg_at_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def ratio_rows(ratios: Sequence[Any]) -> list[dict[str, Any]]:
    """Each ratio as a report row with its verdict."""
    return [{**asdict(r), "verdict": r.verdict, "noisy": r.noisy} for r in ratios]


def check_alive(servers: Mapping[str, Any]) -> None:
    """Fail loudly if a server under test died during the run."""
    for server in servers.values():
        if server.proc is not None and server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} died during the run; log:\n{server.log_tail()}")


def exit_status(ratios: Sequence[Mapping[str, Any]], phases: Mapping[str, Any], strict: bool) -> int:
    """1 under ``--strict`` when a target was missed or a request failed, else 0."""
    missed = any(r["verdict"] == "MISS" for r in ratios)
    errors = sum(s["errors"] for ph in phases.values() for s in ph.get("servers", {}).values())
    return 1 if strict and (missed or errors) else 0


def remove_work(work: Path, keep: bool) -> None:
    """Delete the benchmark's scratch dir, or say where it was kept (``--keep``)."""
    if keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)


def write_report(report: dict[str, Any], out: Path) -> None:
    """Save the JSON report and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} in {report['duration_s']}s total", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    began = time.perf_counter()
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    servers = make_servers(work, args)
    try:
        print(f"starting {', '.join(servers)} (logs in {work})", flush=True)
        for server in servers.values():
            server.start(work)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        for server in servers.values():
            server.wait_ready(deadline)
        body = asyncio.run(run(args, servers))
        check_alive(servers)
        ratios = ratio_rows(body["ratios"])
        report = {
            "benchmark": "a2a",
            "mode": "quick" if args.quick else "default",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": None,
            "machine": machine_info(load_at_start),
            "versions": _versions(),
            "config": {
                "rounds": args.rounds,
                "window_s": args.window,
                "warmup_s": args.warmup,
                "concurrency": args.concurrency,
                "card_concurrency": args.card_concurrency,
                "phases": sorted(args.phases),
                "sdk_sqlite_wal": args.sdk_sqlite_wal,
                "bare_otel": args.bare_otel,
                "gateway_tracing": args.gateway_tracing,
            },
            "servers": {
                s.name: {
                    "command": [Path(a).name if os.path.isabs(a) else a for a in s.argv],
                    "startup_s": round(s.startup_s, 2),
                    "rss_mb_at_end": s.rss_mb(),
                    "card_bytes": s.card_bytes,
                    "card_signed": "signatures" in s.card,
                    "grpc": s.grpc_target(),
                }
                for s in servers.values()
            },
            "phases": body["phases"],
            "ratios": ratios,
            "skipped": body["skipped"],
        }
        report["duration_s"] = round(time.perf_counter() - began, 1)
        print_report(report)
        write_report(report, args.out)
        return exit_status(ratios, body["phases"], args.strict)
    finally:
        stop_all()
        remove_work(work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
