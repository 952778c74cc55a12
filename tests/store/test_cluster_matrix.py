"""The rest of the cross-replica matrix, on three ``python -m gateway serve`` replicas sharing one PostgreSQL.

An answer to a task waiting for input, sent to R2, continues the task R1 started; a cancel on R3
of a task waiting for input on R1 ends it CANCELED everywhere, and its subscribers on R1 and R2
are told at once; a push config set on R2 fires for
the events R1 produces; an agent on the SDK's path whose first event is a status update (not a
``Task``) is followed live from the other replicas too. On every binding, through the SDK's own
clients, for an agent on the runner (``(call, emit)``) and one on the SDK's path (an executor).
Over MCP (MCP's client, both revisions): a run started on R1 is read, polled, followed through
its ``run://`` resource and canceled from R2 and R3.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import httpx2
import pytest
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskPushNotificationConfig,
    TaskState,
)
from a2a.utils.errors import A2AError
from mcp.client import Client as McpClient
from mcp.client import ClientRequestContext
from mcp.client.streamable_http import streamable_http_client
from mcp_types import ElicitRequestParams, ElicitResult, ResourceUpdatedNotification

from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, user_message
from tests.federation.support import Org, org, python_agent, workflow
from tests.push.receiver import PushReceiver, push_receiver
from tests.store.cluster_agents import HOLDS_ENV, release
from tests.store.test_cluster_replicas import (
    WAIT_S,
    Stream,
    live,
    start_stream,
    state_of,
    stored_state,
)

pytest_plugins = ["tests.store.test_cluster_replicas"]  # cluster_dsn: a schema of the module's own; holds
STREAMING = [b for b in BINDINGS if b.streaming]
UNARY = [b for b in BINDINGS if not b.streaming]
pytestmark = pytest.mark.skipif(not os.environ.get("SWITCHBOARD_TEST_PG_DSN"), reason="needs PostgreSQL")

ASKING = {"asker": "ask", "stepper": "ask", "echo": "ask: who is there?"}
ANSWERED = {"asker": "hello ada", "stepper": "hello ada", "echo": "You answered: ada"}
WORKING = {"held-ticker": "10", "held-stepper": "10", "held-echo": "wait: 2.5"}  # each step held until released


@pytest.fixture(scope="module")
def replicas(cluster_dsn: str, holds: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Org]]:
    """R1, R2, R3 on one database; push URLs may reach the test's loopback receiver."""
    root = tmp_path_factory.mktemp("matrix")
    env = {
        "SWITCHBOARD_DATABASE_URL": cluster_dsn,
        "SWITCHBOARD_ALLOW_PRIVATE_PUSH_URLS": "true",
        "SWITCHBOARD_MCP_TOOLS": "echo",
        HOLDS_ENV: str(holds),
    }
    orgs = [org(f"r{n}", root, **env) for n in (1, 2, 3)]
    for replica in orgs:
        folder = replica.folder / "agents"
        python_agent(folder, "echo", "gateway.agents.echo:EchoExecutor")
        python_agent(folder, "ticker", "tests.store.cluster_agents:ticker")
        python_agent(folder, "asker", "tests.store.cluster_agents:asker")
        python_agent(folder, "stepper", "tests.store.cluster_agents:StepperExecutor")
        python_agent(folder, "held-echo", "tests.store.cluster_agents:HeldEchoExecutor")
        python_agent(folder, "held-ticker", "tests.store.cluster_agents:held_ticker")
        python_agent(folder, "held-stepper", "tests.store.cluster_agents:HeldStepperExecutor")
        workflow(folder, "pipeline", "sequential", ["ticker", "ticker"])
    try:
        for replica in orgs:
            replica.start()
        for replica in orgs:
            replica.wait_ready()
        yield orgs
    finally:
        for replica in orgs:
            replica.stop()


async def waiting_task(replica: Org, agent: str, binding: Binding) -> Task:
    """A task of ``agent`` started on ``replica`` and now waiting for input."""
    async with a2a_client(replica.agent_url(agent), binding) as client:
        task = await sent(client, ASKING[agent])
    assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    return task


async def sent(client, text: str, task: Task | None = None) -> Task:  # type: ignore[no-untyped-def]
    """Send ``text`` (an answer to ``task`` when given) and read the task its turn leaves."""
    message = user_message(text, task_id=task.id if task else "", context_id=task.context_id if task else "")
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=message)):
            task_id = event.task.id if event.HasField("task") else event.status_update.task_id
    return await client.get_task(GetTaskRequest(id=task_id))


@pytest.mark.parametrize("agent", sorted(ASKING))
@pytest.mark.parametrize("binding", UNARY, ids=lambda b: b.id)
async def test_an_answer_on_another_replica_continues_the_task(
    replicas: list[Org],
    cluster_dsn: str,
    binding: Binding,
    agent: str,
) -> None:
    r1, r2, r3 = replicas
    task = await waiting_task(r1, agent, binding)
    async with a2a_client(r2.agent_url(agent), binding) as c2, a2a_client(r3.agent_url(agent), binding) as c3:
        answered = await sent(c2, "ada", task)
        seen_on_r3 = await c3.get_task(GetTaskRequest(id=task.id))

    assert answered.id == task.id and answered.context_id == task.context_id
    assert answered.status.state == TaskState.TASK_STATE_COMPLETED
    assert ANSWERED[agent] in "".join(p.text for p in answered.status.message.parts) + "".join(
        p.text for a in answered.artifacts for p in a.parts
    )
    assert seen_on_r3.status.state == TaskState.TASK_STATE_COMPLETED
    assert "ada" in [p.text for m in seen_on_r3.history for p in m.parts], "the answer is in the task's history"
    assert await stored_state(cluster_dsn, task.id) == TaskState.TASK_STATE_COMPLETED


@pytest.mark.parametrize("agent", sorted(ASKING))
@pytest.mark.parametrize("binding", UNARY, ids=lambda b: b.id)
async def test_a_cancel_on_another_replica_ends_a_task_waiting_for_input(
    replicas: list[Org],
    cluster_dsn: str,
    binding: Binding,
    agent: str,
) -> None:
    r1, r2, r3 = replicas
    task = await waiting_task(r1, agent, binding)
    async with (
        push_receiver() as receiver,
        a2a_client(r1.agent_url(agent), binding) as c1,
        a2a_client(r2.agent_url(agent), binding) as c2,
        a2a_client(r3.agent_url(agent), binding) as c3,
    ):
        config = TaskPushNotificationConfig(task_id=task.id, id="hook", url=receiver.url, token="tok")
        await c2.create_task_push_notification_config(config)
        async with asyncio.timeout(WAIT_S):
            answer = await c3.cancel_task(CancelTaskRequest(id=task.id))
        seen_on_r1 = await c1.get_task(GetTaskRequest(id=task.id))
        with pytest.raises(A2AError):  # over: an answer now is refused, on the replica that started it too
            await sent(c1, "ada", task)
        await receiver.wait_for(lambda r: _reached(r, task.id, "TASK_STATE_CANCELED"))

    assert answer.status.state == TaskState.TASK_STATE_CANCELED
    assert seen_on_r1.status.state == TaskState.TASK_STATE_CANCELED
    assert await stored_state(cluster_dsn, task.id) == TaskState.TASK_STATE_CANCELED


@pytest.mark.parametrize("agent", sorted(WORKING))
@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_a_push_config_set_on_another_replica_fires_for_events_produced_on_the_first(
    replicas: list[Org], holds: Path, binding: Binding, agent: str
) -> None:
    r1, r2, _ = replicas
    async with (
        push_receiver() as receiver,
        a2a_client(r1.agent_url(agent), binding) as c1,
        a2a_client(r2.agent_url(agent), binding) as c2,
    ):
        task_id, origin = await start_stream(c1, WORKING[agent])  # the agent holds before its first step
        try:
            config = TaskPushNotificationConfig(task_id=task_id, id="hook", url=receiver.url, token="tok")
            await c2.create_task_push_notification_config(config)
        finally:
            release(holds, task_id)  # every event from here on is produced once the config is in place
        async with asyncio.timeout(WAIT_S):
            await origin.reading
        await receiver.wait_for(lambda r: _reached(r, task_id, "TASK_STATE_COMPLETED"))

    assert state_of(origin.events[-1]) == TaskState.TASK_STATE_COMPLETED
    assert all(d.token == "tok" for d in receiver.deliveries)


def _reached(receiver: PushReceiver, task_id: str, state: str) -> bool:
    """Whether ``receiver`` was told task ``task_id`` reached ``state``."""
    for delivery in receiver.accepted:
        payload = next(iter(delivery.body.values()))
        if payload.get("taskId", payload.get("id")) == task_id and delivery.kind()[1] == state:
            return True
    return False


@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_an_answers_turn_on_another_replica_is_followed_live_from_the_others(
    replicas: list[Org], binding: Binding
) -> None:
    """The answer's turn runs on R2 (on the SDK's path: its first event is a status update); R1 and R3 follow it."""
    r1, r2, r3 = replicas
    agent = "stepper"
    task = await waiting_task(r1, agent, binding)
    async with (
        a2a_client(r1.agent_url(agent), binding) as c1,
        a2a_client(r2.agent_url(agent), binding) as c2,
        a2a_client(r3.agent_url(agent), binding) as c3,
    ):
        message = user_message("ada", task_id=task.id, context_id=task.context_id)
        origin = Stream(c2.send_message(SendMessageRequest(message=message)))
        await origin.until(1)
        on_r1 = Stream(c1.subscribe(SubscribeToTaskRequest(id=task.id)))
        await origin.until(3)  # R3 joins mid-turn
        on_r3 = Stream(c3.subscribe(SubscribeToTaskRequest(id=task.id)))
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(origin.reading, on_r1.reading, on_r3.reading)

    expected = live(origin.events)
    assert state_of(origin.events[-1]) == TaskState.TASK_STATE_COMPLETED
    for followed in (on_r1.events, on_r3.events):
        assert followed[0].HasField("task"), "a subscription starts with the task as it is"
        assert followed[0].task.status.state == TaskState.TASK_STATE_WORKING
        got = live(followed)
        assert len(got) >= 2, "live events reached the other replica"
        assert got == expected[-len(got) :], "every live event after the snapshot, in order, none twice"
        assert state_of(followed[-1]) == TaskState.TASK_STATE_COMPLETED


MCP_MODES = ["legacy", "2026-07-28"]
RUN_TEXT = "400"  # the ticker: about 100 s, far longer than following it takes; the test cancels it


async def mcp_call(client: McpClient, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content or {}


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
@pytest.mark.parametrize("mode", MCP_MODES, ids=["2025", "2026"])
async def test_an_mcp_run_on_one_replica_is_read_followed_and_canceled_from_the_others(
    replicas: list[Org], cluster_dsn: str, mode: str
) -> None:
    r1, r2, r3 = replicas
    updated = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updated.set()

    def client(replica: Org, **options: Any) -> McpClient:
        return McpClient(f"{replica.url}/mcp", mode=mode, read_timeout_seconds=60, **options)

    async with client(r1) as c1, client(r2, message_handler=on_message) as c2, client(r3) as c3:
        with anyio.fail_after(WAIT_S):
            run_id = (await mcp_call(c1, "start_run", agent="ticker", text=RUN_TEXT))["run_id"]
            uri = f"run://{run_id}"
            polled = await mcp_call(c2, "get_run", run_id=run_id)
            read = json.loads((await c3.read_resource(uri)).contents[0].text)
            if mode == "legacy":  # a 2025 session on R2 subscribes; R1 runs the task
                await c2.subscribe_resource(uri)
                await updated.wait()
            else:
                async with c2.listen(resource_subscriptions=[uri]) as subscription:
                    event = await anext(aiter(subscription))
                    assert event.uri == uri
            followed = await mcp_call(c2, "get_run", run_id=run_id)
            canceled = await mcp_call(c3, "cancel_run", run_id=run_id)
            after = await mcp_call(c1, "get_run", run_id=run_id)

    assert polled["state"] == "working" and read["state"] == "working"
    assert followed["progress"]["message"].startswith("tick"), "progress is shown on any replica"
    assert canceled["state"] == "canceled" and after["state"] == "canceled"
    assert await stored_state(cluster_dsn, run_id) == TaskState.TASK_STATE_CANCELED


class RoundRobin(httpx2.AsyncBaseTransport):
    """A load balancer without affinity: each HTTP request goes to the next replica in turn."""

    def __init__(self, replicas: list[Org]) -> None:
        self._ports = itertools.cycle([replica.port for replica in replicas])
        self._inner = httpx2.AsyncHTTPTransport()
        self.sent = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Forward ``request`` to the next replica."""
        request.url = request.url.copy_with(port=next(self._ports))
        self.sent += 1
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the connections."""
        await self._inner.aclose()


class Answer:
    """An elicitation callback that answers every question with ``ada``."""

    async def __call__(self, ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        return ElicitResult(action="accept", content={"answer": "ada"})


async def test_a_2026_client_behind_a_balancer_without_affinity_is_served_by_any_replica(replicas: list[Org]) -> None:
    """Every request on another replica: a question's answer (its sealed requestState) is unsealed by the next one."""
    balancer = RoundRobin(replicas)
    async with httpx2.AsyncClient(transport=balancer, timeout=60) as http:
        transport = streamable_http_client(f"{replicas[0].url}/mcp", http_client=http)
        async with McpClient(transport, mode="2026-07-28", elicitation_callback=Answer()) as client:
            with anyio.fail_after(WAIT_S):
                asked = await client.call_tool("echo", {"text": "ask: who is there?"})
                run_id = (await mcp_call(client, "start_run", agent="ticker", text="4"))["run_id"]
                polled = [await mcp_call(client, "get_run", run_id=run_id) for _ in replicas]
    outcome = asked.structured_content or {}
    assert outcome["state"] == "completed", outcome
    assert "You answered: ada" in json.dumps(outcome)
    assert {p["run_id"] for p in polled} == {run_id}
    assert balancer.sent >= 2 * len(replicas), "the requests went round every replica"


async def test_a_2025_session_is_known_only_to_the_replica_that_made_it(replicas: list[Org]) -> None:
    """2025-11-25 sessions live in the replica that began them: a balancer must keep a session on its replica.

    (What the documentation says: 2025 clients need session affinity; 2026-07-28 clients do not.)
    """
    r1, r2, _ = replicas
    accept = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
    }
    listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    async with httpx.AsyncClient(timeout=10) as http:
        began = await http.post(f"{r1.url}/mcp", json=hello, headers=accept)
        session = {**accept, "Mcp-Session-Id": began.headers.get("mcp-session-id", "")}
        ready = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        await http.post(f"{r1.url}/mcp", json=ready, headers=session)
        here = await http.post(f"{r1.url}/mcp", json=listing, headers=session)
        elsewhere = await http.post(f"{r2.url}/mcp", json=listing, headers=session)
    assert began.status_code == 200 and session["Mcp-Session-Id"], "the 2025 handshake made a session"
    assert here.status_code == 200
    assert elsewhere.status_code == 404, "another replica does not know the session (the client must start anew)"


@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_a_cancel_on_another_replica_reaches_a_workflow_and_its_steps(
    replicas: list[Org], cluster_dsn: str, binding: Binding
) -> None:
    r1, r2, r3 = replicas
    async with (
        a2a_client(r1.agent_url("pipeline"), binding) as c1,
        a2a_client(r2.agent_url("pipeline"), binding) as c2,
        a2a_client(r3.agent_url("pipeline"), binding) as c3,
    ):
        task_id, origin = await start_stream(c1, "400")  # the first step ticks for about 100 s: it is canceled first
        await origin.until(3)  # the first step is working
        on_r2 = Stream(c2.subscribe(SubscribeToTaskRequest(id=task_id)))
        await on_r2.until(2)
        async with asyncio.timeout(WAIT_S):
            answer = await c3.cancel_task(CancelTaskRequest(id=task_id))
            await origin.reading
            await on_r2.reading
    steps = await children(cluster_dsn, task_id)

    assert answer.status.state == TaskState.TASK_STATE_CANCELED
    assert state_of(origin.events[-1]) == TaskState.TASK_STATE_CANCELED, "R1's own stream is told the end"
    assert await stored_state(cluster_dsn, task_id) == TaskState.TASK_STATE_CANCELED
    assert state_of(on_r2.events[-1]) == TaskState.TASK_STATE_CANCELED, "a follower on R2 is told the end"
    assert steps, "the workflow's first step ran as a child task"
    assert set(steps.values()) == {TaskState.TASK_STATE_CANCELED}, "the step running on R1 was canceled too"


async def children(dsn: str, parent: str) -> dict[str, int]:
    """The states of the ticker tasks that ran as steps of workflow task ``parent`` (by their context)."""
    conn = await asyncpg.connect(dsn)
    try:
        context = await conn.fetchval("SELECT context_id FROM tasks WHERE id = $1", parent)
        rows = await conn.fetch("SELECT id, state FROM tasks WHERE agent = 'ticker' AND context_id = $1", context)
        return {row["id"]: int(row["state"]) for row in rows}
    finally:
        await conn.close()


ENDED_WITHIN_S = 5.0


@pytest.mark.parametrize("agent", sorted(ASKING))
@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_subscribers_on_every_replica_are_told_a_task_waiting_for_input_was_canceled_on_another(
    replicas: list[Org], cluster_dsn: str, binding: Binding, agent: str
) -> None:
    """A task parked waiting for input on R1, subscribed to on R1 and R2, canceled on R3: both are told promptly."""
    r1, r2, r3 = replicas
    task = await waiting_task(r1, agent, binding)
    async with (
        a2a_client(r1.agent_url(agent), binding) as c1,
        a2a_client(r2.agent_url(agent), binding) as c2,
        a2a_client(r3.agent_url(agent), binding) as c3,
    ):
        on_r1 = Stream(c1.subscribe(SubscribeToTaskRequest(id=task.id)))
        on_r2 = Stream(c2.subscribe(SubscribeToTaskRequest(id=task.id)))
        await on_r1.until(1)
        await on_r2.until(1)
        async with asyncio.timeout(WAIT_S):
            answer = await c3.cancel_task(CancelTaskRequest(id=task.id))
        async with asyncio.timeout(ENDED_WITHIN_S):
            await asyncio.gather(on_r1.reading, on_r2.reading)

    assert answer.status.state == TaskState.TASK_STATE_CANCELED
    for followed in (on_r1.events, on_r2.events):
        assert followed[0].HasField("task"), "a subscription starts with the task as it is"
        assert followed[0].task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert state_of(followed[-1]) == TaskState.TASK_STATE_CANCELED, "the subscriber is told the end"
    assert await stored_state(cluster_dsn, task.id) == TaskState.TASK_STATE_CANCELED


@pytest.mark.parametrize("binding", STREAMING, ids=lambda b: b.id)
async def test_a_task_parked_on_one_replica_and_answered_on_another_is_followed_from_the_first(
    replicas: list[Org], binding: Binding
) -> None:
    """Parked on R1 waiting for input (the SDK's handler holds it there), answered on R2 twice (it asks again, then
    completes): subscribers on R1, from before the answers and from between them, start from the task as stored,
    not from R1's stale copy, and are told each turn to the task's end."""
    r1, r2, _ = replicas
    agent = "stepper"
    task = await waiting_task(r1, agent, binding)
    async with a2a_client(r1.agent_url(agent), binding) as c1, a2a_client(r2.agent_url(agent), binding) as c2:
        early = Stream(c1.subscribe(SubscribeToTaskRequest(id=task.id)))
        await early.until(1)
        again = await sent(c2, "ask", task)  # R2's turn asks again: waiting, now held by R2
        late = Stream(c1.subscribe(SubscribeToTaskRequest(id=task.id)))
        await late.until(1)
        done = await sent(c2, "ada", task)
        async with asyncio.timeout(ENDED_WITHIN_S):
            await asyncio.gather(early.reading, late.reading)

    assert again.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    snapshot = late.events[0].task
    assert snapshot.status == again.status, "R1 starts from R2's question, not from its own copy"
    assert [m.message_id for m in snapshot.history] == [m.message_id for m in again.history]
    for followed in (early, late):
        assert state_of(followed.events[-1]) == TaskState.TASK_STATE_COMPLETED, "R1's subscriber is told the end"
    states = [state_of(e) for e in early.events]
    assert states.count(TaskState.TASK_STATE_INPUT_REQUIRED) == 2, "the early one saw R2's question too"


_WAITING_BEHIND = (  # sessions saving a task, waiting (directly or behind another) on a lock the session $1 holds
    "SELECT count(*) FROM pg_stat_activity a WHERE a.query LIKE 'INSERT INTO tasks%' AND ($1 = ANY(pg_blocking_pids"
    "(a.pid)) OR EXISTS (SELECT 1 FROM pg_stat_activity b WHERE b.pid = ANY(pg_blocking_pids(a.pid)) "
    "AND $1 = ANY(pg_blocking_pids(b.pid))))"
)


async def until_waiting(conn: asyncpg.Connection, locker: int, count: int, done: asyncio.Future[Any]) -> None:
    """Wait (bounded) until ``count`` task saves wait on the lock session ``locker`` holds, or ``done`` is."""
    async with asyncio.timeout(WAIT_S):
        while not done.done():  # other processes' sessions: polled
            if await conn.fetchval(_WAITING_BEHIND, locker) >= count:
                return
            await asyncio.sleep(0.01)


async def test_a_cancel_while_an_answers_turn_starts_on_another_replica_ends_the_task_canceled(
    replicas: list[Org], cluster_dsn: str
) -> None:
    """The answer's turn starts on R2 before R2 saved the task (R1 parked it); a cancel on R3 reaches R1.

    The test holds the task's row locked, so R2's first save waits; the cancel is sent then, and
    taken by R1, whose save of CANCELED waits behind R2's. The caller is told CANCELED: so it stays.
    """
    r1, r2, r3 = replicas
    binding = UNARY[0]
    task = await waiting_task(r1, "stepper", binding)
    conn, locker = await asyncpg.connect(cluster_dsn), await asyncpg.connect(cluster_dsn)
    try:
        async with (
            a2a_client(r2.agent_url("stepper"), binding) as c2,
            a2a_client(r3.agent_url("stepper"), binding) as c3,
        ):
            await locker.execute("BEGIN")
            await locker.execute("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", task.id)
            pid = await locker.fetchval("SELECT pg_backend_pid()")
            answered = asyncio.ensure_future(sent(c2, "ada", task))
            await until_waiting(conn, pid, 1, answered)  # R2's turn started, its first save waits
            cancel = asyncio.ensure_future(c3.cancel_task(CancelTaskRequest(id=task.id)))
            await until_waiting(conn, pid, 2, cancel)  # and R1's save of CANCELED behind it
            await locker.execute("ROLLBACK")
            async with asyncio.timeout(WAIT_S):
                answer = await cancel
                with contextlib.suppress(A2AError):
                    await answered  # the turn on R2 is over, however it ended
    finally:
        await conn.close()
        await locker.close()

    assert answer.status.state == TaskState.TASK_STATE_CANCELED
    assert await stored_state(cluster_dsn, task.id) == TaskState.TASK_STATE_CANCELED, "told CANCELED: it stays"
