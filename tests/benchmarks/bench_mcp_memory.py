"""Memory per idle MCP session and per held stream, measured on a real gateway process.

For each arm a fresh gateway (``python -m gateway serve``: SQLite, auth off, ``SWITCHBOARD_MCP_TOOLS=echo``,
``SWITCHBOARD_GRPC_PORT=0``, the per-caller caps raised to let this one loopback caller hold them all)
is started, warmed up by opening and closing a few items of the arm, and then this process opens N
items with httpx and holds them. The figure is the growth of the gateway's resident memory (VmRSS,
from /proc) from just before the N are opened to once they are open, divided by N. Arms:

* ``idle-session``  a 2025-11-25 session (``initialize`` + ``notifications/initialized``), then idle;
* ``get-stream``    the same session plus its standalone ``GET /mcp`` SSE stream, held open (the stream
                    alone is this minus ``idle-session``, printed as ``get-stream only``);
* ``listen-stream`` a 2026-07-28 ``subscriptions/listen`` stream (one POST held open; no session);
* ``a2a-stream``    an A2A JSON-RPC ``SendStreamingMessage`` to ``echo`` with ``wait: 600``: the SSE
                    stream and the working task behind it, for comparison with the MCP streams;
* ``subscription``  one 2025-11-25 session starts N runs (``start_run`` of ``echo``, ``wait: 600``; not
                    counted), then ``resources/subscribe`` to each ``run://``: the subscriptions alone.

Then everything the arm holds is closed (sessions deleted, streams dropped) and the RSS read again:
CPython keeps freed memory in its allocator, so that figure says what the process kept, not a leak.
N is bounded (at most 1000: the SDK serves at most 1024 listen streams). Usage::

    python tests/benchmarks/bench_mcp_memory.py                      # N = 500, every arm
    python tests/benchmarks/bench_mcp_memory.py --n 200 --arms idle-session,get-stream
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO) not in sys.path:  # bench_a2a's helpers are imported as tests.benchmarks.*
    sys.path.insert(0, str(REPO))

from tests.benchmarks.bench_a2a import (  # noqa: E402
    CARD_PATH,
    SSE_HEADERS,
    STARTUP_TIMEOUT_S,
    BenchError,
    Server,
    _clean_env,
    free_port,
    machine_info,
    remove_work,
    stop_all,
    write_report,
)

MCP_PATH = "/mcp"
LEGACY, MODERN = "2025-11-25", "2026-07-28"
MAX_N = 1000
SETTLE_S = 1.0  # a pause before each RSS reading, so that the last requests' garbage is gone
ARMS = ("idle-session", "get-stream", "listen-stream", "a2a-stream", "subscription")
POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "bench-mcp-memory", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}

Opener = Callable[[httpx.AsyncClient, Server, contextlib.AsyncExitStack], Awaitable[None]]


# --- what each arm opens (and registers the closing of on the stack) ------------------------------


async def open_session(http: httpx.AsyncClient, server: Server, held: contextlib.AsyncExitStack) -> dict[str, str]:
    """A 2025-11-25 session, deleted when ``held`` closes; returns the headers that address it."""
    params = {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
    r = await http.post(server.rpc_url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
    if r.status_code != 200:
        raise BenchError(f"initialize: HTTP {r.status_code}: {r.text[:200]}")
    headers = {**POST_HEADERS, "Mcp-Session-Id": r.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    r = await http.post(server.rpc_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    if r.status_code != 202:
        raise BenchError(f"notifications/initialized: HTTP {r.status_code}: {r.text[:200]}")

    async def delete() -> None:
        with contextlib.suppress(httpx.HTTPError):
            await http.delete(server.rpc_url, headers=headers)

    held.push_async_callback(delete)
    return headers


async def open_idle_session(http: httpx.AsyncClient, server: Server, held: contextlib.AsyncExitStack) -> None:
    await open_session(http, server, held)


async def _hold_stream(held: contextlib.AsyncExitStack, request: Any, first_event: bool) -> None:
    """Enter a streamed response on ``held`` (closing it drops the stream); optionally wait for its first event."""
    response: httpx.Response = await held.enter_async_context(request)
    if response.status_code != 200:
        await response.aread()
        raise BenchError(f"stream: HTTP {response.status_code}: {response.text[:200]}")
    if first_event:
        # Not ``async for ... break``: an abandoned iterator is closed by the event loop, and the stream with it.
        chunks = response.aiter_bytes()
        held.push_async_callback(chunks.aclose)
        seen = b""
        while b"data:" not in seen:
            try:
                seen += await anext(chunks)
            except StopAsyncIteration:
                raise BenchError("the stream ended before its first event") from None


async def open_get_stream(http: httpx.AsyncClient, server: Server, held: contextlib.AsyncExitStack) -> None:
    headers = await open_session(http, server, held)
    get_headers = {**headers, "Accept": "text/event-stream"}
    get_headers.pop("Content-Type")
    await _hold_stream(held, http.stream("GET", server.rpc_url, headers=get_headers), first_event=False)


async def open_listen_stream(http: httpx.AsyncClient, server: Server, held: contextlib.AsyncExitStack) -> None:
    params = {"notifications": {"toolsListChanged": True}, "_meta": MODERN_META}
    body = {"jsonrpc": "2.0", "id": 1, "method": "subscriptions/listen", "params": params}
    headers = {**POST_HEADERS, "MCP-Protocol-Version": MODERN, "Mcp-Method": "subscriptions/listen"}
    await _hold_stream(held, http.stream("POST", server.rpc_url, json=body, headers=headers), first_event=True)


async def open_a2a_stream(http: httpx.AsyncClient, server: Server, held: contextlib.AsyncExitStack) -> None:
    message = {"role": "ROLE_USER", "parts": [{"text": "wait: 600"}], "messageId": str(uuid.uuid4())}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": message}}
    url = server.base + "/agents/echo"
    await _hold_stream(held, http.stream("POST", url, json=body, headers=SSE_HEADERS), first_event=True)


OPENERS: dict[str, Opener] = {
    "idle-session": open_idle_session,
    "get-stream": open_get_stream,
    "listen-stream": open_listen_stream,
    "a2a-stream": open_a2a_stream,
}


# --- one arm on a fresh gateway ---------------------------------------------------------------------------


def make_gateway(work: Path, arm: str, n: int) -> Server:
    port = free_port()
    room = str(n + 100)
    env = _clean_env(
        SWITCHBOARD_GRPC_PORT="0",
        SWITCHBOARD_MCP_TOOLS="echo",
        SWITCHBOARD_MCP_MAX_SESSIONS_PER_CALLER=room,
        SWITCHBOARD_MCP_MAX_SUBSCRIPTIONS_PER_CALLER=room,
        SWITCHBOARD_LOG_LEVEL="warning",
    )
    return Server(
        name=arm,
        argv=[sys.executable, "-m", "gateway", "serve", "--port", str(port), "--data-dir", str(work / arm)],
        env=env,
        port=port,
        rpc_path=MCP_PATH,
        card_path=f"/agents/echo{CARD_PATH}",
        log_path=work / f"{arm}.log",
    )


async def _rss_settled(server: Server) -> float:
    await asyncio.sleep(SETTLE_S)
    rss = server.rss_mb()
    if rss is None:
        raise BenchError(f"no RSS for {server.name} (not Linux, or the process is gone)")
    return rss


async def measure_arm(server: Server, arm: str, n: int, warmup: int) -> dict[str, Any]:
    opener = OPENERS[arm]
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=32)
    async with httpx.AsyncClient(
        headers=POST_HEADERS, limits=limits, timeout=httpx.Timeout(30.0), trust_env=False
    ) as http:
        async with contextlib.AsyncExitStack() as warm:
            for _ in range(warmup):
                await opener(http, server, warm)
        started = await _rss_settled(server)
        began = time.perf_counter()
        async with contextlib.AsyncExitStack() as held:
            for _ in range(n):
                await opener(http, server, held)
            opened_s = time.perf_counter() - began
            holding = await _rss_settled(server)
        closed = await _rss_settled(server)
    return _row(arm, n, started, holding, closed, opened_s)


async def _rpc(http: httpx.AsyncClient, server: Server, headers: dict[str, str], method: str, **params: Any) -> Any:
    r = await http.post(
        server.rpc_url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, headers=headers
    )
    if r.status_code != 200 or not r.headers.get("content-type", "").startswith("application/json"):
        raise BenchError(f"{method}: HTTP {r.status_code} {r.headers.get('content-type')}: {r.text[:200]}")
    answer = r.json()
    if "error" in answer:
        raise BenchError(f"{method}: {answer['error']}")
    return answer["result"]


async def measure_subscriptions(server: Server, n: int, warmup: int) -> dict[str, Any]:
    """N runs started in one session (not counted), then one subscription to each."""
    async with httpx.AsyncClient(headers=POST_HEADERS, timeout=httpx.Timeout(30.0), trust_env=False) as http:
        async with contextlib.AsyncExitStack() as session:
            headers = await open_session(http, server, session)
            uris = []
            for _ in range(n + warmup):
                started = await _rpc(http, server, headers, "tools/call", name="start_run", arguments=ARGUMENTS)
                uris.append(started["structuredContent"]["resource"])
            for uri in uris[:warmup]:
                await _rpc(http, server, headers, "resources/subscribe", uri=uri)
                await _rpc(http, server, headers, "resources/unsubscribe", uri=uri)
            started_rss = await _rss_settled(server)
            began = time.perf_counter()
            for uri in uris[warmup:]:
                await _rpc(http, server, headers, "resources/subscribe", uri=uri)
            opened_s = time.perf_counter() - began
            holding = await _rss_settled(server)
        closed = await _rss_settled(server)  # the session is deleted: its subscriptions are dropped
    return _row("subscription", n, started_rss, holding, closed, opened_s)


ARGUMENTS = {"agent": "echo", "text": "wait: 600"}


def _row(arm: str, n: int, started: float, holding: float, closed: float, opened_s: float) -> dict[str, Any]:
    return {
        "arm": arm,
        "n": n,
        "rss_mb_before": round(started, 1),
        "rss_mb_holding": round(holding, 1),
        "rss_mb_after_close": round(closed, 1),
        "kb_per_item": round((holding - started) * 1024 / n, 1),
        "open_s": round(opened_s, 2),
    }


def run_arm(work: Path, arm: str, n: int, warmup: int) -> dict[str, Any]:
    server = make_gateway(work, arm, n)
    server.start(REPO)
    try:
        server.wait_ready(time.monotonic() + STARTUP_TIMEOUT_S)
        if arm == "subscription":
            return asyncio.run(measure_subscriptions(server, n, warmup))
        return asyncio.run(measure_arm(server, arm, n, warmup))
    finally:
        server.stop()


# --- report ---------------------------------------------------------------------------------------------


def print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'arm':<18}{'N':>6}{'RSS before':>12}{'holding':>10}{'closed':>9}{'KB / item':>11}{'open s':>8}")
    for r in rows:
        print(
            f"{r['arm']:<18}{r['n']:>6}{r['rss_mb_before']:>10.1f}MB{r['rss_mb_holding']:>8.1f}MB"
            f"{r['rss_mb_after_close']:>7.1f}MB{r['kb_per_item']:>11.1f}{r['open_s']:>8.2f}"
        )
    by_arm = {r["arm"]: r for r in rows}
    if "idle-session" in by_arm and "get-stream" in by_arm:
        only = by_arm["get-stream"]["kb_per_item"] - by_arm["idle-session"]["kb_per_item"]
        print(f"{'get-stream only':<18}{'':>6}{'':>12}{'':>10}{'':>9}{only:>11.1f}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=500, help=f"items held per arm (1..{MAX_N}; default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="items opened and closed before measuring")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated subset of {', '.join(ARMS)}")
    parser.add_argument("--out", type=Path, default=Path("bench-results/mcp_memory.json"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch dir (gateway logs)")
    args = parser.parse_args(argv)
    args.arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in args.arms if a not in ARMS]
    if unknown or not 1 <= args.n <= MAX_N:
        parser.error(f"unknown arms {unknown}" if unknown else f"--n must be 1..{MAX_N}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    rows: list[dict[str, Any]] = []
    try:
        for arm in args.arms:
            print(f"{arm}: opening {args.n} ...", flush=True)
            rows.append(run_arm(work, arm, args.n, args.warmup))
    finally:
        stop_all()
        remove_work(work, args.keep)
    print()
    print_table(rows)
    report = {
        "benchmark": "mcp_memory",
        "rows": rows,
        "machine": machine_info(None),
        "duration_s": round(time.perf_counter() - began, 1),
    }
    write_report(report, args.out)
    print(json.dumps({r["arm"]: r["kb_per_item"] for r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
