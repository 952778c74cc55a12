"""Three ``python -m gateway serve`` replicas on one PostgreSQL: any replica follows and cancels any task.

A stream started on R1 is followed from R2 and R3 (every live event in order, no gap, no
duplicate, also when joining mid-stream), and a ``CancelTask`` on R3 stops the agent running on
R1: the caller is told the task's real final state, which is the one the database keeps. On
each streaming binding (JSON-RPC, HTTP+JSON, gRPC), through the SDK's own clients.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from a2a.client import Client
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskState,
)

from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, user_message
from tests.federation.support import Org, org, python_agent
from tests.store.cluster_agents import HOLDS_ENV, release
from tests.store.test_task_store import _run_sql

WAIT_S = 30.0
STREAMING = [b for b in BINDINGS if b.streaming]
pytestmark = pytest.mark.skipif(not os.environ.get("SWITCHBOARD_TEST_PG_DSN"), reason="needs PostgreSQL")


@pytest.fixture(scope="module")
def cluster_dsn() -> Iterator[str]:
    """A schema of this module's own in the test database (dropped afterwards)."""
    dsn = os.environ["SWITCHBOARD_TEST_PG_DSN"]
    schema = f"sb_cluster_{uuid.uuid4().hex[:12]}"
    _run_sql(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
    finally:
        _run_sql(dsn, f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(scope="module")
def holds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the test releases the held agents' steps (``tests.store.cluster_agents.release``)."""
    return tmp_path_factory.mktemp("holds")


@pytest.fixture(scope="module")
def replicas(cluster_dsn: str, holds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Org]]:
    """R1, R2, R3: three gateway processes sharing the database (each its own data dir)."""
    root = tmp_path_factory.mktemp("cluster")
    env = {"SWITCHBOARD_DATABASE_URL": cluster_dsn, HOLDS_ENV: str(holds)}
    orgs = [org(f"r{n}", root, **env) for n in (1, 2, 3)]
    for replica in orgs:
        agents = replica.folder / "agents"
        python_agent(agents, "echo", "gateway.agents.echo:EchoExecutor")  # the SDK's path
        python_agent(agents, "ticker", "tests.store.cluster_agents:ticker")  # the runner's
        python_agent(agents, "held-echo", "tests.store.cluster_agents:HeldEchoExecutor")  # each step released
        python_agent(agents, "held-ticker", "tests.store.cluster_agents:held_ticker")
    try:
        for replica in orgs:
            replica.start()
        for replica in orgs:
            replica.wait_ready()
        yield orgs
    finally:
        for replica in orgs:
            replica.stop()


class Stream:
    """A stream read in the background: its events so far, and a condition to wait for more on."""

    def __init__(self, events: AsyncIterator[StreamResponse]) -> None:
        self.events: list[StreamResponse] = []
        self._more = asyncio.Condition()
        self.reading = asyncio.ensure_future(self._read(events))

    async def _read(self, events: AsyncIterator[StreamResponse]) -> None:
        async for event in events:
            async with self._more:
                self.events.append(event)
                self._more.notify_all()

    async def until(self, count: int) -> None:
        """Wait (bounded) until the stream has given ``count`` events."""
        async with asyncio.timeout(WAIT_S), self._more:
            await self._more.wait_for(lambda: len(self.events) >= count)


def state_of(event: StreamResponse) -> int:
    if event.HasField("task"):
        return event.task.status.state
    if event.HasField("status_update"):
        return event.status_update.status.state
    return TaskState.TASK_STATE_UNSPECIFIED


def task_id_of(event: StreamResponse) -> str:
    return event.task.id if event.HasField("task") else event.status_update.task_id


async def start_stream(client: Client, text: str) -> tuple[str, Stream]:
    """Stream a new task on ``client``; its id and the stream."""
    stream = Stream(client.send_message(SendMessageRequest(message=user_message(text))))
    await stream.until(1)
    return task_id_of(stream.events[0]), stream


async def stored_state(dsn: str, task_id: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT state FROM tasks WHERE id = $1", task_id))
    finally:
        await conn.close()


def live(events: list[StreamResponse]) -> list[bytes]:
    """The live events (all but a snapshot ``Task``), as bytes: equal only when identical."""
    return [e.SerializeToString() for e in events if not e.HasField("task")]


HELD = {"held-echo": "wait: 3", "held-ticker": "12"}  # 6 and 12 steps, each held until released
LONGER = {"echo": "wait: 4", "ticker": "16"}


@pytest.mark.parametrize("agent", sorted(HELD))
@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_a_stream_on_one_replica_is_followed_live_from_the_others(
    replicas: list[Org], holds: Path, binding: Binding, agent: str
) -> None:
    r1, r2, r3 = replicas
    async with (
        a2a_client(r1.agent_url(agent), binding) as c1,
        a2a_client(r2.agent_url(agent), binding) as c2,
        a2a_client(r3.agent_url(agent), binding) as c3,
    ):
        task_id, origin = await start_stream(c1, HELD[agent])  # the agent holds before its first step
        try:
            on_r2 = Stream(c2.subscribe(SubscribeToTaskRequest(id=task_id)))
            await on_r2.until(1)  # R2 follows from before the first step
            release(holds, task_id, through=3)
            await origin.until(4)  # R3 joins mid-stream: the agent holds before step 4
            on_r3 = Stream(c3.subscribe(SubscribeToTaskRequest(id=task_id)))
            await on_r3.until(1)
        finally:
            release(holds, task_id)
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(origin.reading, on_r2.reading, on_r3.reading)

    assert state_of(origin.events[-1]) == TaskState.TASK_STATE_COMPLETED
    expected = live(origin.events)
    for followed in (on_r2.events, on_r3.events):
        assert followed[0].HasField("task"), "a subscription starts with the task as it is"
        assert followed[0].task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        got = live(followed)
        assert len(got) >= 2, "live events reached the other replica"
        assert got == expected[-len(got) :], "every live event after the snapshot, in order, none twice"
        assert state_of(followed[-1]) == TaskState.TASK_STATE_COMPLETED
        snapshot = followed[0].task
        before = expected[: len(expected) - len(got)]
        if before:  # no gap: the snapshot is the task as of the event just before the first one streamed
            last = StreamResponse.FromString(before[-1])
            if last.HasField("status_update"):
                assert snapshot.status.message.message_id == last.status_update.status.message.message_id


@pytest.mark.parametrize("agent", ["echo", "ticker"])
@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_a_cancel_on_another_replica_stops_the_agent_where_it_runs(
    replicas: list[Org], cluster_dsn: str, binding: Binding, agent: str
) -> None:
    r1, _, r3 = replicas
    async with a2a_client(r1.agent_url(agent), binding) as c1, a2a_client(r3.agent_url(agent), binding) as c3:
        task_id, origin = await start_stream(c1, LONGER[agent])
        await origin.until(2)
        async with asyncio.timeout(WAIT_S):
            answer = await c3.cancel_task(CancelTaskRequest(id=task_id))
            await origin.reading  # R1's own stream ends: its agent stopped

    assert answer.status.state == TaskState.TASK_STATE_CANCELED
    assert state_of(origin.events[-1]) == TaskState.TASK_STATE_CANCELED, "the run on R1 ended canceled"
    assert not [e for e in origin.events if state_of(e) == TaskState.TASK_STATE_COMPLETED]
    assert await stored_state(cluster_dsn, task_id) == TaskState.TASK_STATE_CANCELED
