"""NATS JetStream triggers against the machine's NATS server: one run per message, dead letters, kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.types.a2a_pb2 import TaskState

from gateway.testing import free_socket, running_gateway, wait_until_ready
from gateway.triggers.ledger import context_for
from gateway.triggers.runs import TriggerRuns
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent
from tests.push.conftest import fresh_pg_database
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import ended, jsonrpc_client, metadata, with_triggers

nats = pytest.importorskip("nats", reason="nats-py is not installed (pip install -e '.[nats]')")

NATS_ENV = "SWITCHBOARD_TEST_NATS_URL"
REPO = Path(__file__).resolve().parents[2]
WAIT_S = 30.0
POLL_S = 0.05
COMPLETED, FAILED = (
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
)  # a separate process offers no event to wait on


@pytest.fixture
def nats_url() -> str:
    """The NATS server (with JetStream) tests use; they skip only when the env var is unset."""
    url = os.environ.get(NATS_ENV, "")
    if not url:
        pytest.skip(f"{NATS_ENV} is not set")
    return url


@pytest.fixture
async def stream(nats_url: str) -> AsyncIterator[tuple[Any, str, str]]:
    """A JetStream context and a stream and subject of this test alone (deleted after it)."""
    name = f"sbtest_{uuid.uuid4().hex[:10]}"
    client = await nats.connect(nats_url)
    js = client.jetstream()
    await js.add_stream(name=name, subjects=[f"{name}.events"])
    try:
        yield js, name, f"{name}.events"
    finally:
        await js.delete_stream(name)
        await client.close()


def nats_trigger(stream: str, subject: str, **more: Any) -> dict[str, Any]:
    return {"kind": "nats", "name": "bus", "stream": stream, "subject": subject, **more}


async def recorded(runs: TriggerRuns, count: int) -> None:
    """Wait until ``count`` events were recorded (started, repeated or dead-lettered)."""
    async with asyncio.timeout(WAIT_S), runs.recorded:
        await runs.recorded.wait_for(lambda: runs.count >= count)


async def test_each_message_starts_one_run_and_one_that_is_not_input_is_dead_lettered_once(
    tmp_path: Path, nats_url: str, stream: tuple[Any, str, str]
) -> None:
    js, name, subject = stream
    dead_subject = f"{name}.dead"
    log = tmp_path / "calls.jsonl"
    trigger = nats_trigger(name, subject, dead_letter_subject=dead_subject, ack_wait_s=2)
    agents = agents_folder(
        tmp_path / "agents", [with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=str(log)), trigger)]
    )
    watcher = await nats.connect(nats_url)
    dead_letters = await watcher.subscribe(dead_subject)
    try:
        async with running_gateway(make_settings(tmp_path, agents=agents, nats_url=nats_url)) as gateway:
            runs: TriggerRuns = gateway.app.state.triggers.runs
            await js.publish(subject, json.dumps({"order": 1}).encode())
            await js.publish(subject, b"this is not json")
            await js.publish(subject, json.dumps({"order": 2}).encode(), headers={"Nats-Msg-Id": "order-2"})
            await js.publish(subject, json.dumps("a text event").encode())
            await recorded(runs, 4)
            dead = await dead_letters.next_msg(timeout=WAIT_S)
            entries = await runs.ledger.entries("inbox", "bus")
            started = [e for e in entries if e.state == "started"]
            async with jsonrpc_client(gateway, "inbox") as client:
                tasks = [await ended(client, e.task_id) for e in started]
            consumer = await js.consumer_info(name, "sb-inbox-bus")
    finally:
        await watcher.close()

    assert dead.data == b"this is not json"
    assert "not JSON" in dead.headers["Switchboard-Dead-Letter-Reason"]
    [dead_entry] = [e for e in entries if e.state == "dead"]
    assert "not JSON" in dead_entry.reason and dead_entry.task_id == ""
    assert len(started) == 3 and {e.key.event_id for e in started} >= {"order-2"}
    assert [metadata(t)["trigger"]["kind"] for t in tasks] == ["nats"] * 3
    assert {metadata(t)["trigger"]["subject"] for t in tasks} == {subject}
    assert sorted(json.dumps(c["data"]) + c["text"] for c in calls(log)) == sorted(
        ['[{"order": 1}]', '[{"order": 2}]', "[]a text event"]
    )
    assert (consumer.num_ack_pending, consumer.num_pending, consumer.num_redelivered) == (0, 0, 0)


# -- kill -9 in the middle of 100 events ----------------------------------------------------------


@contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


async def poll(what: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT_S * 2):
        while True:
            if what():
                return
            await asyncio.sleep(POLL_S)


def count(db: Path, sql: str) -> int:
    try:
        return int(query(db, sql)[0][0])
    except sqlite3.OperationalError:  # the gateway has not made its tables yet
        return 0


async def test_100_events_with_a_kill_9_half_way_each_end_in_exactly_one_recorded_run(
    tmp_path: Path, nats_url: str, stream: tuple[Any, str, str]
) -> None:
    js, name, subject = stream
    log = tmp_path / "calls.jsonl"
    trigger = nats_trigger(name, subject, max_in_flight=4, ack_wait_s=2)
    inbox = python_agent("inbox", f"{MODULE}:inbox", log=str(log), delay_s=0.05)
    agents = agents_folder(tmp_path / "agents", [with_triggers(inbox, trigger)])
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_AGENTS": str(agents),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
        "SWITCHBOARD_NATS_URL": nats_url,
    }
    db = tmp_path / "data" / "switchboard.db"
    for n in range(100):
        await js.publish(subject, json.dumps({"n": n}).encode())
    runs_sql = "SELECT count(*) FROM tasks WHERE agent = 'inbox'"
    linked_sql = "SELECT count(*) FROM trigger_events WHERE state = 'started'"

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        with gateway_process(env) as first:
            await wait_until_ready(http, first)
            await poll(lambda: count(db, runs_sql) >= 30)
            first.send_signal(signal.SIGKILL)
        before_restart = count(db, linked_sql)
        assert 30 <= count(db, runs_sql) < 100, "the kill did not land half-way"

        with gateway_process(env) as second:
            await wait_until_ready(http, second)
            await poll(lambda: count(db, linked_sql) == 100)
            await poll_consumer(js, name)
            await poll(lambda: count(db, f"{runs_sql} AND state IN ({COMPLETED}, {FAILED})") == 100)

    stream_info = await js.stream_info(name)
    epoch = str(stream_info.created or "")
    events = query(db, "SELECT event_id, context_id, task_id, state FROM trigger_events ORDER BY event_id")
    assert len(events) == 100 and {row[3] for row in events} == {"started"}
    assert {row[0] for row in events} == {f"{name}@{epoch}:{seq}" for seq in range(1, 101)}
    per_context = dict(query(db, "SELECT context_id, count(*) FROM tasks WHERE agent = 'inbox' GROUP BY context_id"))
    assert {row[1]: per_context.get(row[1]) for row in events} == {row[1]: 1 for row in events}, "one run per event"
    assert all(row[1] == context_for("inbox", "bus", row[0]) for row in events)
    task_ids = {row[0] for row in query(db, "SELECT id FROM tasks WHERE agent = 'inbox'")}
    assert {row[2] for row in events} == task_ids
    contexts_called = [c["context_id"] for c in calls(log)]
    assert len(contexts_called) == len(set(contexts_called)), "an event's run was started twice"
    assert before_restart < 100
    states = dict(query(db, "SELECT state, count(*) FROM tasks GROUP BY state"))
    assert states.get(FAILED, 0) <= 4, "only the runs in flight at the kill may have failed (ended by the restart)"
    assert states.get(COMPLETED, 0) + states.get(FAILED, 0) == 100


async def poll_consumer(js: Any, stream: str) -> None:
    """Wait until the consumer has nothing pending or unacknowledged (every message acked after its run)."""

    async def settled() -> bool:
        info = await js.consumer_info(stream, "sb-inbox-bus")
        return bool(info.num_pending == 0 and info.num_ack_pending == 0)

    async with asyncio.timeout(WAIT_S):
        while True:
            if await settled():
                return
            await asyncio.sleep(POLL_S)


async def test_two_replicas_on_postgresql_share_a_subject_and_run_each_event_once(
    tmp_path: Path, nats_url: str, stream: tuple[Any, str, str], pg_dsn: str
) -> None:
    js, name, subject = stream
    log = tmp_path / "calls.jsonl"
    trigger = nats_trigger(name, subject, max_in_flight=2)
    inbox = python_agent("inbox", f"{MODULE}:inbox", log=str(log), delay_s=0.1)
    agents = agents_folder(tmp_path / "agents", [with_triggers(inbox, trigger)])
    async with fresh_pg_database(pg_dsn) as dsn:
        settings = {"agents": agents, "nats_url": nats_url, "database_url": dsn}
        async with (
            running_gateway(make_settings(tmp_path / "a", **settings)) as first,
            running_gateway(make_settings(tmp_path / "b", **settings)) as second,
        ):
            for n in range(40):
                await js.publish(subject, json.dumps({"n": n}).encode())
            replicas: list[TriggerRuns] = [g.app.state.triggers.runs for g in (first, second)]
            await started_runs(replicas[0], 40)
            await poll_consumer(js, name)

    contexts = [c["context_id"] for c in calls(log)]
    assert len(contexts) == 40 and len(set(contexts)) == 40, "every event ran once, on one replica or the other"
    assert sorted(c["data"][0]["n"] for c in calls(log)) == list(range(40))
    assert all(r.count > 0 for r in replicas), "both replicas took events"


async def started_runs(runs: TriggerRuns, count: int) -> None:
    """Wait until the shared ledger holds ``count`` started runs (two replicas: no one event to wait on)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            entries = await runs.ledger.entries("inbox", "bus")
            if len([e for e in entries if e.state == "started"]) >= count:
                return
            await asyncio.sleep(POLL_S)
