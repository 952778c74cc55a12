"""Webhook triggers: a signed request starts one run (agent or workflow); bad signatures and replays do not."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from a2a.types.a2a_pb2 import ListTasksRequest, TaskState
from prometheus_client.parser import text_string_to_metric_families

from gateway.store.database import Database
from gateway.testing import RunningGateway, running_gateway
from gateway.triggers.ledger import TriggerLedger
from tests.conftest import make_settings
from tests.hosting import gated_agents
from tests.hosting.gated_agents import MODULE as GATED
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import (
    SECRET,
    ended,
    jsonrpc_client,
    metadata,
    post_webhook,
    signed_headers,
    with_triggers,
)

HOOK = {"kind": "webhook", "name": "hook", "secret_env": "TEST_HOOK_SECRET"}


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    log = str(tmp_path / "calls.jsonl")
    agents = agents_folder(
        tmp_path / "agents",
        [
            with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=log), HOOK),
            with_triggers(python_agent("other", f"{MODULE}:inbox", log=str(tmp_path / "other.jsonl"))),
            with_triggers(workflow("pipeline", "sequential", ["inbox", "other"]), HOOK),
        ],
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as client:
        yield client


def ledger(gateway: RunningGateway) -> TriggerLedger:
    db: Database = gateway.app.state.gateway.db
    return TriggerLedger(db)


async def test_a_signed_webhook_starts_a_run_that_records_what_started_it(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    answer = await post_webhook(http, "inbox", "hook", {"order": 7}, event_id="evt-1")

    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["duplicate"] is False
    async with jsonrpc_client(gateway, "inbox") as client:
        task = await ended(client, body["taskId"])
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.context_id == body["contextId"]
    trigger = metadata(task)["trigger"]
    assert (trigger["kind"], trigger["name"], trigger["eventId"]) == ("webhook", "hook", "evt-1")
    assert "receivedAt" in trigger
    assert [c["data"] for c in calls(tmp_path / "calls.jsonl")] == [[{"order": 7}]]


async def test_a_replayed_event_id_answers_with_the_original_run(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    first = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-replayed")
    again = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-replayed")

    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json() == {**first.json(), "duplicate": True}
    async with jsonrpc_client(gateway, "inbox") as client:
        await ended(client, first.json()["taskId"])
        listed = await client.list_tasks(ListTasksRequest())
    assert [t.id for t in listed.tasks] == [first.json()["taskId"]]
    assert len(calls(tmp_path / "calls.jsonl")) == 1


async def test_a_workflow_started_by_a_webhook_runs_its_steps_as_child_tasks(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    answer = await post_webhook(http, "pipeline", "hook", "review the release notes", event_id="evt-wf")

    assert answer.status_code == 202, answer.text
    async with jsonrpc_client(gateway, "pipeline") as client:
        task = await ended(client, answer.json()["taskId"])
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    data = metadata(task)
    assert data["trigger"]["eventId"] == "evt-wf"
    steps = data["switchboard"]["steps"]
    assert [(s["agent"], s["state"]) for s in steps] == [("inbox", "completed"), ("other", "completed")]
    async with jsonrpc_client(gateway, "inbox") as child_client:
        child = await ended(child_client, steps[0]["task_id"])
    assert child.status.state == TaskState.TASK_STATE_COMPLETED
    assert calls(tmp_path / "calls.jsonl")[0]["text"] == "review the release notes"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda h: {**h, "webhook-signature": "v1,AAAA"}, id="bad-signature"),
        pytest.param(lambda h: {k: v for k, v in h.items() if k != "webhook-signature"}, id="no-signature"),
        pytest.param(lambda h: {**h, "webhook-id": "evt-other"}, id="id-not-signed"),
    ],
)
async def test_a_request_whose_signature_does_not_verify_is_refused_401(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path, tamper: object
) -> None:
    body = b'{"steal": true}'
    headers = tamper(signed_headers(body, "evt-forged"))  # type: ignore[operator]

    answer = await http.post("/triggers/inbox/hook", content=body, headers=headers)

    assert answer.status_code == 401
    assert answer.json()["error"]["reason"] == "bad-webhook-signature"
    assert calls(tmp_path / "calls.jsonl") == []
    assert await ledger(gateway).entries("inbox", "hook") == []


async def test_a_request_signed_with_another_secret_is_refused(
    gateway: RunningGateway, http: httpx.AsyncClient
) -> None:
    answer = await post_webhook(http, "inbox", "hook", {"n": 1}, secret="whsec_b3RoZXItc2VjcmV0")

    assert answer.status_code == 401
    assert "no signature" in answer.json()["error"]["message"]


async def test_a_captured_request_replayed_after_the_window_is_refused(
    gateway: RunningGateway, http: httpx.AsyncClient
) -> None:
    answer = await post_webhook(http, "inbox", "hook", {"n": 1}, timestamp=int(time.time()) - 3600)

    assert answer.status_code == 401
    assert "tolerance" in answer.json()["error"]["message"]


async def test_a_body_that_is_not_the_json_it_claims_is_dead_lettered_once(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    body = b"{not json"
    for _ in range(2):
        answer = await http.post("/triggers/inbox/hook", content=body, headers=signed_headers(body, "evt-bad"))
        assert answer.status_code == 422
        assert "not JSON" in answer.json()["error"]["message"]

    [entry] = await ledger(gateway).entries("inbox", "hook")
    assert (entry.key.event_id, entry.state, entry.task_id) == ("evt-bad", "dead", "")
    assert "not JSON" in entry.reason
    assert calls(tmp_path / "calls.jsonl") == []


async def test_an_agent_without_that_trigger_answers_404(gateway: RunningGateway, http: httpx.AsyncClient) -> None:
    answer = await post_webhook(http, "other", "hook", {"n": 1})

    assert answer.status_code == 404
    error = answer.json()["error"]
    assert (error["code"], error["status"], error["reason"]) == (404, "NOT_FOUND", "unknown-trigger")
    assert "no webhook or push trigger" in error["message"]


async def test_metrics_count_trigger_events_by_outcome(gateway: RunningGateway, http: httpx.AsyncClient) -> None:
    before = await trigger_counts(http)
    await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-counted")
    await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-counted")
    await post_webhook(http, "inbox", "hook", {"n": 1}, secret="whsec_b3RoZXItc2VjcmV0")
    after = await trigger_counts(http)

    moved = {outcome: after.get(outcome, 0) - before.get(outcome, 0) for outcome in after}
    assert moved == {**moved, "started": 1, "repeat": 1, "refused": 1}


async def trigger_counts(http: httpx.AsyncClient) -> dict[str, float]:
    text = (await http.get("/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if sample.name == "switchboard_trigger_events_total" and labels.get("agent") == "inbox":
                counts[labels["outcome"]] = sample.value
    return counts


async def test_an_agent_at_its_cap_answers_429_and_the_event_runs_when_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    gated_agents.reset()
    busy = python_agent("busy", f"{GATED}:gated", gate_name="busy")
    agents = agents_folder(
        tmp_path / "agents", [{**with_triggers(busy, HOOK), "admission": {"max_concurrent": 1, "retry_after_s": 1.5}}]
    )
    async with (
        running_gateway(make_settings(tmp_path, agents=agents)) as gateway,
        httpx.AsyncClient(base_url=gateway.url, timeout=20) as http,
    ):
        first = await post_webhook(http, "busy", "hook", "first", event_id="evt-first")
        refused = await post_webhook(http, "busy", "hook", "second", event_id="evt-second")
        entries_while_busy = await ledger(gateway).entries("busy", "hook")
        gated_agents.gate("busy").set()
        async with jsonrpc_client(gateway, "busy") as client:
            await ended(client, first.json()["taskId"])
        again = await post_webhook(http, "busy", "hook", "second", event_id="evt-second")
        async with jsonrpc_client(gateway, "busy") as client:
            second = await ended(client, again.json()["taskId"])
    gated_agents.reset()

    assert first.status_code == 202
    assert refused.status_code == 429 and refused.headers["retry-after"] == "2", "the hint of 1.5 s, rounded up"
    assert refused.json()["error"]["reason"] == "agent-busy"
    assert [e.key.event_id for e in entries_while_busy] == ["evt-first"], "the refused event was not recorded"
    assert again.status_code == 202 and second.status.state == TaskState.TASK_STATE_COMPLETED
