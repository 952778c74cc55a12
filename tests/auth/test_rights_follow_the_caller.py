"""Rights follow the caller: every step of every pattern, and an agent reusing another's logic in-process, is
authorised as the original caller, exactly as a direct call would be.

The bundled review team with ``security-reviewer`` needing ``sec:run``. alice holds ``reviews:run`` and
``sec:run``, bob only ``reviews:run``. bob's direct call to the security reviewer is refused; every way of
reaching it through another agent (code-review, triage, review-lead, a workflow listing it, a nested
workflow, a work queue, an LLM's ``transfer_to_security_reviewer``) fails the run with the reason and
returns none of its findings, and it never runs for bob. alice gets the full result. A model choosing the next
agent (a magentic manager, a supervisor's planner, a chat manager) and routing first are offered only what bob may
run, so his run goes around the security reviewer; a pick of it anyway still fails the run. JSON-RPC and MCP.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from a2a.types.a2a_pb2 import (
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToJson

from gateway.auth.api_keys import ApiKey, ApiKeyTable, api_key_line, new_api_key
from gateway.auth.jwt import JwtVerifier
from gateway.auth.policy import LOCAL_OPERATOR, AuthPolicy, Identity, caller_of
from gateway.cards.build import STEP_SCOPES_EXTENSION_URI
from gateway.errors import PermissionDeniedError
from gateway.orchestration.checkpoints import SqlRunStore
from gateway.orchestration.resume import run_owner
from gateway.settings import IssuerSettings, bundled_agents_dir
from gateway.spec import AgentSpec
from gateway.store import Database
from gateway.testing import RunningGateway, running_gateway
from tests.adapters.llm_server import (
    ScriptedChatServer,
    Stream,
    finish_chunk,
    scripted_chat_server,
    text_chunk,
    tool_chunk,
)
from tests.auth.conftest import AGENT_FILES, ISSUER, WAIT_S, api_key, authed_client
from tests.auth.test_mcp_auth import mcp_client
from tests.bindings.a2a_clients import BINDINGS, Binding
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import STREAMING, output_names
from tests.orchestration.test_engine_checkpoints import record
from tests.store.test_task_store import db, pg_schema_dsn  # noqa: F401 -- fixtures

JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
JSONRPC_SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
ENDED = (TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED, TaskState.TASK_STATE_CANCELED)
ENTRIES = ["jsonrpc", "mcp"]
EVERY_ENTRY = ["jsonrpc", "jsonrpc-sse", "rest", "rest-sse", "grpc", "grpc-stream", "mcp"]

CODE = """import subprocess
PASSWORD = "hunter2-correct-horse-battery"


def run(cmd):
    return subprocess.call(cmd, shell=True)
"""
FENCED = f"```python\n{CODE}```"
SECURITY_MARKS = ("SEC001", "SEC003", "hardcoded-secret", "shell-command")
REFUSAL = "apikey:bob lacks scope(s) sec:run required by agent 'security-reviewer'"

EXTRA_AGENTS = {
    "secure-pipeline.yaml": """
format: 1
name: secure-pipeline
description: The security reviewer, then the complexity reviewer on what it found.
skills: [{id: pipeline, name: Pipeline, description: Two reviews in a row., tags: [review]}]
runtime: {kind: workflow, pattern: sequential, participants: [security-reviewer, complexity-reviewer]}
""",
    "outer-review.yaml": """
format: 1
name: outer-review
description: The code-review workflow, nested in another.
skills: [{id: outer, name: Outer, description: A nested review., tags: [review]}]
runtime: {kind: workflow, pattern: sequential, participants: [code-review]}
""",
    "review-queue.yaml": """
format: 1
name: review-queue
description: One security review per line of code.
skills: [{id: queue, name: Queue, description: Reviews each line., tags: [review]}]
runtime:
  kind: workflow
  pattern: work-queue
  participants: [security-reviewer]
  options: {concurrency: 2, max_attempts: 1}
""",
    "guarded-review.yaml": """
format: 1
name: guarded-review
description: The security reviewer, or the complexity reviewer for a caller who may not run it.
skills: [{id: guarded, name: Guarded, description: A review with a fallback., tags: [review]}]
runtime:
  kind: workflow
  pattern: sequential
  participants: [security-reviewer]
  options: {fallbacks: {security-reviewer: [complexity-reviewer]}}
""",
    "review-chat.yaml": """
format: 1
name: review-chat
description: The security and complexity reviewers take turns; a speaker that fails is skipped.
skills: [{id: chat, name: Chat, description: A review chat., tags: [review]}]
runtime:
  kind: workflow
  pattern: group-chat
  participants: [security-reviewer, complexity-reviewer]
  options: {max_rounds: 2, on_speaker_failure: skip}
""",
    "router.yaml": """
format: 1
name: router
description: A model that decides who reviews the code.
skills: [{id: route, name: Route, description: Picks a reviewer., tags: [route]}]
runtime: {kind: llm, handoffs: [security-reviewer], system_prompt: Pick a reviewer.}
""",
    "board-manager.yaml": """
format: 1
name: board-manager
description: A model that plans reviews and picks the next reviewer.
skills: [{id: manage, name: Manage, description: Picks reviewers., tags: [manage]}]
runtime: {kind: llm, system_prompt: Plan the work and pick the next team member.}
""",
    "review-board.yaml": """
format: 1
name: review-board
description: A manager model delegates the review to the reviewers, one step at a time.
skills: [{id: board, name: Board, description: A managed review., tags: [review]}]
runtime:
  kind: workflow
  pattern: magentic
  participants: [board-manager, security-reviewer, complexity-reviewer]
  options: {max_iterations: 3}
""",
    "review-plan.yaml": """
format: 1
name: review-plan
description: A planner model splits the review among the reviewers and approves the result.
skills: [{id: plan, name: Plan, description: A planned review., tags: [review]}]
runtime:
  kind: workflow
  pattern: supervisor
  participants: [board-manager, security-reviewer, complexity-reviewer]
  options: {max_revisions: 0}
""",
    "review-room.yaml": """
format: 1
name: review-room
description: A manager model picks which reviewer speaks.
skills: [{id: room, name: Room, description: A moderated review chat., tags: [review]}]
runtime:
  kind: workflow
  pattern: group-chat
  participants: [board-manager, security-reviewer, complexity-reviewer]
  options: {speaker_selection: manager, max_rounds: 1}
""",
    "review-desk.yaml": """
format: 1
name: review-desk
description: Routes the code to the reviewer whose card matches the request best.
skills: [{id: desk, name: Desk, description: A routed review., tags: [review]}]
runtime:
  kind: workflow
  pattern: handoff
  participants: [security-reviewer, complexity-reviewer]
  options: {route_first: true, min_score: 1}
""",
    "secrets-desk.yaml": """
format: 1
name: secrets-desk
description: Routes the code to the one reviewer it has.
skills: [{id: secrets, name: Secrets, description: A routed security review., tags: [review]}]
runtime:
  kind: workflow
  pattern: handoff
  participants: [security-reviewer]
  options: {route_first: true, min_score: 1}
""",
    "llm-desk.yaml": """
format: 1
name: llm-desk
description: The router model hands the code to a reviewer.
skills: [{id: desk, name: Desk, description: Routed review., tags: [review]}]
runtime: {kind: workflow, pattern: handoff, participants: [router, security-reviewer]}
""",
}


@dataclass(frozen=True)
class Keys:
    """alice may run security reviews, bob may not."""

    alice: str = field(default_factory=new_api_key)
    bob: str = field(default_factory=new_api_key)

    def lines(self) -> list[str]:
        return [
            api_key_line("alice", self.alice, ["reviews:run", "sec:run"]),
            api_key_line("bob", self.bob, ["reviews:run"]),
        ]


def write_team(folder: Path) -> Path:
    """The bundled agents, the security reviewer needing ``sec:run``, and the test's workflows."""
    folder.mkdir(parents=True)
    for path in bundled_agents_dir().glob("*.yaml"):
        shutil.copy(path, folder / path.name)
    security = folder / "security-reviewer.yaml"
    security.write_text(security.read_text(encoding="utf-8") + 'scopes: ["sec:run"]\n', encoding="utf-8")
    for name, text in EXTRA_AGENTS.items():
        (folder / name).write_text(text.lstrip(), encoding="utf-8")
    return folder


@dataclass(frozen=True)
class Team:
    gateway: RunningGateway
    chat: ScriptedChatServer
    keys: Keys


@pytest.fixture
async def team(tmp_path: Path) -> AsyncIterator[Team]:
    keys = Keys()
    async with scripted_chat_server() as chat:
        settings = make_settings(
            tmp_path,
            agents=write_team(tmp_path / "agents"),
            auth_api_keys=keys.lines(),
            mcp_tools=["*"],
            llm_base_url=chat.base_url,
            llm_model="scripted",
        )
        async with running_gateway(settings) as gateway:
            yield Team(gateway, chat, keys)


Ask = Callable[["Team", str, str, str], Awaitable["Answer"]]


@dataclass(frozen=True)
class Answer:
    """A run's end as its caller saw it: failed or not, and everything it was given, as text."""

    failed: bool
    text: str
    everything: str


def user_message(text: str) -> Message:
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])


def ask_a2a(binding: Binding) -> Ask:
    """SendMessage with the a2a-sdk client on ``binding``; the final task, as its owner reads it."""

    async def ask(team: Team, agent: str, key: str, text: str) -> Answer:
        async with authed_client(team.gateway.agent_url(agent), binding, api_key(key)) as client:
            task_id = ""
            async for event in client.send_message(SendMessageRequest(message=user_message(text))):
                if event.HasField("task"):
                    task_id = event.task.id
                elif event.HasField("status_update"):
                    task_id = task_id or event.status_update.task_id
            final = await client.get_task(GetTaskRequest(id=task_id))
        status = "\n".join(p.text for p in final.status.message.parts if p.HasField("text"))
        return Answer(final.status.state == TaskState.TASK_STATE_FAILED, status, MessageToJson(final))

    return ask


async def ask_mcp(team: Team, agent: str, key: str, text: str) -> Answer:
    """The agent's MCP tool, called with MCP's client."""
    async with mcp_client(team.gateway, "legacy", {"X-API-Key": key}) as client:
        result = await client.call_tool(agent.replace("-", "_"), {"text": text})
    structured = result.structured_content or {}
    everything = json.dumps([structured, [c.model_dump() for c in result.content]])
    return Answer(result.is_error, str(structured.get("text", "")), everything)


ASK: dict[str, Ask] = {"mcp": ask_mcp, **{binding.id: ask_a2a(binding) for binding in BINDINGS}}


async def security_tasks(team: Team, owner: str) -> int:
    """How many tasks the security reviewer ran for ``owner``."""
    gateway_db = team.gateway.app.state.gateway.db
    row = await gateway_db.fetch_one(
        "SELECT count(*) FROM tasks WHERE agent = ? AND owner = ?", ("security-reviewer", owner)
    )
    assert row is not None
    return int(row[0])


async def assert_refused_then_allowed(
    team: Team, entry: str, agent: str, text: str, alice_runs: int = 1, findings: bool = True
) -> None:
    """bob: a failed run naming the missing scope, no security finding, no security task; alice: the findings."""
    ask = ASK[entry]
    bob = await ask(team, agent, team.keys.bob, text)
    assert bob.failed, bob.everything
    assert REFUSAL in bob.text, bob.text
    assert not [mark for mark in SECURITY_MARKS if mark in bob.everything], bob.everything
    assert await security_tasks(team, "apikey:bob") == 0
    alice = await ask(team, agent, team.keys.alice, text)
    assert not alice.failed, alice.everything
    assert "SEC001" in alice.everything or not findings, alice.everything
    assert await security_tasks(team, "apikey:alice") >= alice_runs


async def test_bob_is_refused_the_security_reviewer_directly(team: Team) -> None:
    async with httpx.AsyncClient(base_url=team.gateway.url, timeout=WAIT_S) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": {
            "messageId": "m1", "role": "ROLE_USER", "parts": [{"text": CODE}]}}}  # fmt: skip
        answer = await http.post(
            "/agents/security-reviewer", json=body, headers={"X-API-Key": team.keys.bob, "A2A-Version": "1.0"}
        )
    assert answer.status_code == 403 and answer.json()["error"]["message"] == REFUSAL


@pytest.mark.parametrize("entry", EVERY_ENTRY)
async def test_code_review_runs_the_security_step_only_for_a_caller_who_may(entry: str, team: Team) -> None:
    await assert_refused_then_allowed(team, entry, "code-review", CODE)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_triage_routes_only_to_what_the_caller_may_run(entry: str, team: Team) -> None:
    # routed to code-review, a nested workflow whose security step bob may not run
    await assert_refused_then_allowed(team, entry, "triage", f"Review this pull request's Python code\n\n{FENCED}")


@pytest.mark.parametrize("entry", ENTRIES)
async def test_triage_handoff_straight_to_the_security_reviewer_is_refused(entry: str, team: Team) -> None:
    text = f"Check this code for hard-coded secrets and injection risks\n\n{FENCED}"
    await assert_refused_then_allowed(team, entry, "triage", text)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_review_lead_runs_the_security_logic_in_process_only_for_a_caller_who_may(entry: str, team: Team) -> None:
    await assert_refused_then_allowed(team, entry, "review-lead", CODE, alice_runs=0)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_workflow_listing_a_scoped_agent_checks_that_step(entry: str, team: Team) -> None:
    await assert_refused_then_allowed(team, entry, "secure-pipeline", CODE)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_nested_workflow_fails_the_outer_run_too(entry: str, team: Team) -> None:
    await assert_refused_then_allowed(team, entry, "outer-review", CODE)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_work_queue_items_are_checked_as_the_caller(entry: str, team: Team) -> None:
    lines = 'API_TOKEN = "sk-live-0123456789abcdef0123"\nPASSWORD = "hunter2-correct-horse-battery"'
    await assert_refused_then_allowed(team, entry, "review-queue", lines, alice_runs=2)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_refused_speaker_fails_a_group_chat_that_skips_failed_speakers(entry: str, team: Team) -> None:
    # the pattern's own policy (skip a failing speaker) does not apply: a refusal fails the run. (A speaker
    # gets the transcript, which the reviewer cannot parse as code: alice's run is checked by its security task.)
    await assert_refused_then_allowed(team, entry, "review-chat", CODE, findings=False)


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_declared_fallback_takes_a_refused_step(entry: str, team: Team) -> None:
    bob = await ASK[entry](team, "guarded-review", team.keys.bob, CODE)
    assert not bob.failed, bob.everything
    assert "Complexity review" in bob.everything
    assert entry == "mcp" or "security-reviewer may not be run by this caller" in bob.everything  # the task's history
    assert not [mark for mark in SECURITY_MARKS if mark in bob.everything], bob.everything
    assert await security_tasks(team, "apikey:bob") == 0
    alice = await ASK[entry](team, "guarded-review", team.keys.alice, CODE)
    assert not alice.failed and "SEC001" in alice.everything, alice.everything


def transfer(note: str) -> Stream:
    """The model's answer: hand the code to the security reviewer."""
    return Stream(
        [
            text_chunk("The security reviewer should see this. "),
            tool_chunk(0, name="transfer_to_security_reviewer", arguments=json.dumps({"reason": note})),
            finish_chunk("tool_calls"),
        ]
    )


def says(text: str) -> Stream:
    """The model's answer: ``text``, no tool call."""
    return Stream([text_chunk(text), finish_chunk()])


def offered(request: Any) -> list[str]:
    """The names of the tools a request to the model offered."""
    return [tool["function"]["name"] for tool in request.body.get("tools", [])]


@pytest.mark.parametrize("entry", ENTRIES)
async def test_an_llm_is_offered_only_the_transfers_its_caller_may_make(entry: str, team: Team) -> None:
    team.chat.answer(says("Nothing to hand over."), says("Nothing to hand over."))
    bob = await ASK[entry](team, "router", team.keys.bob, FENCED)
    alice = await ASK[entry](team, "router", team.keys.alice, FENCED)
    assert not bob.failed and not alice.failed, (bob.everything, alice.everything)
    for_bob, for_alice = await team.chat.requests(2)
    assert offered(for_bob) == [], "bob may not run the security reviewer: the model is not told about it"
    assert "security" not in json.dumps(for_bob.body.get("tools", []))
    assert offered(for_alice) == ["transfer_to_security_reviewer"]


@pytest.mark.parametrize("entry", ENTRIES)
async def test_an_llm_transfer_its_caller_may_not_make_is_a_tool_error_and_never_runs(entry: str, team: Team) -> None:
    # the model calls the transfer bob was not offered anyway: it is told why not and answers itself
    team.chat.answer(transfer("check for secrets"), says("I may not hand this over; no review."))
    team.chat.answer(transfer("check for secrets"))
    bob = await ASK[entry](team, "llm-desk", team.keys.bob, FENCED)
    assert not bob.failed, bob.everything
    assert "I may not hand this over" in bob.everything
    assert not [mark for mark in SECURITY_MARKS if mark in bob.everything], bob.everything
    assert await security_tasks(team, "apikey:bob") == 0
    told = (await team.chat.requests(2))[1].body["messages"][-1]
    assert told["role"] == "tool" and told["content"].startswith("ERROR: "), told
    assert REFUSAL in told["content"] and "transfer_to_security_reviewer" in told["content"], told
    alice = await ASK[entry](team, "llm-desk", team.keys.alice, FENCED)
    assert not alice.failed and "SEC001" in alice.everything, alice.everything
    assert await security_tasks(team, "apikey:alice") == 1
    assert len(team.chat.received) == 3  # alice's transfer was followed at once


async def task_once_ended(team: Team, agent: str, key: str, task_id: str) -> Task:
    """The task once it has ended, as its owner reads it: followed with ``SubscribeToTask``, then ``GetTask``."""
    async with authed_client(team.gateway.agent_url(agent), JSONRPC_SSE, api_key(key)) as client:
        async with asyncio.timeout(WAIT_S):
            task = await client.get_task(GetTaskRequest(id=task_id))
            if task.status.state not in ENDED:
                try:
                    async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                        status = event.status_update.status if event.HasField("status_update") else event.task.status
                        if status.state in ENDED:
                            break
                except A2AError:
                    pass  # it ended between the read and the subscription
            return await client.get_task(GetTaskRequest(id=task_id))


async def test_runs_started_with_mcp_start_run_act_as_their_caller_in_every_step(team: Team) -> None:
    team.chat.answer(transfer("check for secrets"), says("I may not hand this over; no review."))
    async with mcp_client(team.gateway, "legacy", {"X-API-Key": team.keys.bob}) as client:
        listed = await client.call_tool("list_agents", {})
        desk = await client.call_tool("start_run", {"agent": "llm-desk", "text": FENCED})
        pipeline = await client.call_tool("start_run", {"agent": "secure-pipeline", "text": CODE})
    assert not (listed.is_error or desk.is_error or pipeline.is_error), (desk.content, pipeline.content)
    names = [agent["name"] for agent in (listed.structured_content or {})["agents"]]
    assert "llm-desk" in names and "security-reviewer" not in names, names
    run_id = (desk.structured_content or {})["run_id"]
    desk_task = await task_once_ended(team, "llm-desk", team.keys.bob, run_id)
    assert desk_task.status.state == TaskState.TASK_STATE_COMPLETED, MessageToJson(desk_task)
    for_bob = (await team.chat.requests(2))[0]
    assert offered(for_bob) == [], "the model was told of no transfer bob may not make"
    assert REFUSAL in team.chat.received[1].body["messages"][-1]["content"]
    run_id = (pipeline.structured_content or {})["run_id"]
    pipeline_task = await task_once_ended(team, "secure-pipeline", team.keys.bob, run_id)
    assert pipeline_task.status.state == TaskState.TASK_STATE_FAILED, MessageToJson(pipeline_task)
    assert REFUSAL in MessageToJson(pipeline_task.status)
    assert not [mark for mark in SECURITY_MARKS if mark in MessageToJson(pipeline_task)]
    assert await security_tasks(team, "apikey:bob") == 0


# --- the caller survives a restart --------------------------------------------------------------


async def start_until_first_step(gateway: RunningGateway, key: str, text: str) -> str:
    """Start ``pipeline`` as the key's holder and return its task id once step 1's output is out."""
    task_id = ""
    async with authed_client(gateway.agent_url("pipeline"), STREAMING, api_key(key)) as client:
        async with asyncio.timeout(WAIT_S):
            async for event in client.send_message(SendMessageRequest(message=user_message(text))):
                task_id = task_id or event.task.id or event.status_update.task_id
                if "step-1-counter" in output_names([event.artifact_update.artifact]):
                    break
    return task_id


async def test_a_resumed_run_acts_with_the_scopes_its_caller_had(tmp_path: Path) -> None:
    keys = Keys()
    scoped = {**python_agent("notes", "gateway.agents.echo:EchoExecutor"), "scopes": ["sec:run"]}
    files = [python_agent("counter", "counter", log=str(tmp_path / "calls.txt")), scoped]
    files.append(workflow("pipeline", "sequential", ["counter", "notes"]))
    agents = agents_folder(tmp_path / "agents", files)
    settings = make_settings(tmp_path, agents=agents, auth_api_keys=keys.lines())
    async with running_gateway(settings) as gateway:
        task_id = await start_until_first_step(gateway, keys.alice, "wait: 2")
    # the gateway stopped while step 2 (the scoped agent) was running: the run resumes on the next start

    async with running_gateway(settings) as gateway:
        hosted = gateway.app.state.gateway
        record = await SqlRunStore(hosted.db).get("pipeline", "apikey:alice", task_id)
        assert record is not None and record.caller is not None
        assert (record.caller.name, record.caller.scopes) == ("apikey:alice", frozenset({"reviews:run", "sec:run"}))
        resuming = [task for task in hosted.background if task.get_name().startswith("resume:")]
        assert len(resuming) == 1, "the interrupted run resumes in the background"
        async with asyncio.timeout(WAIT_S):
            await asyncio.gather(*resuming)
        async with authed_client(gateway.agent_url("pipeline"), JSONRPC, api_key(keys.alice)) as client:
            task = await client.get_task(GetTaskRequest(id=task_id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, MessageToJson(task)
    assert output_names(task.artifacts) == ["step-1-counter", "step-2-notes", "result"]
    assert any("resuming after a restart, 1 step(s) already done" in m.parts[0].text for m in task.history)


# --- the check itself ----------------------------------------------------------------------------


def spec_of(text: str) -> AgentSpec:
    return AgentSpec.model_validate(yaml.safe_load(text))


def test_may_call_gives_the_reason_a_direct_call_would_get() -> None:
    policy = AuthPolicy(ApiKeyTable([ApiKey.parse(api_key_line("ci", new_api_key()))]), None)
    vault, echo = spec_of(AGENT_FILES["vault.yaml"]), spec_of(AGENT_FILES["echo.yaml"])
    reader = Identity("apikey:reader", frozenset({"vault:use"}))
    assert policy.may_call(reader, vault, skill="read") is None
    assert policy.may_call(reader, vault, skill="reveal") == (
        "apikey:reader lacks scope(s) vault:reveal required by skill 'reveal' of agent 'vault'"
    )
    with pytest.raises(PermissionDeniedError) as direct:
        policy.authorize(reader, vault, message=True)
    assert policy.may_call(reader, vault) == direct.value.detail
    assert policy.may_call(None, vault) == "agent 'vault' requires an authenticated caller"
    assert policy.may_call(None, echo) is None  # an open agent
    assert policy.may_call(LOCAL_OPERATOR, vault) is None  # the stdio pipe
    assert AuthPolicy.disabled().may_call(None, vault) is None  # auth off: everyone is anonymous


def test_reusing_an_agents_logic_needs_that_agents_scopes() -> None:
    policy = AuthPolicy(ApiKeyTable([ApiKey.parse(api_key_line("ci", new_api_key()))]), None)
    vault = spec_of(AGENT_FILES["vault.yaml"])
    everything = Identity("apikey:all", frozenset({"vault:use", "vault:reveal"}))
    bob = Identity("apikey:bob", frozenset({"vault:use"}))
    assert policy.may_reuse(everything, "gateway.agents.echo:EchoExecutor", [vault]) is None
    assert "vault:reveal" in (policy.may_reuse(bob, "gateway.agents.echo:EchoExecutor", [vault]) or "")
    assert policy.may_reuse(bob, "gateway.agents.style:run", [vault]) is None  # no agent serves it here


def test_a_caller_is_kept_as_json_without_its_credential() -> None:
    alice = Identity("https://id.example.test|alice", frozenset({"a", "b"}), "https://id.example.test", "alice")
    assert Identity.from_json(alice.to_json()) == alice
    assert Identity.from_json(LOCAL_OPERATOR.to_json()) == LOCAL_OPERATOR
    assert Identity.from_json("") is None and Identity.from_json("{not json") is None


# --- cards say what a workflow's steps need -------------------------------------------------------


def step_scopes_of(card: dict[str, Any]) -> dict[str, Any]:
    extensions = card["capabilities"].get("extensions", [])
    found = [e for e in extensions if e["uri"] == STEP_SCOPES_EXTENSION_URI]
    assert len(found) == 1, card["capabilities"]
    assert found[0].get("required", False) is False
    return dict(found[0])


async def test_workflow_cards_say_which_scopes_their_steps_need(team: Team) -> None:
    async with httpx.AsyncClient(base_url=team.gateway.url, timeout=WAIT_S) as http:
        names = ("code-review", "triage", "outer-review", "security-reviewer", "complexity-reviewer")
        cards = {name: (await http.get(f"/agents/{name}/.well-known/agent-card.json")).json() for name in names}
    review = step_scopes_of(cards["code-review"])
    assert review["params"]["scopes"] == ["sec:run"]
    assert review["params"]["agents"] == {
        "complexity-reviewer": [],
        "review-lead": [],
        "security-reviewer": ["sec:run"],
        "style-reviewer": [],
    }
    assert "checked at run time" in review["description"] and "security-reviewer needs sec:run" in review["description"]
    assert step_scopes_of(cards["outer-review"])["params"]["agents"]["security-reviewer"] == ["sec:run"]  # nested
    assert step_scopes_of(cards["triage"])["params"]["scopes"] == ["sec:run"]
    # calling the workflow itself needs only its own scopes (none): bob may run it, and its steps are checked
    assert cards["code-review"]["securityRequirements"] == cards["complexity-reviewer"]["securityRequirements"]
    assert "extensions" not in cards["security-reviewer"]["capabilities"]


def test_an_oauth_flow_on_a_workflow_card_offers_its_steps_scopes_too() -> None:
    issuer = IssuerSettings(issuer=ISSUER, audience="a", jwks={"keys": []}, token_url=f"{ISSUER}/token")
    policy = AuthPolicy(ApiKeyTable([]), JwtVerifier([]), [issuer])
    vault = spec_of(AGENT_FILES["vault.yaml"])
    desk = AgentSpec.model_validate(
        {
            "format": 1,
            "name": "desk",
            "description": "d",
            "scopes": ["desk:use"],
            "skills": [{"id": "desk", "name": "D", "description": "d", "tags": ["t"]}],
            "runtime": {"kind": "workflow", "pattern": "sequential", "participants": ["vault"]},
        }
    )
    security = policy.card_security(desk, {"vault": vault, "desk": desk})
    assert security is not None and security.step_scopes == {"vault": ["vault:reveal", "vault:use"]}
    flow = security.schemes["oauth2"].oauth2_security_scheme.flows.client_credentials
    assert sorted(flow.scopes) == ["desk:use", "vault:reveal", "vault:use"]
    assert [list(r.schemes["oauth2"].list) for r in security.requirements] == [["desk:use"]]
    assert policy.card_security(vault, {"vault": vault}) is not None
    assert policy.card_security(vault, {"vault": vault}).step_scopes is None  # type: ignore[union-attr]


# --- the caller in the checkpoint, on both databases ------------------------------------------------


async def test_a_checkpoint_keeps_its_caller_and_an_older_one_acts_with_no_scopes(db: Database) -> None:  # noqa: F811
    store = SqlRunStore(db)
    alice = Identity("apikey:alice", frozenset({"sec:run"}))
    await store.save(record("t1", owner="apikey:alice", caller=alice))
    loaded = await store.get("flow", "apikey:alice", "t1")
    assert loaded is not None and loaded.caller == alice
    assert caller_of(run_owner(loaded)) == alice, "a resumed run acts as its caller, scopes and all"

    await db.write("ALTER TABLE runs DROP COLUMN caller")  # the table as the previous version made it
    await db.migrate()  # the next start adds it back, empty
    older = await store.get("flow", "apikey:alice", "t1")
    assert older is not None and older.caller is None
    assert caller_of(run_owner(older)) == Identity("apikey:alice", frozenset()), "its owner, with no scopes"


# --- a model choosing the next agent is shown only the agents the caller may run ----------------------


def ledger(speaker: str = "", *, satisfied: bool = False) -> Stream:
    """A magentic manager's progress ledger: delegate to ``speaker``, or the request is satisfied."""
    found = {"is_request_satisfied": satisfied, "next_speaker": speaker, "instruction_or_question": "Review the code."}
    return says(json.dumps({**found, "is_in_loop": False, "is_progress_being_made": True, "final_answer": "reviewed"}))


PLAN = says(json.dumps({"facts": [], "plan": ["review the code"]}))


async def prompts(team: Team, count: int) -> list[str]:
    """What the model was sent in its first ``count`` requests, each as one string."""
    return [json.dumps(request.body["messages"]) for request in await team.chat.requests(count)]


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_magentic_manager_is_shown_only_the_team_its_caller_may_run(entry: str, team: Team) -> None:
    team.chat.answer(PLAN, ledger("complexity-reviewer"), ledger(satisfied=True))
    bob = await ASK[entry](team, "review-board", team.keys.bob, CODE)
    assert not bob.failed, bob.everything
    plan, progress, _ = await prompts(team, 3)
    assert "complexity-reviewer" in plan and "security-reviewer" not in plan, plan
    assert "security-reviewer" not in progress, progress
    assert await security_tasks(team, "apikey:bob") == 0
    team.chat.answer(PLAN, ledger(satisfied=True))
    alice = await ASK[entry](team, "review-board", team.keys.alice, CODE)
    assert not alice.failed, alice.everything
    assert "security-reviewer" in (await prompts(team, 4))[3]


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_magentic_manager_naming_a_member_its_caller_may_not_run_fails_the_run(entry: str, team: Team) -> None:
    team.chat.answer(PLAN, ledger("security-reviewer"))
    bob = await ASK[entry](team, "review-board", team.keys.bob, CODE)
    assert bob.failed and REFUSAL in bob.text, bob.everything
    assert await security_tasks(team, "apikey:bob") == 0


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_supervisor_plans_only_with_the_workers_its_caller_may_run(entry: str, team: Team) -> None:
    team.chat.answer(says("1. Look for hard-coded secrets and shell injection in this code"), says("APPROVED"))
    bob = await ASK[entry](team, "review-plan", team.keys.bob, CODE)
    assert not bob.failed, bob.everything
    plan = (await prompts(team, 1))[0]
    assert "complexity-reviewer" in plan and "security-reviewer" not in plan, plan
    assert await security_tasks(team, "apikey:bob") == 0  # the unassigned step went to a worker bob may run
    team.chat.answer(says("1. security-reviewer: look for hard-coded secrets"))
    forced = await ASK[entry](team, "review-plan", team.keys.bob, CODE)
    assert forced.failed and REFUSAL in forced.text, forced.everything
    assert await security_tasks(team, "apikey:bob") == 0


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_chat_manager_is_offered_only_the_speakers_its_caller_may_run(entry: str, team: Team) -> None:
    team.chat.answer(says("complexity-reviewer"))
    bob = await ASK[entry](team, "review-room", team.keys.bob, CODE)
    assert not bob.failed, bob.everything
    asked = (await prompts(team, 1))[0]
    assert "exactly one of: complexity-reviewer" in asked and "security-reviewer" not in asked, asked
    team.chat.answer(says("security-reviewer"))  # named anyway: the run fails with the reason
    forced = await ASK[entry](team, "review-room", team.keys.bob, CODE)
    assert forced.failed and REFUSAL in forced.text, forced.everything
    assert await security_tasks(team, "apikey:bob") == 0


@pytest.mark.parametrize("entry", ENTRIES)
async def test_routing_first_passes_over_an_agent_its_caller_may_not_run(entry: str, team: Team) -> None:
    text = f"Check this code for hard-coded secrets and injection risks\n\n{FENCED}"
    bob = await ASK[entry](team, "review-desk", team.keys.bob, text)
    assert not bob.failed, bob.everything
    assert "Complexity review" in bob.text, bob.everything  # routed to the best match bob may run
    assert not [mark for mark in SECURITY_MARKS if mark in bob.everything], bob.everything
    assert await security_tasks(team, "apikey:bob") == 0
    alice = await ASK[entry](team, "review-desk", team.keys.alice, text)
    assert not alice.failed and "SEC001" in alice.everything, alice.everything


@pytest.mark.parametrize("entry", ENTRIES)
async def test_a_pattern_whose_caller_may_run_no_candidate_fails_at_start(entry: str, team: Team) -> None:
    bob = await ASK[entry](team, "secrets-desk", team.keys.bob, f"Check this code for secrets\n\n{FENCED}")
    assert bob.failed, bob.everything
    assert "this caller may run none of the candidates" in bob.text and REFUSAL in bob.text, bob.text
    assert await security_tasks(team, "apikey:bob") == 0
