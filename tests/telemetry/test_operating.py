"""Operating a gateway: /metrics moves as calls, failures, retries and breaker trips happen; the audit trail
holds a row per call and per refusal; the access log names the caller and the task (gateway/telemetry/)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.cli import main
from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import api_key, authed_client
from tests.bindings.a2a_clients import BINDINGS, a2a_client, send
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow

JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
GRPC = next(b for b in BINDINGS if b.id == "grpc")
V1 = {"A2A-Version": "1.0"}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and sorted labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: httpx.AsyncClient, **headers: str) -> Samples:
    response = await http.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return samples(response.text)


def _agents(tmp_path: Path) -> Path:
    log = str(tmp_path / "calls.log")
    files = [
        python_agent("guarded", "gateway.agents.echo:EchoExecutor"),  # security: default (echo is open)
        python_agent("flaky", "flaky", log=log, failures=1),
        python_agent("broken", "flaky", log=str(tmp_path / "broken.log"), failures=1000),
        workflow("retrying", "sequential", ["flaky"], limits={"retries": 2, "backoff_base_s": 0.01}),
        workflow("tripping", "sequential", ["broken"], limits={"retries": 0, "breaker_threshold": 1}),
    ]
    return agents_folder(tmp_path / "agents", files, bundled=["echo"])


@asynccontextmanager
async def serving(tmp_path: Path, **overrides: object) -> AsyncIterator[tuple[RunningGateway, httpx.AsyncClient]]:
    settings = make_settings(tmp_path, agents=_agents(tmp_path), root_agent="echo", **overrides)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        yield gateway, http


async def test_metrics_move_with_calls_failures_retries_and_breaker_trips(tmp_path: Path) -> None:
    async with serving(tmp_path) as (gateway, http):
        gateway.app.state.gateway.operating.collector.tasks.ttl_s = 0  # counted afresh on every scrape
        before = await scrape(http)
        async with a2a_client(gateway.agent_url("echo"), JSONRPC) as client:
            await send(client, "hello")
        missing = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "no-such-task"}}
        answer = await http.post("/agents/echo", json=missing, headers=V1)
        assert "error" in answer.json()
        assert (await http.post("/agents/nobody", json=missing, headers=V1)).status_code == 404
        async with a2a_client(gateway.agent_url("retrying"), JSONRPC) as client:
            task, _ = await send(client, "try twice")
            assert task.status.state == 3, task  # completed, on the second attempt
        async with a2a_client(gateway.agent_url("tripping"), JSONRPC) as client:
            await send(client, "first: fails and opens the circuit")
            await send(client, "second: refused by the open circuit")
        after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    ok = {"agent": "echo", "binding": "jsonrpc", "method": "SendMessage", "outcome": "ok"}
    assert moved("switchboard_requests_total", **ok) == 1
    failed = {"agent": "echo", "binding": "jsonrpc", "method": "GetTask", "outcome": "error"}
    assert moved("switchboard_requests_total", **failed) == 1
    unknown = {"agent": "unknown", "binding": "jsonrpc", "method": "other", "outcome": "error"}
    assert moved("switchboard_requests_total", **unknown) == 1, "an unknown agent is one label, not its name"
    duration = {"agent": "echo", "binding": "jsonrpc", "method": "SendMessage"}
    assert moved("switchboard_request_duration_seconds_count", **duration) == 1
    assert moved("switchboard_retries_total") == 1
    assert moved("switchboard_workflow_runs_total", pattern="sequential", outcome="completed") == 1
    assert moved("switchboard_workflow_runs_total", pattern="sequential", outcome="failed") == 2
    assert moved("switchboard_workflow_step_duration_seconds_count", pattern="sequential") == 3
    assert value(after, "switchboard_breaker_state", agent="broken") == 2, "open"
    assert moved("switchboard_breaker_refusals_total", agent="broken") == 1
    assert value(after, "switchboard_tasks", state="completed") >= 2
    assert moved("switchboard_store_duration_seconds_count", op="write_many") > 0
    assert value(after, "switchboard_push_deliveries_total", outcome="ok") == 0
    assert ("switchboard_mcp_sessions", ()) in after
    # The registry is the process's: earlier tests' gateways left their agents' series in it, so look at what moved.
    requests = {key for key in after if key[0] == "switchboard_requests_total" and after[key] != before.get(key, 0)}
    labels = {dict(key[1]).get("agent") for key in requests}
    assert labels <= {"echo", "guarded", "flaky", "broken", "retrying", "tripping", "unknown", "-"}, labels


def _keys(tmp_path: Path) -> tuple[dict[str, str], list[str]]:
    keys = {name: new_api_key() for name in ("alice", "ops")}
    lines = [api_key_line("alice", keys["alice"]), api_key_line("ops", keys["ops"], ["metrics:read"])]
    return keys, lines


async def test_metrics_need_the_operator_scope_when_auth_is_on(tmp_path: Path) -> None:
    keys, lines = _keys(tmp_path)
    async with serving(tmp_path, auth_api_keys=lines) as (_gateway, http):
        assert (await http.get("/metrics")).status_code == 401
        refused = await http.get("/metrics", headers={"X-API-Key": keys["alice"]})
        assert refused.status_code == 403 and "metrics:read" in refused.json()["error"]["message"]
        found = await scrape(http, **{"X-API-Key": keys["ops"]})
        refusals = {"agent": "-", "binding": "http", "method": "GET", "outcome": "refused"}
        assert value(found, "switchboard_requests_total", **refusals) >= 2


async def _audit_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["audit", "--data-dir", str(tmp_path / "data"), "--json", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


async def test_every_call_and_refusal_is_audited_and_the_access_log_names_caller_and_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    keys, lines = _keys(tmp_path)
    caplog.set_level(logging.INFO, logger="switchboard.access")
    async with serving(tmp_path, auth_api_keys=lines) as (gateway, http):
        tasks = []
        for binding in (JSONRPC, GRPC):
            async with authed_client(gateway.agent_url("guarded"), binding, api_key(keys["alice"])) as client:
                task, _ = await send(client, "audit me")
                tasks.append(task.id)
        message = {"message": {"role": "ROLE_USER", "messageId": "m1", "parts": [{"text": "secret words"}]}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": message}
        refused = await http.post("/agents/guarded", json=body, headers=V1)
        assert refused.status_code == 401
        await gateway.app.state.gateway.operating.audit.flush()
        rows = await _audit_rows(tmp_path, capsys)
    calls = [r for r in rows if r["kind"] == "call" and r["method"] == "SendMessage"]
    assert [(r["binding"], r["task_id"]) for r in calls] == [("jsonrpc", tasks[0]), ("grpc", tasks[1])]
    assert all(r["caller"] == "apikey:alice" and r["agent"] == "guarded" and r["outcome"] == "ok" for r in calls)
    gets = [r for r in rows if r["method"] == "GetTask"]
    assert len(gets) == 2, "send() reads the task back: a call too"
    refusals = [r for r in rows if r["kind"] == "refusal"]
    assert len(refusals) == 1 and refusals[0]["caller"] == "anonymous" and refusals[0]["outcome"] == "refused"
    assert "requires authentication" in refusals[0]["detail"]
    assert not any("secret words" in json.dumps(r) for r in rows), "contents are never stored"
    only = await _audit_rows(tmp_path, capsys, "--caller", "apikey:alice", "--agent", "guarded")
    assert {r["caller"] for r in only} == {"apikey:alice"} and len(only) == 4
    access = [r for r in caplog.records if r.name == "switchboard.access"]
    sent = [r for r in access if getattr(r, "fields", {}).get("task_id") == tasks[0]]
    assert any("caller=apikey:alice" in r.getMessage() and f"task={tasks[0]}" in r.getMessage() for r in sent)
    assert any(r.fields["status"] == 401 and r.fields["caller"] == "anonymous" for r in access)  # type: ignore[attr-defined]


async def test_an_audit_write_that_fails_is_counted_and_fails_the_call_when_required(tmp_path: Path) -> None:
    for required, status in ((False, 200), (True, 503)):
        folder = tmp_path / str(required)
        async with serving(folder, audit_required=required) as (gateway, http):
            await gateway.app.state.gateway.db.write("DROP TABLE audit")  # every audit write fails from now on
            before = await scrape(http)
            message = {"message": {"role": "ROLE_USER", "messageId": "m1", "parts": [{"text": "hi"}]}}
            body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": message}
            answer = await http.post("/agents/echo", json=body, headers=V1)
            assert answer.status_code == status, answer.text
            await gateway.app.state.gateway.operating.audit.flush()
            after = await scrape(http)
        failures = "switchboard_audit_write_failures_total"
        assert value(after, failures) - value(before, failures) == 1
        if required:
            assert answer.json()["error"]["status"] == "UNAVAILABLE"
        else:
            assert answer.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"


async def test_metrics_on_their_own_listener_leave_the_http_port(tmp_path: Path) -> None:
    from tests.federation.support import free_port

    listen = f"127.0.0.1:{free_port()}"
    async with serving(tmp_path, metrics_listen=listen, auth_api_keys=_keys(tmp_path)[1]) as (_gateway, http):
        assert (await http.get("/metrics")).status_code == 404
        async with httpx.AsyncClient(timeout=10) as plain:
            found = samples((await plain.get(f"http://{listen}/metrics")).text)  # no credentials asked
    assert ("switchboard_mcp_sessions", ()) in found and ("process_cpu_seconds_total", ()) in found


async def test_a_scrape_during_load_answers_within_its_timeout(tmp_path: Path) -> None:
    async with serving(tmp_path) as (gateway, http):
        gateway.app.state.gateway.operating.collector.tasks.ttl_s = 0  # the database is counted on every scrape
        message = {"message": {"role": "ROLE_USER", "messageId": "m", "parts": [{"text": "load"}]}}
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": message}

        async def caller() -> None:
            for _ in range(10):
                assert (await http.post("/agents/echo", json=body, headers=V1)).status_code == 200

        load = [asyncio.create_task(caller()) for _ in range(16)]
        try:
            for _ in range(3):
                async with asyncio.timeout(10):  # within a Prometheus scrape_timeout (10 s by default)
                    found = await scrape(http)
                assert ("switchboard_streams_open", ()) in found
        finally:
            await asyncio.gather(*load)
        found = await scrape(http)
    ok = {"agent": "echo", "binding": "jsonrpc", "method": "SendMessage", "outcome": "ok"}
    assert value(found, "switchboard_requests_total", **ok) >= 160
