"""An ``llm`` agent's tools: allow-listed tools of real MCP servers (stdio and Streamable HTTP) and Python functions.

The model is the scripted OpenAI-compatible server; the MCP servers are real processes (stdio) and
a real uvicorn (HTTP), reached through the gateway's MCP client pool.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState

from adapters.llm import ChatCompletionsRuntime, endpoint_for
from adapters.tools import Toolbox
from gateway.errors import RuntimeLoadError
from gateway.hosting import mcp_clients
from gateway.hosting.mcp_clients import McpClientPool
from gateway.hosting.registry import load_spec
from gateway.hosting.runtimes import StandaloneHost, build_executor
from gateway.runtime import AgentCall, Reply
from gateway.spec import AgentSpec, LlmRuntime, McpToolsSpec
from gateway.testing import RecordingEmitter, RunningGateway, running_gateway
from tests.adapters.llm_server import (
    ScriptedChatServer,
    Stream,
    finish_chunk,
    scripted_chat_server,
    text_chunk,
    tool_chunk,
    usage_chunk,
)
from tests.adapters.mcp_servers import RAW_SERVER, TEST_DIR_ENV, evidence, http_server_process, stdio_server
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.conftest import make_settings

TOKEN = "mcp-http-token-9876543210"
CALL_TIMEOUT_S = 30.0


def calls(*pieces: tuple[str, dict[str, Any]]) -> Stream:
    """A model turn calling each (tool, arguments), in order."""
    chunks = [
        tool_chunk(i, name=name, arguments=json.dumps(args), call_id=f"c{i}") for i, (name, args) in enumerate(pieces)
    ]
    return Stream([*chunks, finish_chunk("tool_calls"), usage_chunk(10, 2)])


def answer(text: str) -> Stream:
    return Stream([text_chunk(text), finish_chunk(), usage_chunk(20, 4)])


def tool_messages(chat: ScriptedChatServer, request: int) -> dict[str, str]:
    """tool_call_id -> content of the tool messages the model got in request ``request``."""
    return {m["tool_call_id"]: m["content"] for m in chat.received[request].body["messages"] if m["role"] == "tool"}


def offered(chat: ScriptedChatServer, request: int = 0) -> list[str]:
    return [tool["function"]["name"] for tool in chat.received[request].body.get("tools", [])]


@pytest.fixture
async def chat() -> AsyncIterator[ScriptedChatServer]:
    async with scripted_chat_server() as server:
        yield server


@pytest.fixture
def evidence_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "evidence"
    folder.mkdir()
    monkeypatch.setenv(TEST_DIR_ENV, str(folder))
    monkeypatch.setenv("MCP_TOKEN", TOKEN)
    return folder


def agent_file(name: str, **runtime: Any) -> dict[str, Any]:
    skill = {
        "id": "assist",
        "name": "Assist",
        "description": "Answers with tools.",
        "tags": ["tools"],
        "examples": ["x"],
    }
    return {"format": 1, "name": name, "description": "An agent with tools.", "skills": [skill], "runtime": runtime}


async def test_agent_uses_stdio_and_http_mcp_tools_and_a_tool_off_the_allow_list_never_runs(
    chat: ScriptedChatServer, tmp_path: Path, evidence_dir: Path
) -> None:
    with http_server_process(bearer=TOKEN) as url:
        agents = tmp_path / "agents"
        agents.mkdir()
        runtime = {
            "kind": "llm",
            "system_prompt": "Use the tools.",
            "mcp_servers": [
                stdio_server(tools=["add", "countdown"]),
                {
                    "name": "remote",
                    "url": url,
                    "credentials": {"kind": "bearer", "token_env": "MCP_TOKEN"},
                    "tools": ["shout"],
                },
            ],
        }
        (agents / "helper.yaml").write_text(yaml.safe_dump(agent_file("helper", **runtime)))
        chat.answer(
            calls(("add", {"a": 2, "b": 3}), ("countdown", {"steps": 2})),
            calls(("shout", {"text": "done"}), ("delete_everything", {})),
            answer("2 + 3 = 5, and DONE."),
        )
        settings = make_settings(tmp_path, agents=agents, llm_base_url=chat.base_url, llm_model="m")
        message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="add 2 and 3")])
        streaming = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
        statuses: list[str] = []
        async with (
            running_gateway(settings) as gateway,
            a2a_client(gateway.agent_url("helper"), streaming) as client,
            asyncio.timeout(CALL_TIMEOUT_S),
        ):
            final = None
            async for event in client.send_message(SendMessageRequest(message=message)):
                if event.HasField("status_update"):
                    final = event.status_update.status
                    statuses += [p.text for p in final.message.parts]
    assert final is not None and final.state == TaskState.TASK_STATE_COMPLETED, statuses
    assert final.message.parts[0].text == "2 + 3 = 5, and DONE."
    assert offered(chat) == ["add", "countdown", "shout"], "exactly the allow-listed tools, from the servers' lists"
    add_tool = chat.received[0].body["tools"][0]["function"]
    assert add_tool["description"] == "Adds two integers."
    assert set(add_tool["parameters"]["properties"]) == {"a", "b"}
    assert tool_messages(chat, 1) == {"c0": "5", "c1": "lift-off after 2 steps"}
    second = tool_messages(chat, 2)
    assert second["c0"] == "DONE"
    assert second["c1"] == "ERROR: there is no tool 'delete_everything' here; the tools are: add, countdown, shout"
    assert evidence(evidence_dir, "delete_everything") == [], "a tool off the allow-list never runs"
    assert evidence(evidence_dir, "add") == ["2+3"]
    assert evidence(evidence_dir, "admitted"), "the HTTP server got the bearer token named by env"
    for status in ("helper: calling add", "helper: countdown: step 1 of 2", "helper: countdown: step 2 of 2"):
        assert status in statuses
    assert "helper: calling shout" in statuses


def runtime_with_tools(chat: ScriptedChatServer, pool: McpClientPool, **runtime: Any) -> ChatCompletionsRuntime:
    spec = AgentSpec.model_validate(agent_file("helper", kind="llm", **runtime))
    assert isinstance(spec.runtime, LlmRuntime)
    settings = make_settings(Path("."), llm_base_url=chat.base_url, llm_model="m")
    toolbox = Toolbox(spec, spec.runtime, pool)
    return ChatCompletionsRuntime(spec.name, spec.runtime, endpoint_for(spec, settings), toolbox)


@pytest.fixture
async def pool(evidence_dir: Path) -> AsyncIterator[McpClientPool]:
    clients = McpClientPool()
    yield clients
    await clients.aclose()


async def ask(runtime: ChatCompletionsRuntime, text: str = "go") -> tuple[Reply, RecordingEmitter]:
    emit = RecordingEmitter()
    async with asyncio.timeout(CALL_TIMEOUT_S):
        return await runtime(AgentCall(text=text), emit), emit


async def test_python_function_tools_get_their_schema_from_the_signature(
    chat: ScriptedChatServer, pool: McpClientPool
) -> None:
    functions = ["multiply", "lookup", "broken"]
    tools = [{"function": f"tests.adapters.tool_functions:{name}"} for name in functions]
    runtime = runtime_with_tools(chat, pool, tools=tools, handoffs=["critic"])
    chat.answer(
        calls(("multiply", {"a": 6, "b": 7}), ("lookup", {"key": "billing"}), ("broken", {"path": "/etc/x"})),
        calls(("multiply", {"a": "six"})),
        answer("42, owned by platform-team."),
    )
    reply, _ = await ask(runtime)
    assert (reply.state, reply.text) == ("completed", "42, owned by platform-team.")
    assert reply.usage is not None and (reply.usage.input_tokens, reply.usage.output_tokens) == (40, 8)
    assert offered(chat) == ["transfer_to_critic", "multiply", "lookup", "broken"]
    multiply = chat.received[0].body["tools"][1]["function"]
    assert multiply["description"] == "Multiplies two numbers."
    assert multiply["parameters"]["required"] == ["a", "b"]
    first = tool_messages(chat, 1)
    assert first["c0"] == "42.0"
    assert first["c1"] == '{"key": "billing", "owner": "platform-team"}'
    assert first["c2"] == "ERROR: broken raised FileNotFoundError: no such file: /etc/x"
    assert tool_messages(chat, 2)["c0"].startswith("ERROR: invalid arguments for multiply")


async def test_a_function_tool_past_its_timeout_is_an_error_for_the_model(
    chat: ScriptedChatServer, pool: McpClientPool
) -> None:
    tools = [{"function": "tests.adapters.tool_functions:forever", "timeout_s": 0.2}]
    chat.answer(calls(("forever", {})), answer("gave up"))
    reply, _ = await ask(runtime_with_tools(chat, pool, tools=tools))
    assert reply.text == "gave up"
    assert tool_messages(chat, 1) == {"c0": "ERROR: forever did not finish within 0.2s"}


async def test_an_mcp_call_that_never_ends_times_out_and_the_server_is_told(
    chat: ScriptedChatServer, pool: McpClientPool, evidence_dir: Path
) -> None:
    servers = [stdio_server(tools=["countdown"], timeout_s=0.5)]
    chat.answer(calls(("countdown", {"steps": 0})), answer("it hung"))
    reply, emit = await ask(runtime_with_tools(chat, pool, mcp_servers=servers))
    assert (reply.state, reply.text) == ("completed", "it hung")
    assert tool_messages(chat, 1) == {"c0": "ERROR: tool countdown of MCP server tools did not finish within 0.5s"}
    assert "helper: countdown failed: tool countdown of MCP server tools did not finish within 0.5s" in (
        emit.progress_messages
    )


async def test_a_malformed_mcp_result_reaches_the_model_as_an_error(
    chat: ScriptedChatServer, pool: McpClientPool
) -> None:
    servers = [{"name": "raw", "command": [sys.executable, str(RAW_SERVER)], "tools": ["broken"]}]
    chat.answer(calls(("broken", {})), answer("the tool is broken"))
    reply, _ = await ask(runtime_with_tools(chat, pool, mcp_servers=servers))
    assert reply.state == "completed"
    assert tool_messages(chat, 1)["c0"].startswith("ERROR: MCP server raw answered broken with a malformed result")


async def test_a_tool_error_result_reaches_the_model_as_an_error(chat: ScriptedChatServer, pool: McpClientPool) -> None:
    chat.answer(calls(("refuse", {"reason": "quota exceeded"})), answer("no quota"))
    reply, _ = await ask(runtime_with_tools(chat, pool, mcp_servers=[stdio_server(tools=["refuse"])]))
    assert reply.state == "completed"
    assert tool_messages(chat, 1) == {"c0": "ERROR: Error executing tool refuse: quota exceeded"}


def system_prompt(chat: ScriptedChatServer, request: int = 0) -> str:
    (system,) = [m["content"] for m in chat.received[request].body["messages"] if m["role"] == "system"]
    return str(system)


async def test_a_server_that_hangs_leaves_its_tools_out_and_the_model_is_told(
    chat: ScriptedChatServer, pool: McpClientPool
) -> None:
    servers = [stdio_server("--hang", tools=["add"], start_timeout_s=1)]
    tools = [{"function": "tests.adapters.tool_functions:multiply"}]
    chat.answer(answer("I cannot add right now."))
    reply, emit = await ask(runtime_with_tools(chat, pool, mcp_servers=servers, tools=tools, system_prompt="Help."))
    assert reply.state == "completed" and reply.text == "I cannot add right now."
    assert offered(chat) == ["multiply"], "the other tools are offered as usual"
    assert system_prompt(chat) == (
        "Help.\n\nThese tools are unavailable right now: add. If the request needs them, say that it cannot be "
        "done now instead of guessing what they would answer."
    )
    assert "helper: answering without the tools of MCP server(s) tools (unavailable)" in emit.progress_messages


async def test_an_allow_listed_tool_the_server_lacks_fails_the_task(
    chat: ScriptedChatServer, pool: McpClientPool
) -> None:
    reply, _ = await ask(runtime_with_tools(chat, pool, mcp_servers=[stdio_server(tools=["add", "teleport"])]))
    assert reply.state == "failed" and "MCP server tools has no tool(s) teleport; it has: add," in reply.text


def test_an_allow_listed_tool_the_server_lacks_stops_the_start(tmp_path: Path, evidence_dir: Path) -> None:
    settings = make_settings(tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    spec = AgentSpec.model_validate(agent_file("helper", kind="llm", mcp_servers=[stdio_server(tools=["teleport"])]))
    with pytest.raises(RuntimeLoadError, match=r"helper: MCP server tools has no tool\(s\) teleport; it has: add,"):
        build_executor(spec, StandaloneHost(settings))


async def send_text(gateway: RunningGateway, agent: str, text: str) -> tuple[TaskState, str]:
    """The final state and text of a message to ``agent``."""
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text=text)])
    final = None
    async with a2a_client(gateway.agent_url(agent), BINDINGS[0]) as client, asyncio.timeout(CALL_TIMEOUT_S):
        async for event in client.send_message(SendMessageRequest(message=message)):
            final = event.task.status if event.HasField("task") else event.status_update.status
    assert final is not None
    return final.state, final.message.parts[0].text


async def test_an_agent_whose_server_is_down_at_start_answers_without_its_tools_until_it_answers(
    chat: ScriptedChatServer,
    tmp_path: Path,
    evidence_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(mcp_clients, "OUT_OF_SERVICE_S", 0.1)  # re-probed every 0.1 s (default: 30 s)
    ready = tmp_path / "ready"
    runtime = {"kind": "llm", "mcp_servers": [stdio_server("--until", str(ready), tools=["add"])]}
    agents = tmp_path / "agents"
    agents.mkdir()
    (agents / "helper.yaml").write_text(yaml.safe_dump(agent_file("helper", **runtime)))
    settings = make_settings(tmp_path, agents=agents, llm_base_url=chat.base_url, llm_model="m")
    chat.answer(answer("no tools yet"), answer("still none"), calls(("add", {"a": 2, "b": 3})), answer("5"))
    async with running_gateway(settings) as gateway:
        assert await send_text(gateway, "helper", "add 2 and 3") == (TaskState.TASK_STATE_COMPLETED, "no tools yet")
        assert await send_text(gateway, "helper", "add 2 and 3") == (TaskState.TASK_STATE_COMPLETED, "still none")
        assert offered(chat, 0) == offered(chat, 1) == []
        assert "These tools are unavailable right now: add." in system_prompt(chat, 1)
        ready.touch()
        (probing,) = [task for task in gateway.app.state.gateway.background if task.get_name() == "mcp:probe"]
        await asyncio.wait_for(asyncio.shield(probing), CALL_TIMEOUT_S)  # it ends once the server listed its tools
        assert await send_text(gateway, "helper", "add 2 and 3") == (TaskState.TASK_STATE_COMPLETED, "5")
    assert offered(chat, 2) == ["add"] and tool_messages(chat, 3) == {"c0": "5"}
    assert not any(m["role"] == "system" for m in chat.received[2].body["messages"]), "no note once it is back"
    assert caplog.text.count("helper answers without the tools of MCP server tools until it can be reached") == 1
    assert len(evidence(evidence_dir, "started")) == 1, "the session the probe opened serves the calls"


async def test_a_server_that_dies_is_restarted_for_the_next_call(
    chat: ScriptedChatServer, pool: McpClientPool, evidence_dir: Path
) -> None:
    chat.answer(calls(("exit_now", {})), calls(("add", {"a": 1, "b": 1})), answer("recovered"))
    reply, _ = await ask(runtime_with_tools(chat, pool, mcp_servers=[stdio_server(tools=["exit_now", "add"])]))
    assert reply.text == "recovered"
    assert tool_messages(chat, 1)["c0"] == "ERROR: tool exit_now of MCP server tools failed: Connection closed"
    assert tool_messages(chat, 2) == {"c0": "2"}
    assert len(evidence(evidence_dir, "started")) == 2


def test_a_missing_server_program_or_function_is_refused_at_start() -> None:
    settings = make_settings(Path("."), llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    missing = agent_file(
        "helper", kind="llm", mcp_servers=[{"name": "gone", "command": ["no-such-mcp"], "tools": ["x"]}]
    )
    with pytest.raises(RuntimeLoadError, match="helper: MCP server gone: no program 'no-such-mcp'"):
        build_executor(AgentSpec.model_validate(missing), StandaloneHost(settings))
    bad = agent_file("helper", kind="llm", tools=[{"function": "tests.adapters.tool_functions:nothing"}])
    with pytest.raises(RuntimeLoadError, match="has no attribute 'nothing'"):
        build_executor(AgentSpec.model_validate(bad), StandaloneHost(settings))


def test_tool_names_must_be_unique_and_not_handoffs() -> None:
    twice = agent_file(
        "helper",
        kind="llm",
        mcp_servers=[stdio_server(tools=["add"])],
        tools=[{"function": "tests.adapters.tool_functions:multiply", "name": "add"}],
    )
    with pytest.raises(ValueError, match=r"tool names must be unique across mcp_servers and tools: \['add'\]"):
        AgentSpec.model_validate(twice)
    with pytest.raises(ValueError, match=r"give command .* or url"):
        AgentSpec.model_validate(agent_file("helper", kind="llm", mcp_servers=[{"tools": ["add"]}]))


async def test_an_agent_whose_server_keeps_failing_answers_without_its_tools_and_logs_it_once(
    chat: ScriptedChatServer, pool: McpClientPool, caplog: pytest.LogCaptureFixture
) -> None:
    crash = "import sys; sys.stderr.write('bad config\\n'); sys.exit(2)"
    server = {"name": "flaky", "command": [sys.executable, "-c", crash], "tools": ["add"]}
    runtime = runtime_with_tools(chat, pool, mcp_servers=[server])
    for n in range(mcp_clients.MAX_FAILURES + 1):  # the last one while the server is out of service
        chat.answer(answer(f"answer {n}"))
        reply, _ = await ask(runtime)
        assert reply.state == "completed" and reply.text == f"answer {n}", reply.text
        assert offered(chat, n) == [] and "unavailable right now: add." in system_prompt(chat, n)
    assert pool.out_of_service(McpToolsSpec.model_validate(server)) is not None
    assert caplog.text.count("helper answers without the tools of MCP server flaky until it can be reached") == 1
    assert "its stderr ends: bad config" in caplog.text


def test_a_server_program_is_looked_for_beside_the_agent_file(tmp_path: Path) -> None:
    (tmp_path / "server.py").write_text("")
    file = agent_file("helper", kind="llm", mcp_servers=[{"name": "mine", "command": ["./server.py"], "tools": ["x"]}])
    (tmp_path / "helper.yaml").write_text(yaml.safe_dump(file))
    settings = make_settings(tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    assert build_executor(load_spec(tmp_path / "helper.yaml"), StandaloneHost(settings)) is not None
    (tmp_path / "server.py").unlink()
    with pytest.raises(RuntimeLoadError, match=r"helper: MCP server mine: no program '\./server\.py'"):
        build_executor(load_spec(tmp_path / "helper.yaml"), StandaloneHost(settings))


async def test_the_text_of_each_turn_streams_into_one_reply(chat: ScriptedChatServer, pool: McpClientPool) -> None:
    tools = [{"function": "tests.adapters.tool_functions:multiply"}]
    first = Stream([text_chunk("Let me work it out."), tool_chunk(0, name="multiply", arguments='{"a": 6, "b": 7}')])
    chat.answer(first, answer("It is 42."))
    reply, emit = await ask(runtime_with_tools(chat, pool, tools=tools))
    assert reply.text == "Let me work it out.\n\nIt is 42."
    assert emit.chunks() == [("result", "Let me work it out.", False, False), ("result", "\n\nIt is 42.", True, True)]
    assert emit.progress_messages == ["helper: thinking", "helper: calling multiply", "helper: done"]
    assistant = chat.received[1].body["messages"][-2]
    assert (
        assistant["content"] == "Let me work it out." and assistant["tool_calls"][0]["function"]["name"] == "multiply"
    )
