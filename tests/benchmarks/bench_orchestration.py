"""Orchestration overhead: workflow runs over no-op participants against calling them directly, in one process.

One process, one event loop: the gateway app is built in-process (``create_app`` on a temporary
data dir and a generated agents folder of no-op python agents, ``noop_agent.py``), its lifespan
is entered, and every run is a call of a request handler, so no HTTP or serialisation of the
caller's request is measured. Shapes:

* ``seq10``   a ``sequential`` workflow over 10 participants;
* ``fan1``, ``fan10``, ``fan100``  ``concurrent`` workflows (merge ``concatenate``) over 1, 10, 100.

Each shape is measured three ways ("arms"), alternating their order every round (A B C, C B A,
...) so that a noisy neighbour on a shared machine hits them alike:

* ``workflow``  the workflow agent's handler: ``on_message_send(SendMessageRequest, ServerCallContext())``,
                one run at a time, to its completed task (child tasks, checkpoints, artifacts, status;
                the no-op participants' child tasks run on their ``LocalRunner``, ``gateway.hosting.local_tasks``);
* ``direct``    the same participants through each one's own request handler (``on_message_send``),
                in sequence for ``seq10``, with ``asyncio.gather`` for the fan-outs;
* ``bare``      the no-op runtime function itself, awaited the same way (no A2A at all).

Targets (from the issue): a fan-out of 100 completes in <= 50 ms (p50 of the workflow's wall
time per run), and the per-step overhead, ``(p50(workflow) - p50(direct)) / steps``, is <= 1 ms
for every shape. Usage::

    python tests/benchmarks/bench_orchestration.py --quick          # smoke: under a minute
    python tests/benchmarks/bench_orchestration.py                  # a few minutes
    python tests/benchmarks/bench_orchestration.py --profile        # also: where a workflow run's time goes
    python tests/benchmarks/bench_orchestration.py --shapes fan100 --profile --rounds 1

``--profile`` (py-spy, the default) or ``--profile cprofile`` profiles extra workflow runs of each
shape after the measurement (so it does not distort the figures) and reports CPU ms per run by
package, the functions with the most self time and the gateway's functions by inclusive time.
For a flame graph, run the benchmark under py-spy yourself, e.g.
``py-spy record --format speedscope -o bench-results/orchestration.speedscope.json -- python
tests/benchmarks/bench_orchestration.py --shapes fan100 --rounds 3``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import re
import shutil
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # the no-op agent and the fixture helpers are imported as tests.*
    sys.path.insert(0, str(REPO))

from a2a.server.context import ServerCallContext  # noqa: E402
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, Task, TaskState  # noqa: E402

from gateway.app import Gateway, create_app  # noqa: E402
from gateway.runtime import AgentCall, Reply  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.benchmarks.bench_a2a import (  # noqa: E402
    BenchError,
    Ratio,
    _median,
    _versions,
    exit_status,
    machine_info,
    percentile,
    print_report,
    ratio_rows,
    remove_work,
    write_report,
)
from tests.benchmarks.noop_agent import noop  # noqa: E402
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow  # noqa: E402

NOOP_ENTRYPOINT = "tests.benchmarks.noop_agent:noop"
WORKFLOW, DIRECT, BARE = "workflow", "direct", "bare"
ARMS = (WORKFLOW, DIRECT, BARE)
T = TypeVar("T")
FANOUT_TARGET_MS = 50.0
STEP_OVERHEAD_TARGET_MS = 1.0
MAX_RUNS_PER_WINDOW = 100_000


@dataclass(frozen=True)
class Shape:
    """One workflow under test."""

    key: str
    pattern: str
    width: int

    @property
    def agent(self) -> str:
        return f"bench-{self.key}"

    @property
    def participants(self) -> tuple[str, ...]:
        return tuple(participant(i) for i in range(1, self.width + 1))

    @property
    def steps(self) -> int:
        return self.width

    @property
    def label(self) -> str:
        return f"{'sequential' if self.pattern == 'sequential' else 'fan-out'} {self.width}"


SHAPES = {
    "seq10": Shape("seq10", "sequential", 10),
    "fan1": Shape("fan1", "concurrent", 1),
    "fan10": Shape("fan10", "concurrent", 10),
    "fan100": Shape("fan100", "concurrent", 100),
}


def participant(i: int) -> str:
    return f"noop-{i:03d}"


# --- the gateway, in-process ----------------------------------------------------------------------


def write_agents(folder: Path, shapes: Sequence[Shape]) -> Path:
    """The agents folder: as many no-op agents as the widest shape needs, and one workflow per shape."""
    width = max(s.width for s in shapes)
    files = [python_agent(participant(i), NOOP_ENTRYPOINT) for i in range(1, width + 1)]
    for shape in shapes:
        options = {"merge": "concatenate"} if shape.pattern == "concurrent" else None
        # The default of 50 steps per run would stop a fan-out of 100.
        files.append(workflow(shape.agent, shape.pattern, shape.participants, options, {"max_steps": shape.steps}))
    return agents_folder(folder, files)


def request() -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="hi")])
    return SendMessageRequest(message=message)


def _completed(result: Task | Message, what: str) -> None:
    if not isinstance(result, Task) or result.status.state != TaskState.TASK_STATE_COMPLETED:
        state = TaskState.Name(result.status.state) if isinstance(result, Task) else type(result).__name__
        raise BenchError(f"{what} ended {state}: {str(result)[:300]}")


class _NullEmitter:
    async def progress(self, text: str) -> None:
        return None

    async def artifact(self, name: str, **kwargs: Any) -> None:
        return None


RunFn = Callable[[], Awaitable[None]]


def arm_runner(gateway: Gateway, shape: Shape, arm: str) -> RunFn:
    """One run of ``shape`` through ``arm`` (see the module docstring)."""
    concurrent = shape.pattern == "concurrent"
    if arm == WORKFLOW:
        handler = gateway.agents[shape.agent].handler

        answers = shape.width if concurrent else 1  # concatenate: "noop-001: ok\n\nnoop-002: ok..."

        async def run_workflow() -> None:
            task = await handler.on_message_send(request(), ServerCallContext())
            _completed(task, shape.agent)
            text = "\n".join(p.text for p in task.status.message.parts)  # type: ignore[union-attr]
            if text.count("ok") != answers:
                raise BenchError(f"{shape.agent} answered {text[:200]!r}, not {answers} x ok")

        return run_workflow
    if arm == DIRECT:
        handlers = [(name, gateway.agents[name].handler) for name in shape.participants]

        async def one(name: str, handler: Any) -> None:
            _completed(await handler.on_message_send(request(), ServerCallContext()), name)

        async def run_direct() -> None:
            if concurrent:
                await asyncio.gather(*(one(name, h) for name, h in handlers))
            else:
                for name, h in handlers:
                    await one(name, h)

        return run_direct
    emitter = _NullEmitter()

    async def call() -> None:
        reply = await noop(AgentCall(text="hi"), emitter)
        if not isinstance(reply, Reply) or reply.state != "completed":
            raise BenchError(f"the runtime answered {reply!r}")

    async def run_bare() -> None:
        if concurrent:
            await asyncio.gather(*(call() for _ in range(shape.width)))
        else:
            for _ in range(shape.width):
                await call()

    return run_bare


# --- measurement -------------------------------------------------------------------------------------


@dataclass
class Sample:
    """One arm of one shape in one round: a window of back-to-back runs."""

    arm: str
    round: int
    wall_ms: list[float]
    cpu_ms: list[float]

    @property
    def p50(self) -> float | None:
        return percentile(self.wall_ms, 0.5)


async def window(
    run: RunFn, seconds: float, min_runs: int, max_runs: int = MAX_RUNS_PER_WINDOW
) -> tuple[list[float], list[float]]:
    """Runs one after another for ``seconds`` (at least ``min_runs``): each run's wall and CPU ms."""
    wall: list[float] = []
    cpu: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(wall) < max_runs and (len(wall) < min_runs or time.perf_counter() < deadline):
        c0, t0 = time.process_time(), time.perf_counter()
        await run()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu


async def measure_shape(gateway: Gateway, shape: Shape, args: argparse.Namespace) -> dict[str, list[Sample]]:
    runners = {arm: arm_runner(gateway, shape, arm) for arm in ARMS}
    for runner in runners.values():  # warm-up: imports, caches, the first tasks of each agent
        await window(runner, args.warmup, 2)
    samples: dict[str, list[Sample]] = {arm: [] for arm in ARMS}
    for r in range(args.rounds):
        order = ARMS if r % 2 == 0 else ARMS[::-1]
        for arm in order:
            wall, cpu = await window(runners[arm], args.window, args.min_runs)
            sample = Sample(arm, r, wall, cpu)
            samples[arm].append(sample)
            print(
                f"  [{shape.key}] round {r + 1}/{args.rounds} {arm:<9} {len(wall):6d} runs  p50 {sample.p50:9.3f} ms",
                flush=True,
            )
    return samples


def summarize(samples: list[Sample], steps: int) -> dict[str, Any]:
    wall = [x for s in samples for x in s.wall_ms]
    cpu = [x for s in samples for x in s.cpu_ms]
    p50 = percentile(wall, 0.5)
    return {
        "runs": len(wall),
        "wall_ms": {f"p{int(q * 100)}": percentile(wall, q) for q in (0.5, 0.95, 0.99)},
        "wall_ms_mean": statistics.fmean(wall) if wall else None,
        "wall_p50_ms_by_round": [s.p50 for s in samples],
        "cpu_ms_per_run_p50": percentile(cpu, 0.5),
        "cpu_ms_per_run_mean": statistics.fmean(cpu) if cpu else None,
        "wall_p50_ms_per_step": p50 / steps if p50 is not None else None,
    }


def _per_step_delta(
    a: Sample | list[Sample], b: Sample | list[Sample], steps: int, *, cpu: bool = False
) -> float | None:
    """(p50(a) - p50(b)) / steps, of wall ms per run (or CPU ms per run), pooled over the samples given."""

    def p50(samples: Sample | list[Sample]) -> float | None:
        pooled = samples if isinstance(samples, list) else [samples]
        return percentile([x for s in pooled for x in (s.cpu_ms if cpu else s.wall_ms)], 0.5)

    pa, pb = p50(a), p50(b)
    return None if pa is None or pb is None else (pa - pb) / steps


def shape_ratios(shape: Shape, samples: dict[str, list[Sample]]) -> list[Ratio]:
    wf, direct, bare = samples[WORKFLOW], samples[DIRECT], samples[BARE]
    n = shape.steps
    ratios: list[Ratio] = []
    if shape.pattern == "concurrent" and shape.width == 100:
        pooled = percentile([x for s in wf for x in s.wall_ms], 0.5)
        ratios.append(
            Ratio(
                "fan-out 100: workflow run wall time p50",
                pooled,
                FANOUT_TARGET_MS,
                "<=",
                "ms",
                "p50 of one workflow run's wall time, pooled rounds",
                [s.p50 for s in wf],
            )
        )
    ratios.append(
        Ratio(
            f"{shape.label}: per-step overhead vs direct",
            _per_step_delta(wf, direct, n),
            STEP_OVERHEAD_TARGET_MS,
            "<=",
            "ms",
            f"(p50 workflow - p50 direct) / {n} steps, pooled rounds",
            [_per_step_delta(a, b, n) for a, b in zip(wf, direct, strict=True)],
        )
    )
    ratios.append(
        Ratio(
            f"{shape.label}: per-step CPU overhead vs direct",
            _per_step_delta(wf, direct, n, cpu=True),
            None,
            "<=",
            "ms",
            f"(p50 CPU/run workflow - p50 CPU/run direct) / {n} steps: this process only, steadier on a busy host",
            [_per_step_delta(a, b, n, cpu=True) for a, b in zip(wf, direct, strict=True)],
        )
    )
    ratios.append(
        Ratio(
            f"{shape.label}: per-step overhead vs bare",
            _per_step_delta(wf, bare, n),
            None,
            "<=",
            "ms",
            f"(p50 workflow - p50 bare) / {n} steps, pooled rounds",
            [_per_step_delta(a, b, n) for a, b in zip(wf, bare, strict=True)],
        )
    )
    ratios.append(
        Ratio(
            f"{shape.label}: A2A cost per direct call",
            _per_step_delta(direct, bare, n),
            None,
            "<=",
            "ms",
            f"(p50 direct - p50 bare) / {n} calls: what a participant's handler costs alone",
            [_per_step_delta(a, b, n) for a, b in zip(direct, bare, strict=True)],
        )
    )
    by_round = [a.p50 / b.p50 if a.p50 and b.p50 else None for a, b in zip(wf, direct, strict=True)]
    ratios.append(
        Ratio(
            f"{shape.label}: workflow / direct wall p50",
            _median(by_round),
            None,
            "<=",
            "x",
            "median of the per-round ratios",
            by_round,
        )
    )
    return ratios


# --- profile ---------------------------------------------------------------------------------------
# Where a workflow run's time goes. ``py-spy`` (the default) samples this very process from outside
# (``--gil --nonblocking``: only the thread holding the GIL, without pausing it), so the run is not
# slowed down; each function's share of the samples times the CPU per run measured over the same
# window gives ms per run. ``cprofile`` instruments every call: exact call counts, but it inflates
# call-heavy code (recursive dataclasses.asdict, telemetry wrappers) far more than the rest.

_STDLIB = sysconfig.get_paths()["stdlib"].replace(os.sep, "/") + "/"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*):(?P<line>\d+)\)$")
FrameKey = tuple[str, str]  # (function, where)
_ROOTS = frozenset({"gateway/__main__.py", "gateway/cli.py", "gateway/serve.py"})  # every sample's callers


def _ours(where: str) -> bool:
    return where.startswith(("gateway/", "adapters/")) and where not in _ROOTS


def _where(filename: str) -> str:
    """A file as a short, machine-independent name: ``gateway/orchestration/engine.py``, ``a2a/...``."""
    path = filename.replace(os.sep, "/")
    for marker in ("/site-packages/", "/dist-packages/"):
        if marker in path:
            return path.split(marker, 1)[1]
    repo = str(REPO).replace(os.sep, "/") + "/"
    for prefix in (repo, _STDLIB):
        if path.startswith(prefix):
            return path[len(prefix) :]
    return "(builtin)" if path in ("~", "") or path.startswith("<") else path.rsplit("/", 1)[-1]


def _bucket(where: str) -> str:
    """The package a file belongs to: ``gateway/orchestration``, ``a2a``, ``asyncio``, ``dataclasses``."""
    if where.startswith(("gateway/", "adapters/", "tests/")):
        return "/".join(where.split("/")[:2]).removesuffix(".py")
    return where.split("/", 1)[0].removesuffix(".py")


@dataclass
class Profile:
    """Self and inclusive weight per function (seconds, or samples), and what one run weighs."""

    backend: str
    runs: int
    wall_ms_per_run: float
    cpu_ms_per_run: float
    self_weight: dict[FrameKey, float]
    total_weight: dict[FrameKey, float]
    calls: dict[FrameKey, int]
    note: str
    unit: str = "workflow runs"

    def report(self, top: int) -> dict[str, Any]:
        total = sum(self.self_weight.values()) or 1.0
        scale = self.cpu_ms_per_run / total  # weight -> ms per run

        def row(key: FrameKey) -> dict[str, Any]:
            func, where = key
            out = {
                "function": f"{func} ({where})" if where != "(builtin)" else func,
                "self_ms_per_run": round(self.self_weight.get(key, 0.0) * scale, 3),
                "total_ms_per_run": round(self.total_weight.get(key, 0.0) * scale, 3),
                "self_share": round(self.self_weight.get(key, 0.0) / total, 4),
            }
            if key in self.calls:
                out["calls_per_run"] = round(self.calls[key] / self.runs, 1)
            return out

        packages: dict[str, float] = {}
        for (_, where), weight in self.self_weight.items():
            bucket = _bucket(where)
            packages[bucket] = packages.get(bucket, 0.0) + weight
        by_self = sorted(self.self_weight, key=lambda k: self.self_weight[k], reverse=True)[:top]
        # The gateway's own functions, less the roots every sample passes through (cli, serve).
        ours = [k for k, w in self.total_weight.items() if _ours(k[1]) and w < 0.9 * total]
        by_total = sorted(ours, key=lambda k: self.total_weight[k], reverse=True)[:top]
        return {
            "backend": self.backend,
            "note": self.note,
            "unit": self.unit,
            "runs": self.runs,
            "wall_ms_per_run": round(self.wall_ms_per_run, 2),
            "cpu_ms_per_run": round(self.cpu_ms_per_run, 2),
            "by_package_ms_per_run": {
                k: round(v * scale, 2) for k, v in sorted(packages.items(), key=lambda kv: kv[1], reverse=True)
            },
            "top_self": [row(k) for k in by_self],
            "gateway_inclusive": [row(k) for k in by_total],
        }


async def _runs_until(run: RunFn, done: Callable[[int], bool]) -> tuple[int, float, float]:
    """Workflow runs until ``done(runs)``: how many, and their wall and CPU ms per run."""
    runs, t0, c0 = 0, time.perf_counter(), time.process_time()
    while not done(runs):
        await run()
        runs += 1
    runs = max(runs, 1)
    return runs, (time.perf_counter() - t0) * 1000 / runs, (time.process_time() - c0) * 1000 / runs


async def profile_cprofile(run: RunFn, runs: int) -> Profile:
    profiler = cProfile.Profile()
    profiler.enable()
    count, wall, cpu = await _runs_until(run, lambda n: n >= runs)
    profiler.disable()
    raw = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    self_w: dict[FrameKey, float] = {}
    total_w: dict[FrameKey, float] = {}
    calls: dict[FrameKey, int] = {}
    for (filename, _, func), (_, ncalls, tottime, cumtime, _) in raw.items():
        key = (func, _where(filename))
        self_w[key] = self_w.get(key, 0.0) + tottime
        total_w[key] = total_w.get(key, 0.0) + cumtime
        calls[key] = calls.get(key, 0) + ncalls
    # ms per run here are cProfile's own, inflated: read the shares.
    cpu = sum(self_w.values()) * 1000 / count
    note = "cProfile: exact calls (a coroutine counts once per resumption); inflated times, read the shares"
    return Profile("cprofile", count, wall, cpu, self_w, total_w, calls, note)


def _py_spy() -> str | None:
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def py_spy_argv(pid: int, seconds: float, rate: int, out: Path) -> list[str]:
    """``py-spy record`` of process ``pid`` into ``out`` (raw, collapsed stacks); ``BenchError`` without py-spy."""
    exe = _py_spy()
    if exe is None:
        raise BenchError("py-spy is not installed (pip install py-spy)")
    argv = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out), "--full-filenames"]
    return [*argv, "--duration", str(max(1, round(seconds))), "--rate", str(rate), "--gil", "--nonblocking"]


def read_py_spy(out: Path) -> tuple[dict[FrameKey, float], dict[FrameKey, float]]:
    """Self and inclusive samples per function from a raw py-spy record."""
    self_w: dict[FrameKey, float] = {}
    total_w: dict[FrameKey, float] = {}
    for line in out.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        keys: list[FrameKey] = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            keys.append((match["func"], _where(match["file"])) if match else (frame, "(builtin)"))
        weight = float(count_text)
        self_w[keys[-1]] = self_w.get(keys[-1], 0.0) + weight
        for key in set(keys):
            total_w[key] = total_w.get(key, 0.0) + weight
    return self_w, total_w


def py_spy_note(rate: int) -> str:
    return (
        f"py-spy at {rate} Hz, GIL holder only; shares of the samples x CPU per run measured over the same "
        "window (C code, e.g. sqlite3, counts as self time of its Python caller; a coroutine's inclusive "
        "time covers only what runs in its own task)"
    )


async def py_spy_during(
    pid: int, seconds: float, rate: int, out: Path, load: Callable[[Callable[[], bool]], Awaitable[T]]
) -> tuple[T, dict[FrameKey, float], dict[FrameKey, float]]:
    """``load`` while py-spy samples process ``pid``: its result, and self and inclusive samples per function.

    ``load`` gets a predicate that turns true once py-spy has stopped sampling, for loads that run
    until then; a fixed-length load should outlast ``seconds`` (py-spy takes a moment to attach).
    """
    argv = py_spy_argv(pid, seconds, rate, out)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        result = await load(lambda: proc.returncode is not None)
        output = (await asyncio.wait_for(proc.communicate(), 30))[0].decode(errors="replace")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    try:
        if proc.returncode == 0:
            return (result, *read_py_spy(out))
    except FileNotFoundError:
        pass
    raise BenchError(f"py-spy failed ({proc.returncode}): {output[-500:]}")


async def profile_py_spy(run: RunFn, seconds: float, rate: int, work: Path) -> Profile:
    out = work / f"py-spy-{uuid.uuid4().hex}.txt"
    (count, wall, cpu), self_w, total_w = await py_spy_during(
        os.getpid(), seconds, rate, out, lambda sampled: _runs_until(run, lambda n: sampled())
    )
    return Profile("py-spy", count, wall, cpu, self_w, total_w, {}, py_spy_note(rate))


async def profile_shape(gateway: Gateway, shape: Shape, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    run = arm_runner(gateway, shape, WORKFLOW)
    await run()
    if args.profile == "cprofile":
        runs = max(3, min(args.profile_runs, args.profile_runs * 10 // shape.steps))
        profile = await profile_cprofile(run, runs)
    else:
        profile = await profile_py_spy(run, args.profile_seconds, args.profile_rate, work)
    return profile.report(args.profile_top)


def print_profile(key: str, prof: dict[str, Any]) -> None:
    print(
        f"\n== profile {key}: {prof['backend']}, {prof['runs']} {prof.get('unit', 'workflow runs')}, "
        f"{prof['wall_ms_per_run']} ms wall / {prof['cpu_ms_per_run']} ms CPU each"
    )
    print(f"({prof['note']})")
    packages = ", ".join(f"{k} {v:.1f}" for k, v in list(prof["by_package_ms_per_run"].items())[:14])
    print(f"self time by package, ms each: {packages}")
    head = f"{'self ms/run':>12}{'incl ms/run':>12}{'self %':>8}"
    with_calls = any("calls_per_run" in r for r in prof["top_self"])
    print(head + (f"{'calls/run':>11}" if with_calls else "") + "  function (top self time)")

    def line(r: dict[str, Any]) -> str:
        calls = f"{r.get('calls_per_run', ''):>11}" if with_calls else ""
        share = f"{r['self_share'] * 100:.1f}"
        return f"{r['self_ms_per_run']:>12.3f}{r['total_ms_per_run']:>12.3f}{share:>8}{calls}  {r['function']}"

    for r in prof["top_self"]:
        print(line(r))
    print("gateway functions by inclusive time:")
    for r in prof["gateway_inclusive"]:
        print(line(r))


# --- the run -------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    shapes = [SHAPES[k] for k in args.shapes]
    settings = Settings(
        data_dir=work / "data",
        agents=write_agents(work / "agents", shapes),
        grpc_port=0,  # the lifespan starts a gRPC server; never the default port a developer's gateway holds
        sign_cards=False,
        mcp_tools=[],
    )
    app = create_app(settings)
    gateway: Gateway = app.state.gateway
    phases: dict[str, Any] = {}
    ratios: list[Ratio] = []
    profiles: dict[str, Any] = {}
    async with app.router.lifespan_context(app):
        for shape in shapes:
            print(f"{shape.key}: {shape.label}, {shape.steps} step(s)", flush=True)
            samples = await measure_shape(gateway, shape, args)
            phases[shape.key] = {
                "workflow": shape.agent,
                "pattern": shape.pattern,
                "steps": shape.steps,
                "arms": {arm: summarize(samples[arm], shape.steps) for arm in ARMS},
            }
            ratios += shape_ratios(shape, samples)
        if args.profile:
            for shape in shapes:
                print(f"profiling {shape.key} workflow runs with {args.profile}", flush=True)
                profiles[shape.key] = await profile_shape(gateway, shape, args, work)
    return {"phases": phases, "ratios": ratios, "profiles": profiles}


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def print_tables(report: dict[str, Any]) -> None:
    print()
    for key, phase in report["phases"].items():
        print(f"== {key}: {phase['pattern']} over {phase['steps']} no-op participant(s)")
        print(f"{'arm':<10}{'runs':>8}{'p50 ms':>10}{'p95 ms':>10}{'p99 ms':>10}{'cpu ms/run':>12}{'p50/step':>10}")
        for arm, s in phase["arms"].items():
            w = s["wall_ms"]
            print(
                f"{arm:<10}{s['runs']:>8}{_fmt(w['p50']):>10}{_fmt(w['p95']):>10}{_fmt(w['p99']):>10}"
                f"{_fmt(s['cpu_ms_per_run_p50']):>12}{_fmt(s['wall_p50_ms_per_step']):>10}"
            )
        print()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Orchestration overhead with no-op participants, in one process.")
    p.add_argument("--quick", action="store_true", help="smoke mode: 2 short rounds, under a minute")
    p.add_argument("--rounds", type=int, help="rounds per shape (default 5, quick 2)")
    p.add_argument("--window", type=float, help="seconds of runs per arm per round (default 2, quick 0.4)")
    p.add_argument("--min-runs", type=int, help="runs per arm per round at least (default 5, quick 3)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up runs per arm (default 1, quick 0.2)")
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated subset of {','.join(SHAPES)}")
    p.add_argument(
        "--profile",
        nargs="?",
        const="py-spy",
        choices=("py-spy", "cprofile"),
        help="after measuring, profile workflow runs of each shape (default profiler: py-spy)",
    )
    p.add_argument("--profile-seconds", type=float, default=8.0, help="py-spy: seconds sampled per shape")
    p.add_argument("--profile-rate", type=int, default=500, help="py-spy: samples per second")
    p.add_argument("--profile-runs", type=int, default=20, help="cprofile: runs of a 10-step shape (scaled by size)")
    p.add_argument("--profile-top", type=int, default=20, help="functions listed per profile")
    p.add_argument("--out", type=Path, default=Path("bench-results/orchestration.json"), help="JSON results path")
    p.add_argument("--keep", action="store_true", help="keep the temporary data dir and agents folder")
    p.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = p.parse_args(argv)
    quick = args.quick
    args.rounds = args.rounds or (2 if quick else 5)
    args.window = args.window or (0.4 if quick else 2.0)
    args.min_runs = args.min_runs or (3 if quick else 5)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if quick else 1.0)
    args.shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    unknown = set(args.shapes) - set(SHAPES)
    if unknown or not args.shapes:
        p.error(f"unknown shape(s): {', '.join(sorted(unknown)) or '(none given)'}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    began = time.perf_counter()
    load_at_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-orch-"))
    try:
        body = asyncio.run(run(args, work))
        ratios = ratio_rows(body["ratios"])
        report = {
            "benchmark": "orchestration",
            "mode": "quick" if args.quick else "default",
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "duration_s": None,
            "machine": machine_info(load_at_start),
            "versions": _versions(),
            "config": {
                "rounds": args.rounds,
                "window_s": args.window,
                "min_runs": args.min_runs,
                "warmup_s": args.warmup,
                "shapes": args.shapes,
                "store": "sqlite (default settings)",
            },
            "phases": body["phases"],
            "ratios": ratios,
            "profiles": body["profiles"],
        }
        report["duration_s"] = round(time.perf_counter() - began, 1)
        print_tables(report)
        print_report({"phases": {}, "ratios": ratios, "skipped": {}})
        for key, prof in body["profiles"].items():
            print_profile(key, prof)
        write_report(report, args.out)
        return exit_status(ratios, {}, args.strict)
    finally:
        remove_work(work, args.keep)


if __name__ == "__main__":
    sys.exit(main())
