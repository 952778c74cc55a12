"""Failover between gateway replicas on one PostgreSQL, under kill -9, SIGSTOP/SIGCONT and SIGTERM (issue #16).

Each replica is a real ``python -m gateway serve`` process; clients are the SDK's own. The workflow
``pipeline`` runs three probe agents in sequence (``tests.store.cluster_agents._probe``), which
stamp every moment their code runs into one file shared by all processes: two executions of the
same step overlapping in time would show as interleaved stamps (``overlaps``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from a2a.client import Client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskState,
)

from gateway.errors import StoreUnavailableError, register_with_sdk
from gateway.hosting.cluster import EVENT
from gateway.hosting.failover import DEAD_REASON, ORPHAN_REASON, SCAN_S, UNHOSTED_GRACE_S, unhosted_reason
from gateway.store.leases import BEAT_S, TTL_S
from gateway.store.postgres import RUNNER_LOCKS, runner_key
from tests.bindings.a2a_clients import BINDINGS, a2a_client, user_message
from tests.federation.support import V1, BackgroundLoop, Org, TcpProxy, free_port, org, python_agent, rpc, workflow
from tests.store.test_task_store import _run_sql

pytestmark = pytest.mark.skipif(not os.environ.get("SWITCHBOARD_TEST_PG_DSN"), reason="needs PostgreSQL")

WAIT_S = 90.0
SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
GRPC = next(b for b in BINDINGS if b.id == "grpc-stream")
FAILOVER_BOUND_S = TTL_S + 1.25 * SCAN_S + 4.0  # the lease, one scan, and the resume on a loaded 2-core machine
UNHOSTED_BOUND_S = TTL_S + UNHOSTED_GRACE_S + 2 * 1.25 * SCAN_S + 4.0  # the lease, a scan, the grace, a scan
ENDED = (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED)
STEPS = ("a", "b", "c")


@pytest.fixture
def cluster_dsn() -> Iterator[str]:
    """A schema of this test's own in the test database (dropped afterwards)."""
    dsn = os.environ["SWITCHBOARD_TEST_PG_DSN"]
    schema = f"sb_failover_{uuid.uuid4().hex[:12]}"
    _run_sql(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
    finally:
        _run_sql(dsn, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def start_replicas(cluster_dsn: str, tmp_path: Path) -> Iterator[Callable[..., list[Org]]]:
    """Start ``n`` replicas sharing the database and one probe log (stopped afterwards, however they ended)."""
    started: list[Org] = []

    def start(n: int, dsn: str = cluster_dsn, pipeline_on: Collection[int] | None = None) -> list[Org]:
        """``pipeline_on``: the replicas (numbered from 1) whose agent files include the workflow (default: all)."""
        probe_log = tmp_path / "probe.log"
        orgs = [
            org(f"r{i}", tmp_path, SWITCHBOARD_DATABASE_URL=dsn, SWITCHBOARD_PROBE_LOG=str(probe_log))
            for i in range(1, n + 1)
        ]
        for number, replica in enumerate(orgs, 1):
            agents = replica.folder / "agents"
            for step in STEPS:
                python_agent(agents, f"probe-{step}", f"tests.store.cluster_agents:probe_{step}")
            python_agent(agents, "ticker", "tests.store.cluster_agents:ticker")
            python_agent(agents, "stepper", "tests.store.cluster_agents:StepperExecutor")
            python_agent(agents, "echo", "gateway.agents.echo:EchoExecutor")
            if pipeline_on is None or number in pipeline_on:
                workflow(agents, "pipeline", "sequential", [f"probe-{step}" for step in STEPS])
        started.extend(orgs)
        for replica in orgs:
            replica.start()
        for replica in orgs:
            replica.wait_ready()
        return orgs

    try:
        yield start
    finally:
        for replica in started:
            if replica.proc is not None and replica.proc.poll() is None:
                replica.proc.send_signal(signal.SIGCONT)  # a paused one must be able to stop
            replica.stop()


class Stream:
    """A stream read in the background, to its end or its connection's loss."""

    def __init__(self, events: AsyncIterator[StreamResponse]) -> None:
        self.events: list[StreamResponse] = []
        self.error: BaseException | None = None
        self._more = asyncio.Event()
        self.reading = asyncio.ensure_future(self._read(events))

    async def _read(self, events: AsyncIterator[StreamResponse]) -> None:
        try:
            async for event in events:
                self.events.append(event)
                self._more.set()
        except Exception as exc:  # the replica serving it was killed
            self.error = exc

    async def until(self, count: int) -> None:
        """Wait (bounded) for ``count`` events."""
        async with asyncio.timeout(WAIT_S):
            while len(self.events) < count:
                self._more.clear()
                await self._more.wait()

    @property
    def task_id(self) -> str:
        first = self.events[0]
        return first.task.id if first.HasField("task") else first.status_update.task_id


def state_of(event: StreamResponse) -> int:
    if event.HasField("task"):
        return event.task.status.state
    if event.HasField("status_update"):
        return event.status_update.status.state
    return TaskState.TASK_STATE_UNSPECIFIED


async def start_stream(client: Client, text: str) -> Stream:
    stream = Stream(client.send_message(SendMessageRequest(message=user_message(text))))
    await stream.until(1)
    return stream


Stamp = tuple[str, int, str, int]  # key, pid, kind, ns


def stamps(log: Path) -> list[Stamp]:
    """Every probe stamp so far."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        key, pid, kind, ns = line.split()
        rows.append((key, int(pid), kind, int(ns)))
    return rows


def executions(rows: list[Stamp]) -> dict[str, list[tuple[int, int, int]]]:
    """Per step key, each execution as (pid, first stamp, last stamp of work); a cancel stamp is no work."""
    runs: dict[str, list[tuple[int, int, int]]] = defaultdict(list)
    current: dict[tuple[str, int], int] = {}
    for key, pid, kind, ns in rows:
        if kind == "start":
            runs[key].append((pid, ns, ns))
            current[(key, pid)] = len(runs[key]) - 1
        elif kind in ("tick", "end"):
            index = current[(key, pid)]
            owner, first, _ = runs[key][index]
            runs[key][index] = (owner, first, ns)
    return runs


def overlaps(rows: list[Stamp]) -> list[str]:
    """Steps that executed twice at the same time (two executions' stamps interleave)."""
    found = []
    for key, runs in executions(rows).items():
        ordered = sorted(runs, key=lambda run: run[1])
        for before, after in itertools.pairwise(ordered):
            if after[1] <= before[2]:
                found.append(f"{key}: pid {before[0]} ran until {before[2]}, pid {after[0]} started at {after[1]}")
    return found


async def wait_for_stamp(log: Path, found: Callable[[list[Stamp]], bool], what: str) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:  # the probe log is a file other processes append to: read it until it shows ``what``
            if found(stamps(log)):
                return
            await asyncio.sleep(0.05)


async def stored(dsn: str, task_ids: list[str]) -> dict[str, tuple[int, bytes]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT id, state, data FROM tasks WHERE id = ANY($1)", task_ids)
        return {row["id"]: (int(row["state"]), bytes(row["data"])) for row in rows}
    finally:
        await conn.close()


async def wait_ended(dsn: str, task_ids: list[str]) -> dict[str, int]:
    """Wait (bounded) until every task is stored ended; their states."""
    async with asyncio.timeout(WAIT_S):
        while True:
            rows = await stored(dsn, task_ids)
            if len(rows) == len(task_ids) and all(state in ENDED for state, _ in rows.values()):
                return {task_id: state for task_id, (state, _) in rows.items()}
            await asyncio.sleep(0.2)


def status_text(data: bytes) -> str:
    from a2a.types.a2a_pb2 import Task

    task = Task.FromString(data)
    return " ".join(p.text for p in task.status.message.parts)


def first_start_after(rows: list[Stamp], key: str, pids: set[int], after_ns: int) -> int | None:
    starts = [ns for k, pid, kind, ns in rows if k == key and pid in pids and kind == "start" and ns > after_ns]
    return min(starts) if starts else None


async def test_a_killed_replicas_runs_resume_elsewhere_and_its_tasks_fail_with_the_reason_under_load(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    r1, r2, r3 = start_replicas(3)
    log = tmp_path / "probe.log"
    survivors = {r2.proc.pid, r3.proc.pid}  # type: ignore[union-attr]
    labels = [f"k{n}-{uuid.uuid4().hex[:6]}" for n in range(4)]
    async with (
        a2a_client(r1.agent_url("pipeline"), SSE) as runs_r1,
        a2a_client(r1.agent_url("ticker"), SSE) as ticks_r1,
        a2a_client(r2.agent_url("pipeline"), SSE) as runs_r2,
        a2a_client(r3.agent_url("pipeline"), GRPC) as runs_r3,
        a2a_client(r2.agent_url("pipeline"), SSE) as follow_runs_r2,
        a2a_client(r3.agent_url("pipeline"), GRPC) as follow_runs_r3,
        a2a_client(r2.agent_url("ticker"), SSE) as follow_ticks_r2,
        a2a_client(r3.agent_url("ticker"), GRPC) as follow_ticks_r3,
    ):
        runs = [await start_stream(runs_r1, f"{label} 15") for label in labels]  # 1.5 s a step
        tickers = [await start_stream(ticks_r1, "60") for _ in range(3)]  # 15 s of progress
        elsewhere = [await start_stream(runs_r2, "w2 10"), await start_stream(runs_r3, "w3 10")]
        followers = [
            Stream((follow_runs_r2 if n % 2 else follow_runs_r3).subscribe(SubscribeToTaskRequest(id=s.task_id)))
            for n, s in enumerate(runs)
        ] + [
            Stream((follow_ticks_r2 if n % 2 else follow_ticks_r3).subscribe(SubscribeToTaskRequest(id=s.task_id)))
            for n, s in enumerate(tickers)
        ]
        for follower in followers:
            await follower.until(1)
        # Mid-workflow: every run on R1 is in its second step; mid-stream: every ticker has ticked.
        await wait_for_stamp(
            log, lambda rows: all(any(r[0] == f"{label}:b" for r in rows) for label in labels), "every run in step b"
        )
        for ticker in tickers:
            await ticker.until(3)
        r1.proc.kill()  # type: ignore[union-attr]  # kill -9
        killed_ns = time.time_ns()
        r1.proc.wait(timeout=10)  # type: ignore[union-attr]
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*(f.reading for f in followers), *(s.reading for s in elsewhere))

    run_ids = [s.task_id for s in runs]
    ticker_ids = [s.task_id for s in tickers]
    other_ids = [s.task_id for s in elsewhere]
    states = await wait_ended(cluster_dsn, run_ids + ticker_ids + other_ids)  # every acknowledged task is found
    rows = await stored(cluster_dsn, ticker_ids)
    assert [states[i] for i in run_ids] == [TaskState.TASK_STATE_COMPLETED] * len(run_ids), "every run resumed"
    assert [states[i] for i in other_ids] == [TaskState.TASK_STATE_COMPLETED] * 2, "the survivors' own runs"
    assert [states[i] for i in ticker_ids] == [TaskState.TASK_STATE_FAILED] * len(ticker_ids)
    assert all(DEAD_REASON in status_text(rows[i][1]) for i in ticker_ids), "a plain task fails with the reason"
    for follower, task_id in zip(followers, run_ids + ticker_ids, strict=True):
        assert follower.error is None, f"the subscriber of {task_id} on a survivor lost its stream"
        assert state_of(follower.events[-1]) == states[task_id], "each subscriber on a survivor saw the end"

    probe = stamps(log)
    assert overlaps(probe) == [], "no step ran on two replicas at once"
    took = []
    for label in labels:
        assert [r for r in probe if r[0] == f"{label}:a" and r[2] == "start"].__len__() == 1, "a finished step replays"
        resumed = first_start_after(probe, f"{label}:b", survivors, killed_ns)
        assert resumed is not None, f"{label}'s step b ran again on a survivor"
        took.append((resumed - killed_ns) / 1e9)
    print(f"\nfailover: runs resumed {sorted(round(t, 2) for t in took)} s after the kill (bound {FAILOVER_BOUND_S} s)")
    print(f"chaos: {len(run_ids)} runs resumed, {len(ticker_ids)} tasks failed with the reason, 2 other runs completed")
    assert max(took) <= FAILOVER_BOUND_S


async def test_a_run_whose_workflow_no_surviving_replica_hosts_ends_failed_with_the_reason(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    r1, r2 = start_replicas(2, pipeline_on={1})  # R2 does not load the workflow's agent file
    log = tmp_path / "probe.log"
    label = f"u-{uuid.uuid4().hex[:6]}"
    async with a2a_client(r1.agent_url("pipeline"), SSE) as on_r1:
        run = await start_stream(on_r1, f"{label} 40")
        await wait_for_stamp(log, lambda rows: any(r[0] == f"{label}:b" for r in rows), "step b started on R1")
        r1.proc.kill()  # type: ignore[union-attr]  # kill -9
        killed = time.monotonic()
        r1.proc.wait(timeout=10)  # type: ignore[union-attr]
        async with asyncio.timeout(UNHOSTED_BOUND_S):  # not WAIT_S: left working, the run fails the test in bound
            states = await wait_ended(cluster_dsn, [run.task_id])
        took = time.monotonic() - killed

    assert states[run.task_id] == TaskState.TASK_STATE_FAILED
    rows = await stored(cluster_dsn, [run.task_id])
    assert unhosted_reason("pipeline") in status_text(rows[run.task_id][1])
    print(f"\nunhosted: the run ended FAILED {took:.2f} s after the kill (bound {UNHOSTED_BOUND_S} s)")
    assert took >= UNHOSTED_GRACE_S, "not before the grace a replica hosting it has to take it over"
    assert "no live replica hosts its workflow" in r2.logged()
    async with httpx.AsyncClient(timeout=5) as http:
        metrics = (await http.get(f"{r2.url}/metrics")).text
    assert 'switchboard_failover_total{event="run_ended_unhosted"} 1.0' in metrics


async def test_a_paused_replica_that_comes_back_stops_the_run_another_replica_took_over(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    r1, r2 = start_replicas(2)
    log = tmp_path / "probe.log"
    pid1, pid2 = r1.proc.pid, r2.proc.pid  # type: ignore[union-attr]
    label = f"p-{uuid.uuid4().hex[:6]}"
    async with a2a_client(r1.agent_url("pipeline"), SSE) as on_r1, a2a_client(r2.agent_url("pipeline"), SSE) as on_r2:
        run = await start_stream(on_r1, f"{label} 40")  # 4 s a step
        follower = Stream(on_r2.subscribe(SubscribeToTaskRequest(id=run.task_id)))
        await follower.until(1)
        await wait_for_stamp(log, lambda rows: any(r[0] == f"{label}:b" and r[1] == pid1 for r in rows), "b on R1")
        os.kill(pid1, signal.SIGSTOP)
        await wait_for_stamp(
            log, lambda rows: any(r[0] == f"{label}:b" and r[1] == pid2 for r in rows), "R2 took the run over"
        )
        continued_ns = time.time_ns()
        os.kill(pid1, signal.SIGCONT)
        async with asyncio.timeout(WAIT_S):
            await follower.reading

    states = await wait_ended(cluster_dsn, [run.task_id])
    assert states[run.task_id] == TaskState.TASK_STATE_COMPLETED
    assert state_of(follower.events[-1]) == TaskState.TASK_STATE_COMPLETED
    probe = stamps(log)
    assert overlaps(probe) == [], "the paused replica did not run its step on after it came back"
    late = [r for r in probe if r[1] == pid1 and r[3] > continued_ns and r[2] != "canceled"]
    assert late == [], "nothing of the run executed on R1 once it continued"
    assert "lost the lease" in r1.logged()
    async with httpx.AsyncClient(timeout=5) as http:
        assert (await http.get(f"{r1.url}/readyz")).status_code == 200, "the paused replica serves again"
        lost = (await http.get(f"{r1.url}/metrics")).text
        taken = (await http.get(f"{r2.url}/metrics")).text
    assert 'switchboard_failover_total{event="lease_lost"} 1.0' in lost
    assert 'switchboard_failover_total{event="run_taken_over"} 1.0' in taken


async def test_a_replica_stopped_gracefully_hands_its_runs_over_at_once(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    r1, r2 = start_replicas(2)
    log = tmp_path / "probe.log"
    pid1, pid2 = r1.proc.pid, r2.proc.pid  # type: ignore[union-attr]
    label = f"t-{uuid.uuid4().hex[:6]}"
    async with a2a_client(r1.agent_url("pipeline"), SSE) as on_r1, a2a_client(r2.agent_url("pipeline"), SSE) as on_r2:
        run = await start_stream(on_r1, f"{label} 40")
        follower = Stream(on_r2.subscribe(SubscribeToTaskRequest(id=run.task_id)))
        await follower.until(1)
        await wait_for_stamp(log, lambda rows: any(r[0] == f"{label}:b" and r[1] == pid1 for r in rows), "b on R1")
        term_ns = time.time_ns()
        r1.stop()  # SIGTERM (uvicorn first waits up to 5 s for open connections, this stream among them)
        stopped_ns = time.time_ns()
        async with asyncio.timeout(WAIT_S):
            await follower.reading

    states = await wait_ended(cluster_dsn, [run.task_id])
    assert states[run.task_id] == TaskState.TASK_STATE_COMPLETED, "handed over, not canceled"
    probe = stamps(log)
    assert overlaps(probe) == []
    resumed = first_start_after(probe, f"{label}:b", {pid2}, 0)
    assert resumed is not None
    took = (resumed - stopped_ns) / 1e9
    print(f"\nhandover: resumed on R2 {(resumed - term_ns) / 1e9:.2f} s after SIGTERM, {took:.2f} s after R1 exited")
    # R1 renewed the lease until it exited: left to expire, it could not be taken before TTL_S - BEAT_S after that.
    assert took < TTL_S - BEAT_S, "released at shutdown, not left to expire"


async def cut_runner_lock(dsn: str, task_id: str) -> None:
    """End the database session holding the runner lock of the process that last wrote ``task_id``.

    What a pause longer than the network's patience does (TCP keepalive, a firewall's idle timeout):
    the paused process's session is gone, so its tasks count as abandoned.
    """
    conn = await asyncpg.connect(dsn)
    try:
        runner = await conn.fetchval("SELECT runner FROM tasks WHERE id = $1", task_id)
        pids = await conn.fetch(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 "
            "AND granted",
            RUNNER_LOCKS,
            runner_key(runner),
        )
        assert len(pids) == 1, "the runner's lock is held by one session"
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pids[0]["pid"])
    finally:
        await conn.close()


async def events_after_end(dsn: str, task_id: str) -> tuple[int, list[int]]:
    """The state of the task's first event that ended it, and the states of the events stored after that one."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT kind, data FROM task_events WHERE task_id = $1 ORDER BY seq", task_id)
    finally:
        await conn.close()
    states = [state_of(StreamResponse.FromString(bytes(row["data"]))) for row in rows if row["kind"] == EVENT]
    end = next(n for n, state in enumerate(states) if state in ENDED)
    return states[end], states[end + 1 :]


@pytest.mark.parametrize("agent", ["ticker", "stepper"])  # on the runner; on the SDK's path (a save per event)
async def test_a_paused_replica_cannot_overwrite_the_end_another_replica_gave_its_task(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, agent: str
) -> None:
    """R1 paused mid-task and cut off long enough for R2 to end its task FAILED: once R1 continues, the task stays
    FAILED (no COMPLETED written over it, no event after its end), R1 stops the run, and its caller is told FAILED."""
    r1, _ = start_replicas(2)
    pid1 = r1.proc.pid  # type: ignore[union-attr]
    async with a2a_client(r1.agent_url(agent), SSE) as on_r1:
        run = await start_stream(on_r1, "40")  # 10 s of progress
        await run.until(3)
        os.kill(pid1, signal.SIGSTOP)
        await cut_runner_lock(cluster_dsn, run.task_id)
        states = await wait_ended(cluster_dsn, [run.task_id])  # R2's sweep, within SCAN_S + DEAD_GRACE_S
        swept = (await stored(cluster_dsn, [run.task_id]))[run.task_id]
        os.kill(pid1, signal.SIGCONT)
        async with asyncio.timeout(WAIT_S):
            await run.reading  # R1 goes on, to the run's end here

    assert states[run.task_id] == TaskState.TASK_STATE_FAILED
    assert DEAD_REASON in status_text(swept[1])
    after = (await stored(cluster_dsn, [run.task_id]))[run.task_id]
    assert TaskState.Name(after[0]) == "TASK_STATE_FAILED" and after == swept, "it stays as the survivor ended it"
    end, later = await events_after_end(cluster_dsn, run.task_id)
    assert end == TaskState.TASK_STATE_FAILED, "followers were told FAILED first"
    assert later == [], "no event of the paused replica's run after the task's end"
    assert run.error is None
    assert state_of(run.events[-1]) == TaskState.TASK_STATE_FAILED, "R1's caller is told the stored end"
    logged = r1.logged()
    assert "was ended by another gateway process" in logged, "R1 logged why it stopped"
    assert logged.count("its save is refused") == 1, "R1's run stopped at its first write refused"


async def test_a_cancel_on_the_replica_a_task_was_parked_on_keeps_the_turn_answered_on_another(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str
) -> None:
    """Parked on R1 waiting for input, answered on R2 (which asks again, and dies): a cancel on R1 ends the task
    as stored, with R2's turn in it, not R1's stale copy of it from before the answer."""
    r1, r2 = start_replicas(2)
    first = user_message("ask")
    async with a2a_client(r1.agent_url("stepper"), SSE) as c1, a2a_client(r2.agent_url("stepper"), SSE) as c2:
        async with asyncio.timeout(WAIT_S):
            async for event in c1.send_message(SendMessageRequest(message=first)):
                task_id = event.task.id if event.HasField("task") else event.status_update.task_id
            asked = await c1.get_task(GetTaskRequest(id=task_id))
            answer = user_message("ask", task_id=asked.id, context_id=asked.context_id)
            async for _ in c2.send_message(SendMessageRequest(message=answer)):
                pass
            again = await c2.get_task(GetTaskRequest(id=task_id))
        r2.proc.kill()  # type: ignore[union-attr]
        r2.proc.wait(timeout=10)  # type: ignore[union-attr]
        async with asyncio.timeout(WAIT_S):
            canceled = await c1.cancel_task(CancelTaskRequest(id=task_id))
            after = await c1.get_task(GetTaskRequest(id=task_id))

    assert asked.status.state == again.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert canceled.status.state == after.status.state == TaskState.TASK_STATE_CANCELED
    kept = {m.message_id for m in after.history} | {after.status.message.message_id}
    turn = {m.message_id for m in again.history} | {again.status.message.message_id}
    assert answer.message_id in kept, "the answer given on R2 is still in the task"
    assert turn <= kept, "R2's turn is still in the task"


class OutageProxy(TcpProxy):
    """A proxy in front of PostgreSQL that the test cuts (every connection dropped, new ones refused) and restores."""

    refusing = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        await super()._handle(reader, writer)

    def cut(self) -> None:
        """PostgreSQL is unreachable from now on."""
        self.refusing = True
        self.sever()

    def restore(self) -> None:
        """PostgreSQL is reachable again."""
        self.refusing = False


@pytest.fixture
def outage(cluster_dsn: str) -> Iterator[tuple[OutageProxy, str]]:
    """A proxy to the test database, and the DSN through it."""
    background = BackgroundLoop()
    target = urlsplit(cluster_dsn)
    proxy = OutageProxy(background, target.port or 5432, free_port())
    try:
        yield proxy, urlunsplit(target._replace(netloc=target.netloc.replace(f":{target.port}", f":{proxy.port}")))
    finally:
        proxy.cut()  # its connections end before its loop stops
        background.close()


async def status_becomes(http: httpx.AsyncClient, url: str, status: int) -> None:
    async with asyncio.timeout(WAIT_S):
        while True:  # a replica notices the outage (or the recovery) at its next database call
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == status:
                    return
            await asyncio.sleep(0.1)


async def test_while_postgresql_is_unreachable_replicas_are_not_ready_refuse_new_work_retryably_and_lose_no_task(
    start_replicas: Callable[..., list[Org]], outage: tuple[OutageProxy, str], cluster_dsn: str
) -> None:
    register_with_sdk()  # the SDK's client reads the gRPC error's reason back as the gateway's error
    proxy, via_proxy = outage
    r1, r2 = start_replicas(2, via_proxy)
    new_work = {"message": {"role": "ROLE_USER", "messageId": "m1", "parts": [{"text": "hello"}]}}
    async with (
        a2a_client(r1.agent_url("ticker"), SSE) as ticks,
        a2a_client(r1.agent_url("echo"), SSE) as echo_sse,
        a2a_client(r2.agent_url("echo"), GRPC) as echo_grpc,
        httpx.AsyncClient(timeout=10) as http,
    ):
        acknowledged = await start_stream(ticks, "40")  # 10 s of progress, streamed from R1
        on_sdk_path = await start_stream(echo_sse, "wait: 3")  # an agent on the SDK's handler, saved per event
        await acknowledged.until(2)
        proxy.cut()
        for replica in (r1, r2):
            await status_becomes(http, f"{replica.url}/readyz", 503)
        jsonrpc = await rpc(http, r2.agent_url("echo"), "SendMessage", new_work)
        rest = await http.post(f"{r2.agent_url('echo')}/message:send", json=new_work, headers=V1)
        with pytest.raises(StoreUnavailableError):
            async for _ in echo_grpc.send_message(SendMessageRequest(message=user_message("hello"))):
                pass
        seen_during_outage = len(acknowledged.events)
        await acknowledged.until(seen_during_outage + 2)  # the stream stays open and live through the outage
        proxy.restore()
        for replica in (r1, r2):
            await status_becomes(http, f"{replica.url}/readyz", 200)
        async with asyncio.timeout(WAIT_S):
            await acknowledged.reading
        after = await rpc(http, r2.agent_url("echo"), "SendMessage", new_work)

    error = jsonrpc["error"]
    assert error["code"] == -32060, error
    assert error["data"][0]["metadata"] == {"reason": "store-unavailable", "retryable": "true"}
    assert rest.status_code == 503, rest.text
    assert rest.json()["error"]["status"] == "UNAVAILABLE"
    assert acknowledged.error is None and state_of(acknowledged.events[-1]) == TaskState.TASK_STATE_COMPLETED
    states = await wait_ended(cluster_dsn, [acknowledged.task_id, on_sdk_path.task_id])
    assert states[acknowledged.task_id] == TaskState.TASK_STATE_COMPLETED, "the acknowledged task was not lost"
    rows = await stored(cluster_dsn, [on_sdk_path.task_id])
    sdk_end = states[on_sdk_path.task_id]  # its saves failed during the outage: it ended there or is ended after
    assert sdk_end == TaskState.TASK_STATE_COMPLETED or ORPHAN_REASON in status_text(rows[on_sdk_path.task_id][1])
    assert after["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", "new work is taken again"


async def test_a_lone_replica_restarted_resumes_the_runs_it_handed_over_at_shutdown(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    (r1,) = start_replicas(1)
    log = tmp_path / "probe.log"
    label = f"s-{uuid.uuid4().hex[:6]}"
    async with a2a_client(r1.agent_url("pipeline"), SSE) as on_r1:
        run = await start_stream(on_r1, f"{label} 20")
        await wait_for_stamp(log, lambda rows: any(r[0] == f"{label}:b" for r in rows), "step b started")
    r1.stop()  # SIGTERM: the run's lease is released, its checkpoint kept
    r1.start()
    r1.wait_ready()
    states = await wait_ended(cluster_dsn, [run.task_id])
    assert states[run.task_id] == TaskState.TASK_STATE_COMPLETED
    probe = stamps(log)
    assert overlaps(probe) == []
    assert len([r for r in probe if r[0] == f"{label}:a" and r[2] == "start"]) == 1, "step a replayed, not rerun"
    assert len({r[1] for r in probe if r[0] == f"{label}:c"}) == 1, "step c ran once, on the restarted process"


async def test_a_run_whose_lease_lapses_while_postgresql_is_unreachable_resumes_once_it_is_back(
    start_replicas: Callable[..., list[Org]], outage: tuple[OutageProxy, str], cluster_dsn: str, tmp_path: Path
) -> None:
    proxy, via_proxy = outage
    r1, _ = start_replicas(2, via_proxy)
    log = tmp_path / "probe.log"
    label = f"o-{uuid.uuid4().hex[:6]}"
    async with a2a_client(r1.agent_url("pipeline"), SSE) as on_r1:
        run = await start_stream(on_r1, f"{label} 30")
        await wait_for_stamp(log, lambda rows: any(r[0] == f"{label}:b" for r in rows), "step b started")
        proxy.cut()
        async with asyncio.timeout(WAIT_S):
            while True:  # R1's log, written by another process: no renewal for TTL_S - MARGIN_S stops the run
                if "lost the lease" in r1.logged():
                    break
                await asyncio.sleep(0.1)
        proxy.restore()
        states = await wait_ended(cluster_dsn, [run.task_id])
        async with asyncio.timeout(WAIT_S):
            await run.reading

    assert states[run.task_id] == TaskState.TASK_STATE_COMPLETED, "resumed from its checkpoint after the outage"
    assert run.error is None, "the caller's stream on R1 stayed open through the outage"
    assert state_of(run.events[-1]) == TaskState.TASK_STATE_COMPLETED, "and ended with the resumed run's end"
    probe = stamps(log)
    assert overlaps(probe) == []
    assert len([r for r in probe if r[0] == f"{label}:a" and r[2] == "start"]) == 1, "step a replayed, not rerun"
    assert [r[2] for r in probe if r[0] == f"{label}:b"].count("start") == 2, "step b stopped, then ran again"


async def runner_of(http: httpx.AsyncClient, replica: Org, dsn: str) -> str:
    """The runner id (``Database.runner``) of ``replica``: the writer of a task it just ran."""
    new_work = {"message": {"role": "ROLE_USER", "messageId": uuid.uuid4().hex, "parts": [{"text": "hi"}]}}
    task_id = (await rpc(http, replica.agent_url("echo"), "SendMessage", new_work))["result"]["task"]["id"]
    conn = await asyncpg.connect(dsn)
    try:
        return str(await conn.fetchval("SELECT runner FROM tasks WHERE id = $1", task_id))
    finally:
        await conn.close()


async def until_row(conn: asyncpg.Connection, query: str, *args: object) -> asyncpg.Record:
    """Poll ``query`` (bounded) until it returns a row; the row."""
    async with asyncio.timeout(WAIT_S):
        while True:  # another process's write: polled
            row = await conn.fetchrow(query, *args)
            if row is not None:
                return row
            await asyncio.sleep(0.01)


_BLOCKED_BY = (  # a session waiting on a lock the session $1 holds, running a statement like $2
    "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE $2"
)
_BLOCKED_BEHIND = (  # a session running a statement like $2, waiting on one that waits on the session $1
    "SELECT a.pid FROM pg_stat_activity a WHERE a.query LIKE $2 AND EXISTS (SELECT 1 FROM pg_stat_activity b "
    "WHERE b.pid = ANY(pg_blocking_pids(a.pid)) AND $1 = ANY(pg_blocking_pids(b.pid)))"
)


async def test_a_cancel_of_a_run_taken_over_but_not_yet_saved_by_the_survivor_stops_it_canceled(
    start_replicas: Callable[..., list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    """The window: a survivor holds the run's lease, and the task row still names the dead replica as its writer.

    The test holds it open with locks: the ``runs`` table (the survivor's takeover reads the checkpoint
    after taking the lease), then the lease row (the survivor's first fenced write waits on it), and
    cancels on the third replica while the survivor waits to save.
    """
    r1, r2, r3 = start_replicas(3)
    log = tmp_path / "probe.log"
    label = f"x-{uuid.uuid4().hex[:6]}"
    conn, runs_lock, lease_lock = [await asyncpg.connect(cluster_dsn) for _ in range(3)]
    requested = asyncio.Event()
    await conn.add_listener("switchboard_task_cancels", lambda *args: requested.set())
    try:
        async with (
            httpx.AsyncClient(timeout=10) as http,
            a2a_client(r1.agent_url("pipeline"), SSE) as on_r1,
            a2a_client(r2.agent_url("pipeline"), SSE) as on_r2,
            a2a_client(r3.agent_url("pipeline"), SSE) as on_r3,
        ):
            replicas = {await runner_of(http, r2, cluster_dsn): on_r3, await runner_of(http, r3, cluster_dsn): on_r2}
            run = await start_stream(on_r1, f"{label} 30")  # 3 s a step
            await wait_for_stamp(log, lambda rows: any(r[0] == f"{label}:b" for r in rows), "step b started on R1")
            dead = str(await conn.fetchval("SELECT runner FROM tasks WHERE id = $1", run.task_id))
            await runs_lock.execute("BEGIN; LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
            r1.proc.kill()  # type: ignore[union-attr]  # kill -9
            r1.proc.wait(timeout=10)  # type: ignore[union-attr]
            held = await until_row(
                conn, "SELECT replica FROM leases WHERE task_id = $1 AND replica NOT IN ('', $2)", run.task_id, dead
            )
            survivor = str(held["replica"])
            await lease_lock.execute("BEGIN")
            await lease_lock.execute("SELECT 1 FROM leases WHERE task_id = $1 FOR UPDATE", run.task_id)
            await runs_lock.execute("ROLLBACK")  # the survivor resumes the run, up to its first save
            locker = await lease_lock.fetchval("SELECT pg_backend_pid()")
            await until_row(conn, _BLOCKED_BY, locker, "%switchboard_fence%")
            assert await conn.fetchval("SELECT runner FROM tasks WHERE id = $1", run.task_id) == dead, "in the window"
            cancel = asyncio.ensure_future(replicas[survivor].cancel_task(CancelTaskRequest(id=run.task_id)))
            async with asyncio.timeout(WAIT_S):
                while not (cancel.done() or requested.is_set()):  # asked of the survivor, or ended directly
                    if await conn.fetchrow(_BLOCKED_BEHIND, locker, "UPDATE tasks SET state%") is not None:
                        break  # ended directly, behind the survivor's waiting save
                    await asyncio.sleep(0.01)
            await lease_lock.execute("ROLLBACK")
            async with asyncio.timeout(WAIT_S):
                answer = await cancel
            acknowledged_ns = time.time_ns()
        async with asyncio.timeout(WAIT_S):  # the run stopped: the survivor no longer holds its lease
            await until_row(conn, "SELECT 1 FROM leases WHERE task_id = $1 AND replica = ''", run.task_id)
        final = await conn.fetchval("SELECT state FROM tasks WHERE id = $1", run.task_id)
    finally:
        for session in (conn, runs_lock, lease_lock):
            await session.close()

    assert answer.status.state == TaskState.TASK_STATE_CANCELED
    assert final == TaskState.TASK_STATE_CANCELED, "the caller was told CANCELED: the run stays CANCELED"
    probe = stamps(log)
    late = [r for r in probe if r[0].startswith(label) and r[2] == "start" and r[3] > acknowledged_ns]
    assert late == [], "no step starts after the cancel was acknowledged"
    assert overlaps(probe) == []
