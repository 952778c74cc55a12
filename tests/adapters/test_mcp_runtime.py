"""The ``mcp`` runtime: tools of a real MCP server (stdio) published as signed A2A agents, on every binding."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import mcp_types
import pytest
import yaml
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError
from google.protobuf.json_format import MessageToDict
from mcp.client import Client as McpClient
from mcp.shared.subscriptions import ToolsListChanged

from adapters.mcp import McpToolRuntime, takes_any_string
from gateway.app import create_app
from gateway.errors import PeerUnavailableError, RuntimeLoadError
from gateway.hosting import mcp_clients
from gateway.hosting.executor import data_part
from gateway.spec import McpRuntime, McpServerSpec
from gateway.testing import RunningGateway, running_gateway
from tests.adapters.framework_harness import call_tool
from tests.adapters.mcp_servers import TEST_DIR_ENV, TOOL_SERVER, evidence, http_server_process, stdio_server
from tests.adapters.mcp_tool_server import PIXEL_PNG
from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, artifact_texts
from tests.conftest import make_settings

WAIT_S = 30.0


def mcp_agent(name: str, tool: str, *, description: str = "", **server: Any) -> dict[str, Any]:
    """An agent file publishing ``tool`` of the stdio test server (no skills: they come from the tool)."""
    return {
        "format": 1,
        "name": name,
        "description": description or f"The {tool} tool as an agent.",
        "runtime": {"kind": "mcp", "server": stdio_server(**server), "tool": tool, "timeout_s": 20},
    }


def write_agents(folder: Path, *files: dict[str, Any]) -> Path:
    folder.mkdir(exist_ok=True)
    for file in files:
        (folder / f"{file['name']}.yaml").write_text(yaml.safe_dump(file))
    return folder


@pytest.fixture
def evidence_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "evidence"
    folder.mkdir()
    monkeypatch.setenv(TEST_DIR_ENV, str(folder))
    return folder


@pytest.fixture
async def gateway(tmp_path: Path, evidence_dir: Path) -> AsyncIterator[RunningGateway]:
    pipeline = {
        "format": 1,
        "name": "shout-then-count",
        "description": "Shouts the text, then counts its words.",
        "skills": [{"id": "pipe", "name": "Pipe", "description": "Two MCP tools in a row.", "tags": ["mcp"]}],
        "runtime": {"kind": "workflow", "pattern": "sequential", "participants": ["shout", "word-count"]},
    }
    agents = write_agents(
        tmp_path / "agents",
        mcp_agent("adder", "add"),
        mcp_agent("shout", "shout"),
        mcp_agent("word-count", "word_count"),
        mcp_agent("stats", "stats"),
        mcp_agent("countdown", "countdown"),
        mcp_agent("refuser", "refuse"),
        mcp_agent("snapshot", "snapshot"),
        mcp_agent("confirmer", "confirm"),
        mcp_agent("ponderer", "ponder"),
        pipeline,
    )
    async with running_gateway(make_settings(tmp_path, agents=agents)) as running:
        yield running


def data_message(data: dict[str, Any]) -> Message:
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[data_part(data)])


def text_message(text: str) -> Message:
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])


async def run(gateway: RunningGateway, agent: str, binding: Binding, message: Message) -> tuple[Task, list[str]]:
    """Send ``message``; the task as stored at the end, and the status texts streamed on the way."""
    statuses: list[str] = []
    task_id = ""
    async with a2a_client(gateway.agent_url(agent), binding) as client, asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=message)):
            if event.HasField("task"):
                task_id = event.task.id
            if event.HasField("status_update"):
                task_id = event.status_update.task_id
                statuses += [p.text for p in event.status_update.status.message.parts]
        return await client.get_task(GetTaskRequest(id=task_id)), statuses


def structured(task: Task) -> Any:
    (artifact,) = [a for a in task.artifacts if a.name == "structured"]
    return MessageToDict(artifact.parts[0].data)


@pytest.mark.parametrize("binding", BINDINGS, ids=lambda b: b.id)
async def test_a_tool_answers_as_an_agent_on_every_binding(gateway: RunningGateway, binding: Binding) -> None:
    task, _ = await run(gateway, "adder", binding, data_message({"a": 2, "b": 40}))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    assert artifact_texts(task) == ["42"]
    assert [a.name for a in task.artifacts] == ["result"], "{'result': 42} only repeats the text"
    task, _ = await run(gateway, "shout", binding, text_message("hello there"))
    assert artifact_texts(task) == ["HELLO THERE"]
    task, _ = await run(gateway, "stats", binding, text_message("hello big world"))
    assert structured(task) == {"words": 3, "chars": 15}


async def test_the_card_is_signed_and_its_skill_comes_from_the_tool(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient() as http:
        card = (await http.get(f"{gateway.agent_url('adder')}/.well-known/agent-card.json")).json()
    assert card["signatures"], "every card the gateway serves is signed"
    (skill,) = card["skills"]
    assert skill["id"] == "add" and skill["tags"] == ["mcp", "tool", "add"]
    assert skill["description"] == (
        "Adds two integers. Send a JSON object as a data part (or as text): a (integer, required), "
        "b (integer, required)."
    )
    assert skill["examples"] == ['{"a": 1, "b": 1}']
    bindings = {interface["protocolBinding"] for interface in card["supportedInterfaces"]}
    assert bindings == {"JSONRPC", "HTTP+JSON", "GRPC"}


async def test_progress_streams_as_status_updates(gateway: RunningGateway) -> None:
    streaming = next(b for b in BINDINGS if b.id == "grpc-stream")
    task, statuses = await run(gateway, "countdown", streaming, data_message({"steps": 3}))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert [s for s in statuses if s.startswith("step")] == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert artifact_texts(task) == ["lift-off after 3 steps"]


@pytest.mark.parametrize("binding", [BINDINGS[0], BINDINGS[4]], ids=lambda b: b.id)
async def test_images_and_blobs_are_file_parts_and_text_resources_text(
    gateway: RunningGateway, binding: Binding
) -> None:
    task, _ = await run(gateway, "snapshot", binding, text_message("the sky"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    artifacts = {artifact.name: list(artifact.parts) for artifact in task.artifacts}
    assert sorted(artifacts) == ["content-1", "content-2", "content-3", "result"]
    assert artifacts["result"][0].text == "the sky: one pixel"
    (image,) = artifacts["content-1"]
    assert (image.raw, image.media_type, image.filename) == (PIXEL_PNG, "image/png", "content-1.png")
    (pdf,) = artifacts["content-2"]
    assert (pdf.raw, pdf.media_type, pdf.filename) == (b"%PDF-1.7", "application/pdf", "report.pdf")
    (note,) = artifacts["content-3"]
    assert note.text == "about the sky"


async def test_a_tool_error_fails_the_task_with_its_message(gateway: RunningGateway) -> None:
    task, _ = await run(gateway, "refuser", BINDINGS[0], text_message("disk full"))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert task.status.message.parts[0].text == "refuser: Error executing tool refuse: disk full"


def answer(task: Task, text: str = "", data: dict[str, Any] | None = None) -> Message:
    """A follow-up on ``task``."""
    message = data_message(data) if data is not None else text_message(text)
    message.task_id, message.context_id = task.id, task.context_id
    return message


@pytest.mark.parametrize("binding", [BINDINGS[0], BINDINGS[4]], ids=lambda b: b.id)
async def test_a_tool_question_is_input_required_and_the_follow_up_answers_it(
    gateway: RunningGateway, binding: Binding
) -> None:
    asked, _ = await run(gateway, "confirmer", binding, text_message("delete the logs"))
    assert asked.status.state == TaskState.TASK_STATE_INPUT_REQUIRED, asked.status
    assert asked.status.message.parts[0].text == "May I delete the logs?"
    (schema,) = [MessageToDict(a.parts[0].data) for a in asked.artifacts if a.name == "elicitation"]
    assert schema["properties"] == {"approve": {"type": "boolean"}}
    done, _ = await run(gateway, "confirmer", binding, answer(asked, data={"approve": True}))
    assert done.status.state == TaskState.TASK_STATE_COMPLETED, done.status
    assert 'delete the logs: accept {"approve": true}' in artifact_texts(done)
    for reply, said in (("no", 'accept {"approve": false}'), ("decline", "decline null"), ("cancel", "cancel null")):
        asked, _ = await run(gateway, "confirmer", binding, text_message("delete the logs"))
        done, _ = await run(gateway, "confirmer", binding, answer(asked, reply))
        assert f"delete the logs: {said}" in artifact_texts(done), reply


async def test_a_request_for_input_the_gateway_cannot_relay_fails_the_task_with_the_reason(
    gateway: RunningGateway,
) -> None:
    task, _ = await run(gateway, "ponderer", BINDINGS[0], text_message("tides"))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert task.status.message.parts[0].text == (
        "ponderer: the tool asks for sampling/createMessage, which the gateway cannot answer for its caller"
    )


async def test_a_task_waiting_on_a_tool_question_can_be_canceled(gateway: RunningGateway) -> None:
    asked, _ = await run(gateway, "confirmer", BINDINGS[0], text_message("delete the logs"))
    async with a2a_client(gateway.agent_url("confirmer"), BINDINGS[0]) as client, asyncio.timeout(WAIT_S):
        canceled = await client.cancel_task(CancelTaskRequest(id=asked.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    runtime = gateway.app.state.gateway.agents["confirmer"].handler.agent_executor.tool_runtime
    assert not runtime.asked(asked.id), "the question is dropped with the task"


async def test_a_tool_question_reaches_an_mcp_client_of_the_gateway_as_an_elicitation(
    tmp_path: Path, evidence_dir: Path
) -> None:
    agents = write_agents(tmp_path / "agents", mcp_agent("confirmer", "confirm"))
    async with running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["confirmer"])) as gateway:
        answered = await call_tool(gateway, "confirmer", "delete the logs", answer="yes")
    assert answered.questions == ["May I delete the logs?"]
    assert answered.outcome["state"] == "completed"
    assert answered.outcome["text"] == 'delete the logs: accept {"approve": true}'


async def test_an_answer_that_does_not_fit_the_question_asks_again(gateway: RunningGateway) -> None:
    asked, _ = await run(gateway, "confirmer", BINDINGS[0], text_message("delete the logs"))
    again, _ = await run(gateway, "confirmer", BINDINGS[0], answer(asked, data={"approve": "maybe"}))
    assert again.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert again.status.message.parts[0].text.startswith("May I delete the logs? ('maybe' is not of type 'boolean'")
    done, _ = await run(gateway, "confirmer", BINDINGS[0], answer(again, "yes"))
    assert 'delete the logs: accept {"approve": true}' in artifact_texts(done)


@pytest.mark.parametrize("binding", [BINDINGS[0], BINDINGS[4]], ids=lambda b: b.id)
async def test_arguments_that_do_not_match_the_schema_are_invalid_params(
    gateway: RunningGateway, binding: Binding
) -> None:
    async with a2a_client(gateway.agent_url("adder"), binding) as client, asyncio.timeout(WAIT_S):
        with pytest.raises(InvalidParamsError, match=r"adder: a: 'two' is not of type 'integer'"):
            await anext(client.send_message(SendMessageRequest(message=data_message({"a": "two", "b": 1}))))
        with pytest.raises(InvalidParamsError, match="adder takes a JSON object"):
            await anext(client.send_message(SendMessageRequest(message=text_message("two plus one"))))


def _text_schema(text_schema: dict[str, Any], **schema: Any) -> dict[str, Any]:
    return {"type": "object", "properties": {"text": text_schema}, "required": ["text"], **schema}


def _text_tool(schema: dict[str, Any]) -> McpToolRuntime:
    tool = mcp_types.Tool(name="echo", input_schema=schema)
    runtime = McpRuntime(kind="mcp", server=McpServerSpec(command=["true"]), tool="echo")
    return McpToolRuntime("echoer", runtime, tool, mcp_clients.McpClientPool({}))


def test_a_text_is_checked_against_the_schema_unless_any_text_fits_it() -> None:
    plain = _text_schema({"type": "string", "title": "Text"}, title="echoArguments")
    assert takes_any_string(plain, "text")
    assert _text_tool(plain).arguments("anything at all", ()) == {"text": "anything at all"}
    short, crowded = _text_schema({"type": "string", "maxLength": 3}), _text_schema({"type": "string"}, minProperties=2)
    assert not takes_any_string(short, "text") and not takes_any_string(crowded, "text")
    with pytest.raises(InvalidParamsError, match="echoer: text: 'toolong' is too long"):
        _text_tool(short).arguments("toolong", ())
    with pytest.raises(InvalidParamsError, match=r"echoer: the arguments: .* does not have enough properties"):
        _text_tool(crowded).arguments("hi", ())


async def test_a_cancel_cancels_the_mcp_call(gateway: RunningGateway, evidence_dir: Path) -> None:
    binding = BINDINGS[0]
    async with a2a_client(gateway.agent_url("countdown"), binding) as client, asyncio.timeout(WAIT_S):
        request = SendMessageRequest(message=data_message({"steps": 0}))
        request.configuration.return_immediately = True
        task = await client.send_message(request).__anext__()
        task_id = task.task.id if task.HasField("task") else task.status_update.task_id
        # the tool says when it waits (another process: no event to wait on)
        while evidence(evidence_dir, "countdown") != ["waiting"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        assert canceled.status.state == TaskState.TASK_STATE_CANCELED
        while evidence(evidence_dir, "countdown") != ["waiting", "cancelled"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_mcp_agents_are_steps_of_a_sequential_workflow(gateway: RunningGateway) -> None:
    task, _ = await run(gateway, "shout-then-count", BINDINGS[4], text_message("a small step"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    assert "3 words" in task.status.message.parts[0].text


async def test_one_server_process_serves_every_agent_and_task(gateway: RunningGateway, evidence_dir: Path) -> None:
    await asyncio.gather(*(run(gateway, "adder", BINDINGS[0], data_message({"a": i, "b": 1})) for i in range(5)))
    await run(gateway, "shout", BINDINGS[0], text_message("x"))
    # one probe at start for the six agents of the same server, then one session shared by every task
    assert len(evidence(evidence_dir, "started")) == 1 + 1


def test_a_tool_the_server_does_not_have_stops_the_start(tmp_path: Path, evidence_dir: Path) -> None:
    settings = make_settings(tmp_path, agents=write_agents(tmp_path / "b", mcp_agent("teleport", "teleport")))
    with pytest.raises(RuntimeLoadError, match=r"teleport: MCP server tools has no tool 'teleport'; it has: add, "):
        create_app(settings)


async def refused(gateway: RunningGateway, agent: str) -> str:
    """The message of the PeerUnavailableError a message to ``agent`` gets (no task is made)."""
    async with a2a_client(gateway.agent_url(agent), BINDINGS[0]) as client, asyncio.timeout(WAIT_S):
        with pytest.raises(PeerUnavailableError) as caught:
            await anext(client.send_message(SendMessageRequest(message=text_message("hi"))))
    return str(caught.value)


async def card_of(gateway: RunningGateway, agent: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway.agent_url(agent)}/.well-known/agent-card.json")
    return dict(response.json())


async def test_an_unreachable_or_hanging_server_leaves_only_its_agents_out_of_service(
    tmp_path: Path, evidence_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = mcp_agent("gone", "add")
    missing["runtime"]["server"] = {"name": "ghost", "command": ["no-such-mcp-server"]}
    hang = mcp_agent("hang", "shout", start_timeout_s=1)
    hang["runtime"]["server"]["command"] = [sys.executable, hang["runtime"]["server"]["command"][1], "--hang"]
    hang["skills"] = [{"id": "loud", "name": "Loud", "description": "Says it louder.", "tags": ["mcp"]}]
    agents = write_agents(tmp_path / "agents", missing, hang, mcp_agent("adder", "add"))
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        assert "gone is out of service: MCP server ghost cannot start: no program 'no-such-mcp-server'" in (
            await refused(gateway, "gone")
        )
        assert "hang is out of service: MCP server tools did not start within 1s" in await refused(gateway, "hang")
        (skill,) = (await card_of(gateway, "gone"))["skills"]
        assert skill["id"] == "add" and "its schema is not known yet" in skill["description"]
        (skill,) = (await card_of(gateway, "hang"))["skills"]
        assert skill["id"] == "loud", "the file's skills, as the file gives them"
        task, _ = await run(gateway, "adder", BINDINGS[0], data_message({"a": 1, "b": 2}))
        assert artifact_texts(task) == ["3"], "the other agents serve as usual"
    assert caplog.text.count("gone starts out of service: MCP server ghost cannot start") == 1


async def test_an_agent_whose_server_was_down_at_start_comes_into_service_when_it_answers(
    tmp_path: Path, evidence_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_clients, "OUT_OF_SERVICE_S", 0.1)  # re-probed every 0.1 s (default: 30 s)
    ready = tmp_path / "ready"
    late = mcp_agent("late", "add")
    late["runtime"]["server"] = stdio_server("--until", str(ready))
    typo = mcp_agent("late-typo", "teleport")
    typo["runtime"]["server"] = stdio_server("--until", str(ready))
    agents = write_agents(tmp_path / "agents", late, typo)
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        assert (
            f"late is out of service: MCP server tools exited before its session started; its stderr ends: "
            f"not ready: no {ready}" in await refused(gateway, "late")
        )
        ready.touch()
        (probing,) = [task for task in gateway.app.state.gateway.background if task.get_name() == "mcp:probe"]
        await asyncio.wait_for(asyncio.shield(probing), WAIT_S)  # it ends once every waiting server listed its tools
        card = await card_of(gateway, "late")
        assert card["signatures"] and card["skills"][0]["description"].startswith("Adds two integers.")
        spec = gateway.app.state.gateway.specs["late"]
        assert spec.skills[0].description.startswith("Adds two integers."), "every reader sees the tool's skill"
        assert {i["protocolBinding"] for i in card["supportedInterfaces"]} == {"JSONRPC", "HTTP+JSON", "GRPC"}
        for binding in (BINDINGS[0], BINDINGS[4]):
            task, _ = await run(gateway, "late", binding, data_message({"a": 20, "b": 22}))
            assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
            assert artifact_texts(task) == ["42"]
        assert "late-typo is out of service: MCP server tools has no tool 'teleport'" in (
            await refused(gateway, "late-typo")
        ), "a server that answers without the tool keeps its agent out"
    assert len(evidence(evidence_dir, "started")) == 1, "the session the probe opened serves the calls"


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"], ids=["2025", "2026"])
async def test_the_gateways_mcp_tool_of_an_agent_that_comes_into_service_follows_its_tool(
    tmp_path: Path, evidence_dir: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.setattr(mcp_clients, "OUT_OF_SERVICE_S", 0.1)  # re-probed every 0.1 s (default: 30 s)
    ready = tmp_path / "ready"
    late = mcp_agent("late", "add")
    late["runtime"]["server"] = stdio_server("--until", str(ready))
    settings = make_settings(tmp_path, agents=write_agents(tmp_path / "agents", late), mcp_tools=["late"])
    told = asyncio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, mcp_types.ToolListChangedNotification):
            told.set()

    async with (
        running_gateway(settings) as gateway,
        McpClient(f"{gateway.url}/mcp", mode=mode, message_handler=on_message) as client,
        asyncio.timeout(WAIT_S),
    ):
        (before,) = [tool for tool in (await client.list_tools()).tools if tool.name == "late"]
        assert "its schema is not known yet" in (before.description or "")
        if mode == "legacy":
            assert client.server_capabilities.tools and client.server_capabilities.tools.list_changed
            ready.touch()
            await told.wait()
        else:
            async with client.listen(tools_list_changed=True) as subscription:
                ready.touch()
                assert isinstance(await anext(aiter(subscription)), ToolsListChanged)
        (after,) = [tool for tool in (await client.list_tools()).tools if tool.name == "late"]
        result = await client.call_tool("late", {"data": {"a": 20, "b": 22}})
    assert "Adds two integers." in (after.description or ""), after.description
    assert "data" in after.input_schema["properties"], "the tool takes the JSON its skill says it does"
    assert not result.is_error and (result.structured_content or {})["text"] == "42", result.content


async def test_a_server_that_keeps_dying_takes_the_agent_out_of_service_and_stops_with_the_gateway(
    tmp_path: Path, evidence_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(mcp_clients, "MAX_FAILURES", 1)  # the first exit already takes it out (default: 3 in 60 s)
    agents = write_agents(tmp_path / "agents", mcp_agent("crash", "exit_now"), mcp_agent("adder", "add"))
    binding = BINDINGS[0]
    async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
        task, _ = await run(gateway, "crash", binding, text_message(""))
        assert task.status.state == TaskState.TASK_STATE_FAILED
        assert task.status.message.parts[0].text == "crash: tool exit_now of MCP server tools failed: Connection closed"
        async with a2a_client(gateway.agent_url("adder"), binding) as client, asyncio.timeout(WAIT_S):
            with pytest.raises(PeerUnavailableError, match="adder is out of service: MCP server tools ended"):
                await anext(client.send_message(SendMessageRequest(message=data_message({"a": 1, "b": 2}))))
        pids = [int(pid) for pid in evidence(evidence_dir, "started")]
    assert "MCP server tools is out of service" in caplog.text
    for pid in pids:  # the probe's, the one that exited, and none left running by the gateway
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def test_a_tool_of_a_streamable_http_server_is_an_agent_too(tmp_path: Path, evidence_dir: Path) -> None:
    with http_server_process() as url:
        agent = mcp_agent("remote-shout", "shout")
        agent["runtime"]["server"] = {"name": "remote-tools", "url": url}
        agents = write_agents(tmp_path / "agents", agent)
        async with running_gateway(make_settings(tmp_path, agents=agents)) as gateway:
            task, _ = await run(gateway, "remote-shout", BINDINGS[4], text_message("over http"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    assert artifact_texts(task) == ["OVER HTTP"]


async def test_an_mcp_tool_wrapped_as_an_agent_is_an_mcp_tool_of_the_gateway_again(
    tmp_path: Path, evidence_dir: Path
) -> None:
    agents = write_agents(tmp_path / "agents", mcp_agent("countdown", "countdown"))
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with (
        running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["countdown"])) as gateway,
        McpClient(f"{gateway.url}/mcp") as client,
        asyncio.timeout(WAIT_S),
    ):
        result = await client.call_tool("countdown", {"data": {"steps": 2}}, progress_callback=on_progress)
    assert not result.is_error, result.content
    outcome = result.structured_content or {}
    assert outcome["state"] == "completed" and outcome["agent"] == "countdown"
    assert outcome["text"] == "lift-off after 2 steps"
    assert any("step 2 of 2" in message for message in progress), progress


async def test_a_server_beside_the_agent_file_runs_in_its_folder(tmp_path: Path, evidence_dir: Path) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    shutil.copy(TOOL_SERVER, agents / "my_tools.py")
    agent = mcp_agent("local-shout", "shout")
    agent["runtime"]["server"] = {"name": "mine", "command": [sys.executable, "my_tools.py"]}
    missing = mcp_agent("missing", "shout")
    missing["runtime"]["server"] = {"name": "gone", "command": ["./not_here.py"]}
    async with running_gateway(make_settings(tmp_path, agents=write_agents(agents, agent, missing))) as gateway:
        task, _ = await run(gateway, "local-shout", BINDINGS[0], text_message("beside"))
        problem = await refused(gateway, "missing")
    assert artifact_texts(task) == ["BESIDE"]
    assert "missing is out of service: MCP server gone cannot start: no program './not_here.py'" in problem
