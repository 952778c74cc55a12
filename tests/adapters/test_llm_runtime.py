"""The ``llm`` runtime over real HTTP against a scripted OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState

from adapters.llm import ChatCompletionsRuntime, RetryableModelError, build, endpoint_for
from gateway.errors import RuntimeLoadError
from gateway.hosting.executor import RuntimeExecutor
from gateway.hosting.registry import Registry, load_spec
from gateway.hosting.runtimes import StandaloneHost, build_executor
from gateway.runtime import AgentCall, Emitter, FileInput, Reply, Turn, Usage
from gateway.settings import Settings, bundled_agents_dir
from gateway.spec import AgentSpec, LlmRuntime, SkillSpec
from gateway.testing import RecordingEmitter, free_socket, running_gateway
from tests.adapters.llm_server import (
    ScriptedChatServer,
    Status,
    Stream,
    finish_chunk,
    scripted_chat_server,
    text_chunk,
    tool_chunk,
    usage_chunk,
)
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.conftest import make_settings

LLM_AGENTS = bundled_agents_dir() / "llm"
API_KEY = "sk-test-0123456789-secret"
CALL_TIMEOUT_S = 10.0
LLM_ENV = ("BASE_URL", "MODEL", "API_KEY", "TIMEOUT", "INPUT_PRICE_PER_1K", "OUTPUT_PRICE_PER_1K")


def _as_emitter(emitter: RecordingEmitter) -> Emitter:
    return emitter  # a type checker proves the double matches the protocol here


def agent_spec(name: str = "writer", **runtime: Any) -> AgentSpec:
    return AgentSpec(
        format=1,
        name=name,
        description="A test agent.",
        skills=[SkillSpec(id="s", name="S", description="d", tags=["t"], examples=["e"])],
        runtime=LlmRuntime(kind="llm", **runtime),
    )


def llm_settings(base_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"llm_base_url": base_url, "llm_model": "test-model", "llm_api_key": API_KEY}
    return Settings(**{**values, **overrides})


def make_runtime(base_url: str, *, settings: dict[str, Any] | None = None, **runtime: Any) -> ChatCompletionsRuntime:
    spec = agent_spec(**runtime)
    assert isinstance(spec.runtime, LlmRuntime)
    return ChatCompletionsRuntime(
        spec.name, spec.runtime, endpoint_for(spec, llm_settings(base_url, **(settings or {})))
    )


async def ask(runtime: ChatCompletionsRuntime, call: AgentCall | None = None) -> tuple[Reply, RecordingEmitter]:
    emit = RecordingEmitter()
    async with asyncio.timeout(CALL_TIMEOUT_S):
        reply = await runtime(call or AgentCall(text="hi"), _as_emitter(emit))
    return reply, emit


@pytest.fixture
async def chat() -> AsyncIterator[ScriptedChatServer]:
    async with scripted_chat_server() as server:
        yield server


@pytest.fixture
def no_llm_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for suffix in LLM_ENV:
        monkeypatch.delenv(f"SWITCHBOARD_LLM_{suffix}", raising=False)
    return monkeypatch


async def test_streamed_text_becomes_artifact_chunks_and_the_reply(chat: ScriptedChatServer) -> None:
    chat.answer(Stream([text_chunk("Hel"), text_chunk("lo, "), text_chunk("world"), finish_chunk(), usage_chunk(9, 3)]))
    reply, emit = await ask(make_runtime(chat.base_url))
    assert reply.state == "completed" and reply.text == "Hello, world" and not reply.is_handoff
    assert emit.chunks() == [
        ("result", "Hel", False, False),  # the first chunk creates the artifact
        ("result", "lo, ", True, False),
        ("result", "world", True, True),
    ]
    assert emit.progress_messages == ["writer: thinking", "writer: done"]


async def test_system_prompt_history_and_message_are_sent_in_order(chat: ScriptedChatServer) -> None:
    chat.answer(Stream([text_chunk("ok", finish="stop")]))
    call = AgentCall(
        text="Now shorten it.",
        history=(Turn("user", "Write a haiku."), Turn("agent", ""), Turn("agent", "Old pond, a frog jumps.")),
        files=(
            FileInput("notes.md", "text/markdown", text="a ``` fence"),
            FileInput("logo.png", "image/png", raw=b"\x89PNG"),
        ),
        data=({"tone": "calm"},),
    )
    await ask(make_runtime(chat.base_url, system_prompt="You write poems.", model="poet-1"), call)
    (received,) = chat.received
    assert received.path == "/v1/chat/completions"
    body = received.body
    assert body["model"] == "poet-1", "the agent file's model overrides the setting"
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert "tools" not in body, "no handoffs, no tools"
    assert body["messages"] == [
        {"role": "system", "content": "You write poems."},
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Old pond, a frog jumps."},
        {
            "role": "user",
            "content": "Now shorten it.\n\n"
            "File notes.md:\n````\na ``` fence\n````\n\n"
            "File logo.png (image/png, 4 bytes) is not text and is not shown.\n\n"
            '```json\n{\n  "tone": "calm"\n}\n```',
        },
    ]


async def test_transfer_call_becomes_a_handoff_with_the_note(chat: ScriptedChatServer) -> None:
    chat.answer(
        Stream(
            [
                text_chunk("Draft ready. "),
                tool_chunk(0, name="transfer_to_code_critic"),
                tool_chunk(0, arguments='{"rea'),
                tool_chunk(0, arguments='son": "check the '),
                tool_chunk(0, arguments='tone"}'),
                finish_chunk("tool_calls"),
                usage_chunk(20, 7),
            ]
        )
    )
    reply, emit = await ask(make_runtime(chat.base_url, handoffs=["code-critic", "planner"]))
    assert reply.state == "completed"
    assert (reply.handoff_to, reply.handoff_note, reply.text) == ("code-critic", "check the tone", "Draft ready. ")
    assert reply.usage == Usage(20, 7, 0.0)
    assert emit.progress_messages[-1] == "writer: handing off to code-critic"
    tools = chat.received[0].body["tools"]
    assert [t["function"]["name"] for t in tools] == ["transfer_to_code_critic", "transfer_to_planner"]
    assert tools[0]["function"]["parameters"]["properties"]["reason"]["type"] == "string"


async def test_a_tool_it_was_not_offered_is_refused_and_the_model_told(chat: ScriptedChatServer) -> None:
    chat.answer(
        Stream([tool_chunk(0, name="delete_everything", arguments="{}", call_id="c1"), finish_chunk("tool_calls")]),
        Stream([text_chunk("I cannot do that."), finish_chunk()]),
    )
    reply, _ = await ask(make_runtime(chat.base_url, handoffs=["critic"]))
    assert (reply.state, reply.text) == ("completed", "I cannot do that.")
    told = chat.received[1].body["messages"][-1]
    assert told["role"] == "tool" and told["tool_call_id"] == "c1"
    assert told["content"] == "ERROR: there is no tool 'delete_everything' here; the tools are: transfer_to_critic"


@pytest.mark.parametrize(
    ("runtime_prices", "expected_cost"),
    [({}, (1000 * 1.0 + 2000 * 2.0) / 1000), ({"input_price_per_1k": 0.5, "output_price_per_1k": 1.5}, 3.5)],
    ids=["setting-prices", "agent-file-prices"],
)
async def test_usage_is_reported_with_its_cost(
    chat: ScriptedChatServer, runtime_prices: dict[str, float], expected_cost: float
) -> None:
    chat.answer(Stream([text_chunk("x"), finish_chunk(), usage_chunk(1000, 2000)]))
    prices = {"llm_input_price_per_1k": 1.0, "llm_output_price_per_1k": 2.0}
    reply, _ = await ask(make_runtime(chat.base_url, settings=prices, **runtime_prices))
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens) == (1000, 2000)
    assert reply.usage.cost == pytest.approx(expected_cost)


@pytest.mark.parametrize("status", [401, 403])
async def test_rejected_key_fails_with_a_clear_message(chat: ScriptedChatServer, status: int) -> None:
    chat.answer(Status(status, f"Incorrect API key provided: {API_KEY}"))
    reply, _ = await ask(make_runtime(chat.base_url))
    assert reply.state == "failed"
    assert f"model endpoint rejected the API key (HTTP {status})" in reply.text
    assert API_KEY not in reply.text


async def test_missing_key_fails_naming_the_setting(chat: ScriptedChatServer) -> None:
    chat.answer(Status(401, "You didn't provide an API key."))
    reply, _ = await ask(make_runtime(chat.base_url, settings={"llm_api_key": ""}))
    assert reply.state == "failed" and "wants an API key (HTTP 401); set SWITCHBOARD_LLM_API_KEY" in reply.text
    assert "authorization" not in chat.received[0].headers


@pytest.mark.parametrize(("status", "headers", "retry_after"), [(503, {}, None), (429, {"Retry-After": "7"}, 7.0)])
async def test_overloaded_endpoint_raises_a_retryable_error(
    chat: ScriptedChatServer, status: int, headers: dict[str, str], retry_after: float | None
) -> None:
    chat.answer(Status(status, "try later", headers))
    with pytest.raises(RetryableModelError) as caught:
        await ask(make_runtime(chat.base_url, retry_after_max_s=5))  # 7 s is longer than it waits out
    error = caught.value
    assert error.retryable and error.status_code == status and error.retry_after == retry_after
    assert f"HTTP {status}: try later" in str(error)


async def test_unreachable_endpoint_fails_naming_the_host() -> None:
    with free_socket() as sock:  # bound, never listening: connections are refused
        host = f"127.0.0.1:{sock.getsockname()[1]}"
        reply, emit = await ask(make_runtime(f"http://{host}/v1"))
    assert reply.state == "failed"
    assert f"model endpoint {host} is unreachable" in reply.text
    assert emit.chunks() == []


async def test_stalled_stream_fails_after_the_timeout(chat: ScriptedChatServer) -> None:
    chat.answer(Stream([text_chunk("partial")], stall=True))
    reply, emit = await ask(make_runtime(chat.base_url, settings={"llm_timeout": 0.3}))
    assert reply.state == "failed"
    assert f"model endpoint {chat.url.removeprefix('http://')} did not answer within 0.3s" in reply.text
    assert emit.chunks() == [("result", "partial", False, True)], "the partial artifact is closed"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Stream(["data: {not json\n\n"]), "an event that is not JSON"),
        (Stream(["data: [1, 2]\n\n"]), "not a JSON object"),
        (Stream([{"choices": "oops"}]), "a chunk of unexpected shape"),
        (Stream([{"error": {"message": "model overloaded mid-answer"}}]), "an error: model overloaded mid-answer"),
        (Stream([text_chunk("cut")], done=False), "ended before the answer finished"),
        (Status(200, "not a stream"), "answered 'application/json', not a stream"),
    ],
    ids=["not-json", "not-object", "bad-shape", "error-event", "cut-short", "not-event-stream"],
)
async def test_malformed_stream_fails_with_the_reason(chat: ScriptedChatServer, answer: Any, reason: str) -> None:
    chat.answer(answer)
    reply, _ = await ask(make_runtime(chat.base_url))
    assert reply.state == "failed" and reason in reply.text, reply.text


async def test_api_key_is_a_bearer_header_and_never_in_replies_or_logs(
    chat: ScriptedChatServer, caplog: pytest.LogCaptureFixture
) -> None:
    chat.answer(Stream([text_chunk("fine", finish="stop")]), Status(400, f"unknown parameter; key was {API_KEY}"))
    runtime = make_runtime(chat.base_url)
    with caplog.at_level(logging.DEBUG):
        completed, _ = await ask(runtime)
        refused, _ = await ask(runtime)
    assert [r.headers["authorization"] for r in chat.received] == [f"Bearer {API_KEY}"] * 2
    assert completed.state == "completed"
    assert (
        refused.state == "failed" and "refused the request (HTTP 400): unknown parameter; key was ***" in refused.text
    )
    assert API_KEY not in repr(runtime.endpoint)
    assert all(API_KEY not in text for text in (completed.text, refused.text, caplog.text))


def test_build_names_the_missing_setting(no_llm_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeLoadError, match="writer: no model endpoint configured; set SWITCHBOARD_LLM_BASE_URL"):
        build_executor(agent_spec(), StandaloneHost())
    no_llm_env.setenv("SWITCHBOARD_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    with pytest.raises(RuntimeLoadError, match="writer: no model configured; set SWITCHBOARD_LLM_MODEL"):
        build_executor(agent_spec(), StandaloneHost())
    built = (
        build_executor(agent_spec(model="from-file"), StandaloneHost()),
        build(agent_spec(), StandaloneHost(llm_settings("http://h/v1"))),
    )
    for executor in built:
        assert isinstance(executor, RuntimeExecutor) and executor.name == "writer"


@pytest.mark.parametrize("path", sorted(LLM_AGENTS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_bundled_llm_agent_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem and isinstance(spec.runtime, LlmRuntime)
    assert spec.runtime.system_prompt and all(s.examples for s in spec.skills)
    assert set(spec.runtime.handoffs) <= {"planner", "writer", "critic"}


def test_bundled_llm_agents_are_not_in_the_default_folder() -> None:
    assert {s.name for s in Registry.load(LLM_AGENTS)} == {"planner", "writer", "critic"}
    assert not {"planner", "writer", "critic"} & {s.name for s in Registry.load(bundled_agents_dir())}


async def test_gateway_serves_the_writer_over_a2a(
    chat: ScriptedChatServer, tmp_path: Path, no_llm_env: pytest.MonkeyPatch
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    shutil.copy(LLM_AGENTS / "writer.yaml", agents)
    shutil.copy(bundled_agents_dir() / "echo.yaml", agents)
    llm = {"llm_base_url": chat.base_url, "llm_model": "test-model", "llm_api_key": API_KEY}  # settings, not env
    chat.answer(Stream([text_chunk("Version 2.0 "), text_chunk("is out."), finish_chunk(), usage_chunk(40, 5)]))
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="Announce 2.0")])
    streaming = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
    chunks: list[str] = []
    async with (
        running_gateway(make_settings(tmp_path, agents=agents, **llm)) as gateway,
        a2a_client(gateway.agent_url("writer"), streaming) as client,
        asyncio.timeout(30),
    ):
        task_id = ""
        async for event in client.send_message(SendMessageRequest(message=message)):
            task_id = event.task.id if event.HasField("task") else task_id
            if event.HasField("artifact_update") and event.artifact_update.append:
                chunks += [p.text for p in event.artifact_update.artifact.parts]
        task = await client.get_task(GetTaskRequest(id=task_id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    assert task.status.message.parts[0].text == "Version 2.0 is out."
    assert [p.text for a in task.artifacts for p in a.parts] == ["Version 2.0 is out."]
    assert chunks == ["is out."], "the second chunk streamed as an append"
    (received,) = chat.received
    assert received.body["messages"][0]["role"] == "system" and "writer" in received.body["messages"][0]["content"]
    assert received.body["messages"][-1] == {"role": "user", "content": "Announce 2.0"}
    assert [t["function"]["name"] for t in received.body["tools"]] == ["transfer_to_critic"]


def test_bundled_llm_agents_join_only_when_a_model_is_configured(tmp_path: Path) -> None:
    from gateway.app import load_registry
    from gateway.settings import Settings

    plain = {s.name for s in load_registry(Settings(data_dir=tmp_path))}
    with_model = Settings(data_dir=tmp_path, llm_base_url="http://127.0.0.1:9/v1", llm_model="m")
    names = {s.name for s in load_registry(with_model)}
    assert not {"planner", "writer", "critic"} & plain
    assert {"planner", "writer", "critic"} <= names and plain <= names
