"""The trigger ledger's crash windows: a claim whose process died before or after its task was saved."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.testing import RunningGateway, running_gateway
from gateway.triggers.ledger import CLAIM_STALE_S, EventKey, TriggerLedger, context_for
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent
from tests.push.conftest import fresh_pg_database
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import SECRET, ended, jsonrpc_client, post_webhook, signed_headers, with_triggers

HOOK = {"kind": "webhook", "name": "hook", "secret_env": "TEST_HOOK_SECRET"}


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningGateway]:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    inbox = with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=str(tmp_path / "calls.jsonl")), HOOK)
    agents = agents_folder(tmp_path / "agents", [inbox])
    async with running_gateway(make_settings(tmp_path, agents=agents)) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=20) as client:
        yield client


def ledger(gateway: RunningGateway) -> TriggerLedger:
    return TriggerLedger(gateway.app.state.gateway.db)


async def test_a_claim_whose_task_was_saved_before_the_crash_is_linked_not_run_again(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    first = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-saved")
    async with jsonrpc_client(gateway, "inbox") as client:
        await ended(client, first.json()["taskId"])
    # As a process killed between the task's save and the link leaves it:
    key = EventKey("inbox", "hook", "evt-saved")
    await ledger(gateway).db.write(
        "UPDATE trigger_events SET state = 'claimed', task_id = '' WHERE event_id = ?", (key.event_id,)
    )

    again = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-saved")

    assert again.status_code == 200 and again.json()["taskId"] == first.json()["taskId"]
    entry = await ledger(gateway).get(key)
    assert entry is not None and (entry.state, entry.task_id) == ("started", first.json()["taskId"])
    assert len(calls(tmp_path / "calls.jsonl")) == 1


async def test_a_stale_claim_without_a_task_is_taken_over_and_run(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    key = EventKey("inbox", "hook", "evt-stale")
    await ledger(gateway).claim(key, "", b"{}")
    stale_ns = time.time_ns() - int((CLAIM_STALE_S + 5) * 1e9)
    await ledger(gateway).db.write(
        "UPDATE trigger_events SET claimed_ns = ? WHERE event_id = ?", (stale_ns, key.event_id)
    )

    answer = await post_webhook(http, "inbox", "hook", {"n": 2}, event_id="evt-stale")

    assert answer.status_code == 202, answer.text
    assert answer.json()["contextId"] == context_for("inbox", "hook", "evt-stale")
    async with jsonrpc_client(gateway, "inbox") as client:
        await ended(client, answer.json()["taskId"])
    assert [c["data"] for c in calls(tmp_path / "calls.jsonl")] == [[{"n": 2}]]


async def test_a_fresh_claim_of_another_delivery_answers_409_retry_later(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    await ledger(gateway).claim(EventKey("inbox", "hook", "evt-busy"), "", b"{}")

    answer = await post_webhook(http, "inbox", "hook", {"n": 3}, event_id="evt-busy")

    assert answer.status_code == 409
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["error"]["reason"] == "event-in-progress"
    assert calls(tmp_path / "calls.jsonl") == []


async def test_on_postgresql_a_replayed_event_answers_with_its_run_and_a_stale_claim_is_taken_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_dsn: str
) -> None:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    log = tmp_path / "calls.jsonl"
    agents = agents_folder(
        tmp_path / "agents", [with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=str(log)), HOOK)]
    )
    async with fresh_pg_database(pg_dsn) as dsn:
        settings = make_settings(tmp_path, agents=agents, database_url=dsn)
        async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
            first = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-pg")
            again = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-pg")
            key = EventKey("inbox", "hook", "evt-pg-stale")
            await ledger(gateway).claim(key, "", b"{}")
            stale_ns = time.time_ns() - int((CLAIM_STALE_S + 5) * 1e9)
            await ledger(gateway).db.write(
                "UPDATE trigger_events SET claimed_ns = ? WHERE event_id = ?", (stale_ns, key.event_id)
            )
            taken = await post_webhook(http, "inbox", "hook", {"n": 2}, event_id="evt-pg-stale")
            async with jsonrpc_client(gateway, "inbox") as client:
                for answer in (first, taken):
                    await ended(client, answer.json()["taskId"])

    assert (first.status_code, again.status_code, taken.status_code) == (202, 200, 202)
    assert again.json()["taskId"] == first.json()["taskId"]
    assert sorted(c["data"][0]["n"] for c in calls(log)) == [1, 2]


async def test_events_past_the_retention_are_forgotten_but_a_claim_in_progress_is_kept(
    gateway: RunningGateway, http: httpx.AsyncClient
) -> None:
    old = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-old")
    async with jsonrpc_client(gateway, "inbox") as client:
        await ended(client, old.json()["taskId"])
    await ledger(gateway).claim(EventKey("inbox", "hook", "evt-claimed"), "", b"{}")
    await ledger(gateway).db.write("UPDATE trigger_events SET received_ns = 1")
    await post_webhook(http, "inbox", "hook", {"n": 2}, event_id="evt-new")

    pruned = await ledger(gateway).prune(time.time_ns() - 3600 * 10**9)

    kept = {e.key.event_id for e in await ledger(gateway).entries("inbox", "hook")}
    assert pruned == 1 and kept == {"evt-claimed", "evt-new"}


async def test_switchboard_triggers_lists_runs_and_dead_letters(
    gateway: RunningGateway, http: httpx.AsyncClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    started = await post_webhook(http, "inbox", "hook", {"n": 1}, event_id="evt-listed")
    body = b"{broken"
    await http.post("/triggers/inbox/hook", content=body, headers=signed_headers(body, "evt-broken"))
    data_dir = str(tmp_path / "data")

    assert main(["triggers", "--data-dir", data_dir, "--json"]) == 0
    every = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert main(["triggers", "--data-dir", data_dir, "--dead", "--agent", "inbox"]) == 0
    dead = capsys.readouterr().out.splitlines()
    assert main(["triggers", "--data-dir", data_dir, "--since", "yesterday-ish"]) == 2

    assert [(e["eventId"], e["state"]) for e in every] == [("evt-listed", "started"), ("evt-broken", "dead")]
    assert every[0]["taskId"] == started.json()["taskId"]
    assert len(dead) == 1 and "inbox/hook dead" in dead[0] and "evt-broken" in dead[0] and "not JSON" in dead[0]


async def test_switchboard_triggers_on_a_postgresql_database_without_the_ledger_finds_no_events(
    pg_dsn: str, capsys: pytest.CaptureFixture[str]
) -> None:
    async with fresh_pg_database(pg_dsn) as fresh:
        code = await asyncio.to_thread(main, ["triggers", "--database-url", fresh])

    assert code == 0
    assert capsys.readouterr().err == "switchboard triggers: no events match\n"
