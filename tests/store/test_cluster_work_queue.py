"""A distributed work queue over gateway replicas on one PostgreSQL (issue #20): items claimed by any replica.

Each replica is a real ``python -m gateway serve`` process; the run is started with the SDK's own
client on one of them. The queue's agent is a probe (``tests.store.cluster_agents._probe``) that
stamps, with its process id, every moment its code runs into one file shared by all processes, so
the stamps say which replica ran each item, and how often. An item runs, on whichever replica claims
it, as the run's caller with the scopes it had (not as its owner's bare name).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from a2a.types.a2a_pb2 import CancelTaskRequest, SubscribeToTaskRequest, Task, TaskState

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.auth.policy import Identity, RunOwner, caller_of
from gateway.hosting.data_parts import data_value
from gateway.hosting.work_items import DEAD_GRACE_S, POLL_S, SLOTS_PER_AGENT, item_user
from gateway.store import open_database
from tests.auth.conftest import api_key, authed_client
from tests.bindings.a2a_clients import a2a_client
from tests.federation.support import Org, agent_file, org, python_agent, workflow
from tests.store.test_cluster_failover import (
    SSE,
    WAIT_S,
    Stamp,
    Stream,
    executions,
    overlaps,
    stamps,
    start_stream,
    state_of,
    stored,
    wait_for_stamp,
)
from tests.store.test_task_store import _run_sql

LOG_LINES = 300
"""How much of each replica's log a test's report shows (its end)."""

pytestmark = pytest.mark.skipif(not os.environ.get("SWITCHBOARD_TEST_PG_DSN"), reason="needs PostgreSQL")


@pytest.fixture
def cluster_dsn() -> Iterator[str]:
    """A schema of this test's own in the test database (dropped afterwards)."""
    dsn = os.environ["SWITCHBOARD_TEST_PG_DSN"]
    schema = f"sb_wq_{uuid.uuid4().hex[:12]}"
    _run_sql(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
    finally:
        _run_sql(dsn, f"DROP SCHEMA {schema} CASCADE")


def stop_and_show_logs(replicas: list[Org]) -> None:
    """Stop the replicas and print the end of each one's log: pytest shows it with a failing test's report.

    The logs live in the test's temporary directory, which a CI run does not keep.
    """
    for replica in replicas:
        replica.stop()
    for replica in replicas:
        lines = replica.logged().splitlines()[-LOG_LINES:]
        print(f"--- {replica.name} (pid {replica.proc.pid if replica.proc else '-'}): last {len(lines)} log lines")
        print("\n".join(lines))


@pytest.fixture
def start_replicas(cluster_dsn: str, tmp_path: Path) -> Iterator[Callable[[int], list[Org]]]:
    """Start ``n`` replicas hosting the probe and a distributed work queue over it (stopped afterwards)."""
    started: list[Org] = []

    def start(n: int) -> list[Org]:
        probe_log = tmp_path / "probe.log"
        orgs = [
            org(f"r{i}", tmp_path, SWITCHBOARD_DATABASE_URL=cluster_dsn, SWITCHBOARD_PROBE_LOG=str(probe_log))
            for i in range(1, n + 1)
        ]
        for replica in orgs:
            agents = replica.folder / "agents"
            python_agent(agents, "probe-a", "tests.store.cluster_agents:probe_a")
            runtime = {"kind": "python", "entrypoint": "tests.store.cluster_agents:probe_b"}
            agent_file(agents, "probe-b", runtime, admission={"max_concurrent": 1})
            python_agent(agents, "echo", "gateway.agents.echo:EchoExecutor")
            options = {"distribute": True, "concurrency": 3 * SLOTS_PER_AGENT, "max_attempts": 1}
            workflow(agents, "queue", "work-queue", ["probe-a"], options=options)
            workflow(agents, "narrow", "work-queue", ["probe-b"], options=options)
        started.extend(orgs)
        for replica in orgs:
            replica.start()
        for replica in orgs:
            replica.wait_ready()
        return orgs

    try:
        yield start
    finally:
        stop_and_show_logs(started)


@dataclass
class QueueRun:
    """A run of a queue, streamed to its end: its final state, task id and progress lines."""

    state: int
    task_id: str
    progress: list[str]


async def run_queue(replica: Org, labels: list[str], ticks: int, queue: str = "queue") -> QueueRun:
    """Start ``queue`` on ``replica`` with one item per label and follow it to its end."""
    async with a2a_client(replica.agent_url(queue), SSE) as client:
        stream = await start_stream(client, "\n".join(f"{label} {ticks}" for label in labels))
        async with asyncio.timeout(WAIT_S):
            await stream.reading
    assert stream.error is None
    updates = [e.status_update.status.message for e in stream.events if e.HasField("status_update")]
    progress = [part.text for message in updates for part in message.parts if part.text]
    return QueueRun(state_of(stream.events[-1]), stream.task_id, progress)


async def outcome(dsn: str, task_id: str) -> dict[str, object]:
    """The run's ``result`` artifact, as stored."""
    task = Task.FromString((await stored(dsn, [task_id]))[task_id][1])
    result = next(a for a in task.artifacts if a.name == "result")
    value = next(data_value(part.data) for part in result.parts if part.HasField("data"))
    assert isinstance(value, dict)
    return value


def runs_of(rows: list[Stamp], kind: str) -> Counter[str]:
    """How many times each item's probe stamped ``kind`` (``start`` or ``end``)."""
    return Counter(key for key, _, stamp, _ in rows if stamp == kind)


async def leftover_items(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM work_items"))
    finally:
        await conn.close()


async def test_a_distributed_queues_items_run_on_several_replicas_each_exactly_once(
    start_replicas: Callable[[int], list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    replicas = start_replicas(3)
    pids = {replica.proc.pid: replica.name for replica in replicas}  # type: ignore[union-attr]
    labels = [f"d{n}-{uuid.uuid4().hex[:6]}" for n in range(3 * SLOTS_PER_AGENT)]

    run = await run_queue(replicas[0], labels, 10)  # 1 s an item: more in flight than one replica's slots

    assert run.state == TaskState.TASK_STATE_COMPLETED
    result = await outcome(cluster_dsn, run.task_id)
    assert result["counts"] == {"total": len(labels), "done": len(labels), "failed": 0}
    rows = stamps(tmp_path / "probe.log")
    keys = [f"{label}:a" for label in labels]
    assert runs_of(rows, "start") == Counter(keys), "every item started exactly once"
    assert runs_of(rows, "end") == Counter(keys), "every item ended exactly once"
    per_replica = Counter(pids[pid] for _, pid, kind, _ in rows if kind == "start")
    print(f"\nwork items per replica: {dict(sorted(per_replica.items()))}")
    assert len(per_replica) >= 2, "the items ran on more than one replica"
    assert max(per_replica.values()) <= SLOTS_PER_AGENT * 2, "no replica took more than its slots at a time"
    assert await leftover_items(cluster_dsn) == 0, "every item's row is gone once its result was read"
    for n in range(len(labels)):  # each item's progress, wherever it ran, is the run's progress
        assert f"item {n + 1}/{len(labels)}, attempt 1 · probe-a: a tick 1" in run.progress, run.progress


async def test_an_item_whose_replica_is_killed_is_claimed_again_and_finished(
    start_replicas: Callable[[int], list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    r1, r2, r3 = start_replicas(3)
    log = tmp_path / "probe.log"
    victim = r2.proc.pid  # type: ignore[union-attr]
    labels = [f"k{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT)]
    running = asyncio.ensure_future(run_queue(r1, labels, 30))  # 3 s an item

    await wait_for_stamp(log, lambda rows: any(pid == victim and kind == "tick" for _, pid, kind, _ in rows), "r2")
    r2.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]  # kill -9, mid-item
    killed_ns = time.time_ns()
    r2.proc.wait(timeout=10)  # type: ignore[union-attr]
    run = await running

    assert run.state == TaskState.TASK_STATE_COMPLETED
    result = await outcome(cluster_dsn, run.task_id)
    assert result["counts"] == {"total": len(labels), "done": len(labels), "failed": 0}
    rows = stamps(log)
    cut = {key for key, pid, kind, _ in rows if pid == victim and kind == "start"}
    assert cut, "the killed replica had claimed items"
    ends = runs_of(rows, "end")
    assert ends == Counter(f"{label}:a" for label in labels), "every item ended exactly once"
    again = {key: [pid for k, pid, kind, _ in rows if k == key and kind == "end"] for key in cut}
    assert all(victim not in pids for pids in again.values()), "each cut item was finished by a survivor"
    assert overlaps([row for row in rows if row[1] != victim]) == [], "no item ran twice at once on survivors"
    names = {r1.proc.pid: "r1", victim: "r2", r3.proc.pid: "r3"}  # type: ignore[union-attr]
    per_replica = Counter(names[pid] for _, pid, kind, _ in rows if kind == "end")
    again_s = [
        min(ns for k, pid, kind, ns in rows if k == key and kind == "start" and pid != victim) - killed_ns
        for key in cut
    ]
    print(
        f"\nkill -9 mid-item: {len(cut)} item(s) cut on r2, started again on a survivor "
        f"{sorted(round(t / 1e9, 2) for t in again_s)} s after the kill (grace {DEAD_GRACE_S} s); "
        f"items finished per replica {dict(sorted(per_replica.items()))}"
    )
    assert max(again_s) / 1e9 <= DEAD_GRACE_S + 2 * POLL_S + 3.0, "claimed again within the grace and a poll"


async def test_canceling_a_distributed_run_cancels_its_items_on_every_replica(
    start_replicas: Callable[[int], list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    replicas = start_replicas(2)
    log = tmp_path / "probe.log"
    other = replicas[1].proc.pid  # type: ignore[union-attr]
    labels = [f"c{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT + 2)]
    async with a2a_client(replicas[0].agent_url("queue"), SSE) as client:
        stream = await start_stream(client, "\n".join(f"{label} 300" for label in labels))  # 30 s an item
        await wait_for_stamp(log, lambda rows: any(pid == other and kind == "tick" for _, pid, kind, _ in rows), "r2")
        canceled = await client.cancel_task(CancelTaskRequest(id=stream.task_id))
        async with asyncio.timeout(WAIT_S):
            await stream.reading

    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    rows = stamps(log)
    started = runs_of(rows, "start")
    assert len({pid for _, pid, kind, _ in rows if kind == "start"}) == 2, "items were running on both replicas"
    await wait_for_stamp(log, lambda rows: runs_of(rows, "canceled") == started, "every running item canceled")
    assert runs_of(stamps(log), "end") == Counter(), "no item ran to its end"
    assert len(started) == 2 * SLOTS_PER_AGENT, "queued items beyond the replicas' slots never started"
    async with asyncio.timeout(WAIT_S):
        while True:  # the withdrawn rows are deleted as the cancel goes out
            if not await leftover_items(cluster_dsn):
                break
            await asyncio.sleep(0.1)


async def test_a_replica_claims_no_more_items_than_its_admission_cap_leaves_free(
    start_replicas: Callable[[int], list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    replicas = start_replicas(2)
    labels = [f"n{n}-{uuid.uuid4().hex[:6]}" for n in range(6)]

    run = await run_queue(replicas[0], labels, 5, queue="narrow")  # probe-b: max_concurrent 1

    assert run.state == TaskState.TASK_STATE_COMPLETED
    result = await outcome(cluster_dsn, run.task_id)
    assert result["counts"] == {"total": 6, "done": 6, "failed": 0}, "no item was refused as busy"
    rows = stamps(tmp_path / "probe.log")
    assert runs_of(rows, "end") == Counter(f"{label}:b" for label in labels)
    by_pid: dict[int, list[Stamp]] = {}
    for row in rows:
        by_pid.setdefault(row[1], []).append(row)
    assert len(by_pid) == 2, "both replicas ran items"
    for pid, own in by_pid.items():
        spans = sorted((first, last) for runs in executions(own).values() for _, first, last in runs)
        assert all(b[0] > a[1] for a, b in itertools.pairwise(spans)), f"pid {pid} ran two items at once"


async def test_a_replica_stopped_gracefully_hands_its_items_over_at_once(
    start_replicas: Callable[[int], list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    replicas = start_replicas(3)  # the survivors have a free slot for each item the leaving one hands over
    log = tmp_path / "probe.log"
    others = {replica.proc.pid: replica for replica in replicas[1:]}  # type: ignore[union-attr]
    labels = [f"g{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT)]
    running = asyncio.ensure_future(run_queue(replicas[0], labels, 30))  # 3 s an item

    await wait_for_stamp(log, lambda rows: any(pid in others and kind == "tick" for _, pid, kind, _ in rows), "r2/r3")
    leaving = next(pid for _, pid, kind, _ in stamps(log) if pid in others and kind == "tick")
    others[leaving].proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    stopped_ns = time.time_ns()
    run = await running

    assert run.state == TaskState.TASK_STATE_COMPLETED
    rows = stamps(log)
    handed = {key for key, pid, kind, _ in rows if pid == leaving and kind == "canceled"}
    assert handed, "the stopping replica stopped the items it was running"
    assert runs_of(rows, "end") == Counter(f"{label}:a" for label in labels), "every item ended exactly once"
    took = [
        (min(ns for k, pid, kind, ns in rows if k == key and kind == "start" and pid != leaving) - stopped_ns) / 1e9
        for key in handed
    ]
    print(f"\nSIGTERM: {len(handed)} item(s) handed over, started again {sorted(round(t, 2) for t in took)} s after")
    assert max(took) < DEAD_GRACE_S, "handed over at once, not after the dead replica's grace"


async def test_a_run_whose_replica_is_killed_resumes_elsewhere_and_posts_its_unfinished_items_again(
    start_replicas: Callable[[int], list[Org]], cluster_dsn: str, tmp_path: Path
) -> None:
    r1, r2, _ = start_replicas(3)
    log = tmp_path / "probe.log"
    poster = r1.proc.pid  # type: ignore[union-attr]
    labels = [f"p{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT)]
    async with a2a_client(r1.agent_url("queue"), SSE) as client, a2a_client(r2.agent_url("queue"), SSE) as follower:
        started = await start_stream(client, "\n".join(f"{label} 30" for label in labels))  # 3 s an item
        await wait_for_stamp(log, lambda rows: any(p != poster and kind == "tick" for _, p, kind, _ in rows), "r2/r3")
        r1.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]  # kill -9 the run's replica, mid-batch
        r1.proc.wait(timeout=10)  # type: ignore[union-attr]
        stream = Stream(follower.subscribe(SubscribeToTaskRequest(id=started.task_id)))
        async with asyncio.timeout(WAIT_S):
            await stream.reading

    assert stream.error is None
    assert state_of(stream.events[-1]) == TaskState.TASK_STATE_COMPLETED, "the run resumed on a survivor and ended"
    result = await outcome(cluster_dsn, started.task_id)
    assert result["counts"] == {"total": len(labels), "done": len(labels), "failed": 0}
    rows = stamps(log)
    assert set(runs_of(rows, "end")) == {f"{label}:a" for label in labels}, "every item ended"
    assert overlaps([row for row in rows if row[1] != poster]) == [], "no item ran twice at once on the survivors"
    assert await leftover_items(cluster_dsn) == 0, "the dead poster's rows are gone"
    again = Counter(key for key, pid, kind, _ in rows if kind == "start" and pid != poster)
    print(f"\nrun's replica killed: items started on survivors {sorted(again.values())} times each")


# --- an item runs as its caller, scopes and all, on whichever replica claims it ----------------------


@dataclass(frozen=True)
class Keys:
    alice: str  # holds sec:run
    bob: str  # does not


@pytest.fixture
def scoped_replicas(cluster_dsn: str, tmp_path: Path) -> Iterator[tuple[list[Org], Keys]]:
    """Two replicas requiring API keys: a distributed queue whose item agent reuses a probe that needs ``sec:run``."""
    keys = Keys(new_api_key(), new_api_key())
    lines = json.dumps([api_key_line("alice", keys.alice, ["sec:run"]), api_key_line("bob", keys.bob, [])])
    env = {"SWITCHBOARD_DATABASE_URL": cluster_dsn, "SWITCHBOARD_PROBE_LOG": str(tmp_path / "probe.log")}
    replicas = [org(f"s{i}", tmp_path, SWITCHBOARD_AUTH_API_KEYS=lines, **env) for i in (1, 2)]
    for replica in replicas:
        agents = replica.folder / "agents"
        runtime = {"kind": "python", "entrypoint": "tests.store.cluster_agents:probe_a"}
        agent_file(agents, "guarded", runtime, scopes=["sec:run"])
        python_agent(agents, "echo", "gateway.agents.echo:EchoExecutor")
        # needs no scope itself, but reuses guarded's logic in-process: only for a caller guarded would admit
        python_agent(agents, "lead-probe", "tests.store.cluster_agents:probe_lead")
        options = {"distribute": True, "concurrency": 2 * SLOTS_PER_AGENT, "max_attempts": 1}
        workflow(agents, "guarded-queue", "work-queue", ["lead-probe"], options=options)
    try:
        for replica in replicas:
            replica.start()
        for replica in replicas:
            replica.wait_ready()
        yield replicas, keys
    finally:
        stop_and_show_logs(replicas)


async def run_as(replica: Org, key: str, labels: list[str], ticks: int) -> Stream:
    """Run ``guarded-queue`` on ``replica`` as the key's holder, one item per label, to its end."""
    async with authed_client(replica.agent_url("guarded-queue"), SSE, api_key(key)) as client:
        stream = await start_stream(client, "\n".join(f"{label} {ticks}" for label in labels))
        async with asyncio.timeout(WAIT_S):
            await stream.reading
    assert stream.error is None
    return stream


def final_text(stream: Stream) -> str:
    last = stream.events[-1]
    status = last.task.status if last.HasField("task") else last.status_update.status
    return "\n".join(part.text for part in status.message.parts if part.text)


async def test_a_distributed_item_runs_as_its_caller_with_its_scopes_on_another_replica(
    scoped_replicas: tuple[list[Org], Keys], cluster_dsn: str, tmp_path: Path
) -> None:
    (poster, other), keys = scoped_replicas
    labels = [f"s{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT)]

    alice = await run_as(poster, keys.alice, labels, 10)  # 1 s an item: more than one replica's slots at once

    assert state_of(alice.events[-1]) == TaskState.TASK_STATE_COMPLETED, final_text(alice)
    result = await outcome(cluster_dsn, alice.task_id)
    assert result["counts"] == {"total": len(labels), "done": len(labels), "failed": 0}, result
    rows = stamps(tmp_path / "probe.log")
    assert runs_of(rows, "end") == Counter(f"{label}:a" for label in labels)
    elsewhere = {key for key, pid, kind, _ in rows if kind == "end" and pid == other.proc.pid}  # type: ignore[union-attr]
    assert elsewhere, "items ran on the replica that did not post them, as alice, with her sec:run"

    refused = [f"r{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT)]
    bob = await run_as(poster, keys.bob, refused, 1)

    assert state_of(bob.events[-1]) == TaskState.TASK_STATE_FAILED, final_text(bob)
    assert "apikey:bob lacks scope(s) sec:run required by agent 'guarded'" in final_text(bob), final_text(bob)
    assert not [key for key, _, _, _ in stamps(tmp_path / "probe.log") if key.startswith("r")], "bob's never ran"


async def test_an_older_work_items_table_gets_the_caller_column_and_its_items_run_with_no_scopes(
    cluster_dsn: str,
) -> None:
    database = await open_database(cluster_dsn)
    try:
        await database.migrate()
        await database.write("ALTER TABLE work_items DROP COLUMN caller")  # the table as the previous version made it
        await database.migrate()  # the next start adds it back, empty
        row = await database.fetch_one("SELECT count(*) FROM information_schema.columns WHERE column_name = 'caller' "
                                       "AND table_name = 'work_items' AND table_schema = current_schema()")  # fmt: skip
        assert row is not None and row[0] == 1
    finally:
        await database.close()
    alice = Identity("apikey:alice", frozenset({"sec:run"}))
    assert caller_of(item_user("apikey:alice", alice.to_json())) == alice, "an item acts as its caller, scopes and all"
    older = item_user("apikey:alice", "")  # posted before callers were kept: its owner, with no scopes
    assert isinstance(older, RunOwner) and older.user_name == "apikey:alice" and caller_of(older) is None
