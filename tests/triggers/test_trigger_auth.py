"""Triggers with auth on: a run is owned by the trigger's owner and authorised with its scopes, like a caller."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, TaskState
from a2a.utils.errors import TaskNotFoundError

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.testing import running_gateway
from tests.auth.conftest import api_key, authed_client
from tests.bindings.a2a_clients import BINDINGS
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import SECRET, metadata, post_webhook, with_triggers


def hook(name: str, **more: object) -> dict[str, object]:
    return {"kind": "webhook", "name": name, "secret_env": "TEST_HOOK_SECRET", **more}


async def test_a_triggered_run_belongs_to_the_triggers_owner_and_needs_its_scopes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    alice, bob = new_api_key(), new_api_key()
    log = tmp_path / "calls.jsonl"
    vault = {
        **with_triggers(
            python_agent("vault", f"{MODULE}:inbox", log=str(log)),
            hook("as-alice", owner="apikey:alice", scopes=["vault:use"]),
            hook("unscoped", owner="apikey:alice"),
        ),
        "scopes": ["vault:use"],
    }
    settings = make_settings(
        tmp_path,
        agents=agents_folder(tmp_path / "agents", [vault]),
        auth_api_keys=[api_key_line("alice", alice, ["vault:use"]), api_key_line("bob", bob, ["vault:use"])],
    )
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.url, timeout=20) as http:
        started = await post_webhook(http, "vault", "as-alice", {"n": 1}, event_id="evt-1")
        refused = await post_webhook(http, "vault", "unscoped", {"n": 2}, event_id="evt-2")
        task_id = started.json()["taskId"]
        async with authed_client(gateway.agent_url("vault"), BINDINGS[1], api_key(alice)) as as_alice:
            task = await as_alice.get_task(GetTaskRequest(id=task_id))
        async with authed_client(gateway.agent_url("vault"), BINDINGS[1], api_key(bob)) as as_bob:
            with pytest.raises(TaskNotFoundError):
                await as_bob.get_task(GetTaskRequest(id=task_id))

    assert started.status_code == 202, "the webhook needs its signature, not an API key"
    assert task.status.state in (TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_COMPLETED)
    assert metadata(task)["trigger"]["name"] == "as-alice"
    assert refused.status_code == 422 and "lacks scope(s) vault:use" in refused.json()["error"]["message"]
    assert [c["data"] for c in calls(log)] == [[{"n": 1}]]
