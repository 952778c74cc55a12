"""A2A push triggers: a peer gateway's task, pushed to this one, starts a run with its status and artifacts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from a2a.types.a2a_pb2 import SendMessageRequest, TaskPushNotificationConfig, TaskState

from gateway.testing import running_gateway
from gateway.triggers.runs import TriggerRuns
from tests.bindings.a2a_clients import user_message
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import ended, jsonrpc_client, metadata, with_triggers

TOKEN = "push-token-of-the-peer"
PUSHED = {"kind": "push", "name": "peer-done", "token_env": "TEST_PUSH_TOKEN"}


async def test_a_peer_task_pushed_to_a_push_trigger_starts_one_run_with_its_status_and_artifacts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PUSH_TOKEN", TOKEN)
    here_log, peer_log = tmp_path / "here.jsonl", tmp_path / "peer.jsonl"
    here_agents = agents_folder(
        tmp_path / "here", [with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=str(here_log)), PUSHED)]
    )
    peer_agents = agents_folder(tmp_path / "peer", [python_agent("producer", f"{MODULE}:inbox", log=str(peer_log))])
    async with (
        running_gateway(make_settings(tmp_path / "a", agents=here_agents)) as here,
        running_gateway(make_settings(tmp_path / "b", agents=peer_agents)) as peer,
    ):
        runs: TriggerRuns = here.app.state.triggers.runs
        request = SendMessageRequest(message=user_message("build the report"))
        request.configuration.task_push_notification_config.CopyFrom(
            TaskPushNotificationConfig(url=f"{here.url}/triggers/inbox/peer-done", token=TOKEN)
        )
        async with jsonrpc_client(peer, "producer") as client:
            async for _ in client.send_message(request):
                pass
        async with asyncio.timeout(20), runs.recorded:
            await runs.recorded.wait_for(lambda: runs.count >= 1)
        [entry] = await runs.ledger.entries("inbox", "peer-done")
        async with jsonrpc_client(here, "inbox") as client:
            task = await ended(client, entry.task_id)
        async with httpx.AsyncClient(base_url=here.url) as http:  # the peer retries its last notification
            body = json.dumps({"statusUpdate": {"taskId": entry.key.event_id.split(":")[0], "status": {"state": 3}}})
            again = await http.post(
                "/triggers/inbox/peer-done", content=body, headers={"X-A2A-Notification-Token": TOKEN}
            )
            forged = await http.post(
                "/triggers/inbox/peer-done", content=body, headers={"X-A2A-Notification-Token": "guess"}
            )

    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    peer_task_id = entry.key.event_id.removesuffix(":completed")
    assert metadata(task)["trigger"] == {**metadata(task)["trigger"], "kind": "push", "peerTaskId": peer_task_id}
    [got] = calls(here_log)
    pushed = got["data"][0]["task"]
    assert pushed["id"] == peer_task_id and pushed["status"]["state"] == "TASK_STATE_COMPLETED"
    assert [a["name"] for a in pushed["artifacts"]] == ["result"]
    assert pushed["artifacts"][0]["parts"][0]["data"]["text"] == "build the report"
    assert (again.status_code, again.json()["taskId"], again.json()["duplicate"]) == (200, entry.task_id, True)
    assert forged.status_code == 401 and forged.json()["error"]["reason"] == "bad-push-token"
    assert len(calls(here_log)) == 1


async def test_a_push_that_is_not_a_stream_response_is_refused_422(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PUSH_TOKEN", TOKEN)
    agents = agents_folder(
        tmp_path / "agents", [with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=str(tmp_path / "l")), PUSHED)]
    )
    async with (
        running_gateway(make_settings(tmp_path, agents=agents)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        answer = await http.post(
            "/triggers/inbox/peer-done", content=b"[1, 2]", headers={"X-A2A-Notification-Token": TOKEN}
        )

    assert answer.status_code == 422
    assert "StreamResponse" in answer.json()["error"]["message"] or "object" in answer.json()["error"]["message"]


async def test_a_push_config_authentication_bearer_token_is_accepted_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PUSH_TOKEN", TOKEN)
    agents = agents_folder(
        tmp_path / "agents", [with_triggers(python_agent("inbox", f"{MODULE}:inbox", log=str(tmp_path / "l")), PUSHED)]
    )
    working = json.dumps({"statusUpdate": {"taskId": "peer-task", "status": {"state": "TASK_STATE_WORKING"}}})
    async with (
        running_gateway(make_settings(tmp_path, agents=agents)) as gateway,
        httpx.AsyncClient(base_url=gateway.url) as http,
    ):
        bearer = await http.post(
            "/triggers/inbox/peer-done", content=working, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        wrong = await http.post("/triggers/inbox/peer-done", content=working, headers={"Authorization": "Bearer x"})

    assert bearer.status_code == 200 and "working" in bearer.json()["status"]
    assert wrong.status_code == 401
