"""The result cache (``cache:`` in an agent file): the same request is answered again without running the agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest, Task, TaskState
from mcp.client import Client as McpClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.auth.policy import RunOwner
from gateway.hosting.cache import ResultCache, spec_hash
from gateway.spec import AgentSpec, CacheSpec
from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import api_key, authed_client
from tests.auth.test_mcp_auth import mcp_client
from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, send
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import metadata

CACHED = {"ttl_s": 60}


def cached(agent_file: dict[str, Any], **cache: Any) -> dict[str, Any]:
    return {**agent_file, "cache": {**CACHED, **cache}}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    files = [
        cached(python_agent("inbox", f"{MODULE}:inbox", log=str(tmp_path / "inbox.jsonl"))),
        python_agent("plain", f"{MODULE}:inbox", log=str(tmp_path / "plain.jsonl")),
        cached(workflow("pipeline", "sequential", ["plain"])),
    ]
    agents = agents_folder(tmp_path / "agents", files)
    async with running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["*"])) as running:
        yield running


@pytest.mark.parametrize("binding", BINDINGS, ids=lambda b: b.id)
async def test_the_same_request_is_answered_from_the_cache_and_marked(
    gateway: RunningGateway, binding: Binding, tmp_path: Path
) -> None:
    async with a2a_client(gateway.agent_url("inbox"), binding) as client:
        first, _ = await send(client, "summarise the quarter")
        second, events = await send(client, "  summarise the quarter\r\n")
        stored = await client.get_task(GetTaskRequest(id=second.id))

    assert first.status.state == second.status.state == TaskState.TASK_STATE_COMPLETED
    assert second.id != first.id
    hit = metadata(stored)["cache"]
    assert hit["hit"] is True and hit["sourceTaskId"] == first.id and hit["ageSeconds"] >= 0
    assert "cache" not in metadata(first)
    assert list(stored.artifacts) == list(first.artifacts)
    assert stored.status.message.parts == first.status.message.parts
    assert [p.text for p in stored.history[0].parts] == ["  summarise the quarter\r\n"]
    assert len(calls(tmp_path / "inbox.jsonl")) == 1, "the agent ran once"
    assert events, "the caller got the task"


async def test_a_different_request_or_skill_is_not_a_hit(gateway: RunningGateway, tmp_path: Path) -> None:
    async with a2a_client(gateway.agent_url("inbox"), BINDINGS[0]) as client:
        await send(client, "one")
        other, _ = await send(client, "two")
        request = SendMessageRequest(
            message=Message(role=Role.ROLE_USER, message_id="m-skill", parts=[Part(text="one")])
        )
        request.message.metadata.update({"skill": "inbox"})
        named = await client.send_message(request).__anext__()

    assert "cache" not in metadata(other)
    assert "cache" not in metadata(named.task)
    assert [c["text"] for c in calls(tmp_path / "inbox.jsonl")] == ["one", "two", "one"]


async def test_a_workflow_run_is_cached_on_the_sdk_path_streaming_and_not(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    for binding in (BINDINGS[0], BINDINGS[1]):
        async with a2a_client(gateway.agent_url("pipeline"), binding) as client:
            run, _ = await send(client, f"ship it via {binding.id}")
            again, _ = await send(client, f"ship it via {binding.id}")
        assert run.status.state == again.status.state == TaskState.TASK_STATE_COMPLETED
        assert metadata(again)["cache"]["sourceTaskId"] == run.id
        assert [a.name for a in again.artifacts] == [a.name for a in run.artifacts]
    assert len(calls(tmp_path / "plain.jsonl")) == 2, "one step per distinct request"


async def test_an_mcp_tool_call_is_answered_from_the_cache(gateway: RunningGateway, tmp_path: Path) -> None:
    async with McpClient(f"{gateway.url}/mcp") as client:
        with anyio.fail_after(30):
            first = await client.call_tool("inbox", {"text": "from the IDE"})
            second = await client.call_tool("inbox", {"text": "from the IDE"})
    outcome = [r.structured_content or {} for r in (first, second)]
    handler = gateway.app.state.gateway.handler("inbox")
    task = await handler.on_get_task(GetTaskRequest(id=outcome[1]["task_id"]), ServerCallContext(user=RunOwner("")))

    assert [o["state"] for o in outcome] == ["completed", "completed"]
    assert outcome[0]["artifacts"] == outcome[1]["artifacts"]
    assert task is not None and metadata(task)["cache"]["sourceTaskId"] == outcome[0]["task_id"]
    assert len(calls(tmp_path / "inbox.jsonl")) == 1


# -- owners ------------------------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True], ids=["per-owner", "shared"])
async def test_another_owners_entry_answers_only_when_the_agent_says_it_is_shared(tmp_path: Path, shared: bool) -> None:
    alice, bob = new_api_key(), new_api_key()
    files = [cached(python_agent("inbox", f"{MODULE}:inbox", log=str(tmp_path / "inbox.jsonl")), shared=shared)]
    settings = make_settings(
        tmp_path,
        agents=agents_folder(tmp_path / "agents", files),
        auth_api_keys=[api_key_line("alice", alice), api_key_line("bob", bob)],
    )
    async with running_gateway(settings) as gateway:
        url = gateway.agent_url("inbox")
        async with authed_client(url, BINDINGS[0], api_key(alice)) as as_alice:
            theirs, _ = await send(as_alice, "the payroll figures")
        async with authed_client(url, BINDINGS[0], api_key(bob)) as as_bob:
            mine, _ = await send(as_bob, "the payroll figures")

    assert mine.status.state == TaskState.TASK_STATE_COMPLETED
    if shared:
        mark = metadata(mine)["cache"]
        assert mark["hit"] is True and "sourceTaskId" not in mark, "another owner's task id is not shown"
        assert len(calls(tmp_path / "inbox.jsonl")) == 1
    else:
        assert "cache" not in metadata(mine), "bob got alice's cached result"
        assert len(calls(tmp_path / "inbox.jsonl")) == 2
    assert theirs.id != mine.id


async def test_a_shared_entry_never_answers_a_caller_its_steps_would_refuse(tmp_path: Path) -> None:
    # Same scopes (none), not the same rights: the open workflow's step needs an authenticated caller. A
    # member runs it over MCP (where every caller is authenticated); an anonymous A2A caller (an open agent's
    # caller is anonymous there) is refused the step whether or not the cache holds the member's result.
    member = new_api_key()
    files = [
        python_agent("members", f"{MODULE}:inbox", log=str(tmp_path / "members.jsonl")),
        {**cached(workflow("lobby", "sequential", ["members"]), shared=True), "security": "none"},
    ]
    agents = agents_folder(tmp_path / "agents", files)
    settings = make_settings(tmp_path, agents=agents, auth_api_keys=[api_key_line("member", member)], mcp_tools=["*"])
    async with running_gateway(settings) as gateway:
        async with mcp_client(gateway, "legacy", {"X-API-Key": member}) as as_member:
            theirs = await as_member.call_tool("lobby", {"text": "the members' list"})
        async with a2a_client(gateway.agent_url("lobby"), BINDINGS[0]) as anonymous:
            mine, _ = await send(anonymous, "the members' list")

    assert not theirs.is_error and (theirs.structured_content or {}).get("state") == "completed", theirs
    assert "cache" not in metadata(mine), "an anonymous caller got an authenticated caller's result"
    assert mine.status.state == TaskState.TASK_STATE_FAILED, mine
    assert "requires an authenticated caller" in mine.status.message.parts[0].text
    assert len(calls(tmp_path / "members.jsonl")) == 1, "the step ran for the member only"


# -- the cache itself --------------------------------------------------------------------------


def spec(**cache: Any) -> AgentSpec:
    content = cached(python_agent("inbox", f"{MODULE}:inbox", log="x"), **cache)
    return AgentSpec.model_validate(content)


def message(text: str) -> Message:
    return Message(role=Role.ROLE_USER, message_id=text, parts=[Part(text=text)])


def completed(text: str) -> Task:
    task = Task(id=f"task-{text}", context_id="c")
    task.status.state = TaskState.TASK_STATE_COMPLETED
    task.artifacts.add(name="result").parts.add(text=text)
    return task


ALICE = ServerCallContext(user=RunOwner("alice"))


def test_an_edited_agent_file_has_other_keys() -> None:
    before, after = spec(), spec(ttl_s=61)
    old = ResultCache("inbox", CacheSpec(ttl_s=60), spec_hash(before))
    new = ResultCache("inbox", CacheSpec(ttl_s=60), spec_hash(after))

    assert spec_hash(before) != spec_hash(after)
    assert old.key(message("a"), ALICE) != new.key(message("a"), ALICE)


def test_entries_expire_after_their_ttl_and_the_least_recently_used_go_past_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("gateway.hosting.cache.time.time", lambda: now[0])
    cache = ResultCache("inbox", CacheSpec(ttl_s=10, max_entries=2), "v1")
    keys = {text: cache.key(message(text), ALICE) for text in "abc"}
    for text in "ab":
        cache.keep(keys[text] or "", completed(text), ALICE)
    assert cache.answer(keys["a"] or "", message("a"), ALICE) is not None  # a is now the most recently used
    cache.keep(keys["c"] or "", completed("c"), ALICE)

    assert len(cache) == 2 and cache.answer(keys["b"] or "", message("b"), ALICE) is None
    now[0] += 11
    assert cache.answer(keys["a"] or "", message("a"), ALICE) is None, "expired"


def test_only_completed_new_tasks_are_kept_or_answered() -> None:
    cache = ResultCache("inbox", CacheSpec(ttl_s=60), "v1")
    failed = completed("f")
    failed.status.state = TaskState.TASK_STATE_FAILED
    key = cache.key(message("f"), ALICE) or ""
    cache.keep(key, failed, ALICE)
    follow_up = message("f")
    follow_up.task_id = "task-1"

    assert len(cache) == 0
    assert cache.key(follow_up, ALICE) is None


async def test_concurrent_identical_requests_all_complete(gateway: RunningGateway) -> None:
    async with a2a_client(gateway.agent_url("inbox"), BINDINGS[0]) as client:
        tasks = await asyncio.gather(*(send(client, "same") for _ in range(5)))
    assert {t.status.state for t, _ in tasks} == {TaskState.TASK_STATE_COMPLETED}


async def test_metrics_count_hits_and_misses(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        before = lookups(await http.get("/metrics"))
        async with a2a_client(gateway.agent_url("inbox"), BINDINGS[0]) as client:
            await send(client, "counted once")
            await send(client, "counted once")
        after = lookups(await http.get("/metrics"))

    assert after["miss"] - before.get("miss", 0) == 1
    assert after["hit"] - before.get("hit", 0) == 1


def lookups(response: httpx.Response) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "switchboard_cache_lookups_total" and sample.labels.get("agent") == "inbox"
    }
