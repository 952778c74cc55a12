"""What operating costs: SendMessage throughput with the defaults (metrics, access log, audit) against all off,
and with traces exported against not.

Arms, each ``python -m gateway serve`` on SQLite serving the echo agent, measured in alternating
order round after round (A B C, C B A, ...) so a noisy neighbour hits them alike:

* ``all-off``   ``SWITCHBOARD_METRICS=false SWITCHBOARD_ACCESS_LOG=false SWITCHBOARD_AUDIT=false``,
                no tracing: the request middleware is not installed at all;
* ``defaults``  nothing set: metrics, one access-log line per request (JSON, to the log file) and
                an audit row per call;
* ``traced``    the defaults plus ``OTEL_TRACES_EXPORTER=otlp`` to a receiver in a process of its
                own (it answers every export with an empty ExportTraceServiceResponse).

Targets: defaults >= 0.9x all-off; traced is reported against defaults. Usage (brief; the machine
is shared)::

    python tests/benchmarks/bench_telemetry.py --rounds 3 --window 3 --concurrency 8
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_a2a import (  # the benchmark folder, as bench_a2a.py is run
    CARD_PATH,
    HOST,
    Probe,
    Server,
    _clean_env,
    call_send,
    free_port,
    http_session,
    measure,
    stop_all,
)

RECEIVER = """
import sys, uvicorn
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
ANSWER = ExportTraceServiceResponse().SerializeToString()
async def export(request):
    await request.body()
    return Response(ANSWER, media_type="application/x-protobuf")
app = Starlette(routes=[Route("/v1/traces", export, methods=["POST"])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""
OFF = {"SWITCHBOARD_METRICS": "false", "SWITCHBOARD_ACCESS_LOG": "false", "SWITCHBOARD_AUDIT": "false"}


def gateway(work: Path, name: str, **env: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(work / name)]
    return Server(
        name=name,
        argv=argv,
        env=_clean_env(SWITCHBOARD_GRPC_PORT="0", **env),
        port=port,
        rpc_path="/agents/echo",
        card_path=f"/agents/echo{CARD_PATH}",
        log_path=work / f"{name}.log",
    )


async def run(args: argparse.Namespace, servers: list[Server]) -> dict[str, list[float]]:
    probe = Probe(http_session, lambda client, server: call_send(client, server))  # type: ignore[arg-type,return-value]
    rps: dict[str, list[float]] = {s.name: [] for s in servers}
    cpu: dict[str, list[float]] = {s.name: [] for s in servers}
    for round_no in range(args.rounds):
        order = servers if round_no % 2 == 0 else list(reversed(servers))
        for server in order:
            window = await measure(server, probe, args.concurrency, args.window, round_no)
            if window.errors:
                raise RuntimeError(f"{server.name}: {window.errors} errors, first: {window.first_error}")
            rps[server.name].append(window.rps)
            if window.server_cpu_s is not None and window.ok:
                cpu[server.name].append(window.server_cpu_s / window.ok * 1000)
            print(f"round {round_no + 1} {server.name:<9} {window.rps:8.1f} req/s", flush=True)
    return {**{f"{k} rps": v for k, v in rps.items()}, **{f"{k} cpu_ms": v for k, v in cpu.items()}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=float, default=3.0, help="seconds of load per arm per round")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--split", action="store_true", help="also one arm per part: metrics, access log, audit")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-telemetry-"))
    receiver_port = free_port()
    receiver = Server("receiver", [sys.executable, "-c", RECEIVER, str(receiver_port)], _clean_env(), receiver_port,
                      "/", "/", work / "receiver.log")  # fmt: skip
    traced_env = {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://{HOST}:{receiver_port}/v1/traces",
    }
    servers = [gateway(work, "all-off", **OFF), gateway(work, "defaults"), gateway(work, "traced", **traced_env)]
    if args.split:
        for part in ("METRICS", "ACCESS_LOG", "AUDIT"):
            only = {**OFF, f"SWITCHBOARD_{part}": "true"}
            servers.append(gateway(work, f"{part.lower()}-only", **only))
    try:
        receiver.start(Path.cwd())
        for server in servers:
            server.start(Path.cwd())
        deadline = time.monotonic() + 60
        for server in servers:
            server.wait_ready(deadline)
        figures = asyncio.run(run(args, servers))
    finally:
        stop_all()
    median = {name: statistics.median(values) for name, values in figures.items() if values}
    print("\nmedian over rounds:")
    for name, value in median.items():
        print(f"  {name:<16} {value:9.2f}")
    defaults, off, traced = median["defaults rps"], median["all-off rps"], median["traced rps"]
    verdict = "PASS" if defaults >= 0.9 * off else "MISS"
    print(f"defaults / all-off = {defaults / off:.3f} (target >= 0.90: {verdict})")
    print(f"traced / defaults  = {traced / defaults:.3f}   traced / all-off = {traced / off:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
