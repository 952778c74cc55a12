"""Work queues on /metrics: a run's items by event and their wait in its queue (the work-queue pattern, any
store), and the shared work items of ``distribute: true`` on PostgreSQL, counted by the replicas that post,
claim and finish them, with the time from posting to claim."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from gateway.hosting.work_items import SLOTS_PER_AGENT
from gateway.testing import running_gateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client, send
from tests.conftest import make_settings
from tests.federation.support import Org
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.store.test_cluster_work_queue import cluster_dsn, run_queue, start_replicas
from tests.telemetry.test_operating import Samples, samples, value

__all__ = ["cluster_dsn", "start_replicas"]  # fixtures, used by name
JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
ITEMS = "switchboard_work_queue_items_total"
WAIT = "switchboard_work_queue_wait_seconds_count"


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_a_work_queues_items_are_counted_by_event_and_their_wait_is_measured(tmp_path: Path) -> None:
    files = [
        python_agent("broken", "fail"),
        workflow("fine-batch", "work-queue", ["echo"], options={"concurrency": 1}),
        workflow("bad-batch", "work-queue", ["broken"], options={"max_attempts": 2}, limits={"retries": 0}),
    ]
    agents = agents_folder(tmp_path / "agents", files, bundled=["echo"])
    async with (
        running_gateway(make_settings(tmp_path, agents=agents)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as http,
    ):
        before = samples((await http.get("/metrics")).text)
        for name, text in (("fine-batch", "one\ntwo\nthree"), ("bad-batch", "doomed")):
            async with a2a_client(gateway.agent_url(name), JSONRPC) as client:
                await send(client, text)
        after = samples((await http.get("/metrics")).text)

    fine = {event: moved(before, after, ITEMS, workflow="fine-batch", event=event) for event in ("queued", "claimed")}
    assert fine == {"queued": 3, "claimed": 3}
    assert moved(before, after, ITEMS, workflow="fine-batch", event="completed") == 3
    assert moved(before, after, ITEMS, workflow="fine-batch", event="dead_lettered") == 0
    assert moved(before, after, WAIT, workflow="fine-batch") == 3
    events = ("queued", "claimed", "requeued", "completed", "dead_lettered")
    bad = {event: moved(before, after, ITEMS, workflow="bad-batch", event=event) for event in events}
    assert bad == {"queued": 1, "claimed": 2, "requeued": 1, "completed": 0, "dead_lettered": 1}
    assert moved(before, after, WAIT, workflow="bad-batch") == 2


@pytest.mark.skipif(not os.environ.get("SWITCHBOARD_TEST_PG_DSN"), reason="needs PostgreSQL")
async def test_shared_work_items_are_counted_where_posted_claimed_and_finished(
    start_replicas: Callable[[int], list[Org]],
) -> None:
    replicas = start_replicas(2)
    labels = [f"m{n}-{uuid.uuid4().hex[:6]}" for n in range(2 * SLOTS_PER_AGENT)]
    async with httpx.AsyncClient(timeout=30) as http:
        before = [samples((await http.get(f"{r.url}/metrics")).text) for r in replicas]
        run = await run_queue(replicas[0], labels, 5)
        after = [samples((await http.get(f"{r.url}/metrics")).text) for r in replicas]

    def total(name: str, **labels: str) -> float:
        return sum(moved(b, a, name, **labels) for b, a in zip(before, after, strict=True))

    assert run.state == 3, run.progress  # completed
    posted = "switchboard_work_items_total"
    assert moved(before[0], after[0], posted, agent="probe-a", event="posted") == len(labels)
    assert moved(before[1], after[1], posted, agent="probe-a", event="posted") == 0, "only the run's replica posts"
    assert total(posted, agent="probe-a", event="claimed") == len(labels)
    assert total(posted, agent="probe-a", event="finished") == len(labels)
    claims = [moved(b, a, posted, agent="probe-a", event="claimed") for b, a in zip(before, after, strict=True)]
    waits = [
        moved(b, a, "switchboard_work_item_claim_seconds_count", agent="probe-a")
        for b, a in zip(before, after, strict=True)
    ]
    assert waits == claims, "each claim's wait is measured on the replica that claimed it"
    assert moved(before[0], after[0], ITEMS, workflow="queue", event="completed") == len(labels)
