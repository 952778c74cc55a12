"""Cost tiers, max_tokens, Retry-After and the handoff envelope of the ``llm`` runtime, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, TaskState
from mcp.client import Client as McpClient

from adapters.llm_tiers import Judged, confidence, schema_problem, why_escalate
from gateway.runtime import AgentCall, Usage
from gateway.spec import EscalationSpec, LlmRuntime
from gateway.testing import running_gateway
from tests.adapters.llm_server import (
    ScriptedChatServer,
    Status,
    Stream,
    finish_chunk,
    scripted_chat_server,
    text_chunk,
    usage_chunk,
)
from tests.adapters.test_llm_runtime import ask, make_runtime
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.conftest import make_settings

SCHEMA = {"type": "object", "required": ["answer"], "properties": {"answer": {"type": "string"}}}
PRICES = {"input_price_per_1k": 1.0, "output_price_per_1k": 2.0}
STRONG = {"model": "strong-1", "input_price_per_1k": 10.0, "output_price_per_1k": 20.0}


@pytest.fixture
async def chat() -> AsyncIterator[ScriptedChatServer]:
    async with scripted_chat_server() as server:
        yield server


def answer(text: str, prompt: int = 100, completion: int = 10, **choice: Any) -> Stream:
    chunk = text_chunk(text)
    chunk["choices"][0].update(choice)
    return Stream([chunk, finish_chunk(), usage_chunk(prompt, completion)])


def refusal(text: str) -> Stream:
    chunk = {"choices": [{"index": 0, "delta": {"refusal": text}, "finish_reason": None}]}
    return Stream([chunk, finish_chunk(), usage_chunk(50, 5)])


def models(chat: ScriptedChatServer) -> list[str]:
    return [received.body["model"] for received in chat.received]


async def test_a_refusal_escalates_to_the_stronger_model_and_both_calls_count(chat: ScriptedChatServer) -> None:
    chat.answer(refusal("I cannot help with that."), answer("Here is how.", 200, 20))
    runtime = make_runtime(chat.base_url, **PRICES, escalation={**STRONG, "when": ["refusal"]})

    reply, emit = await ask(runtime)

    assert models(chat) == ["test-model", "strong-1"]
    assert reply.state == "completed" and reply.text == "Here is how."
    assert reply.usage == Usage(250, 25, pytest.approx((50 + 5 * 2) / 1000 + (200 * 10 + 20 * 20) / 1000))
    assert "writer: escalating to strong-1: the model refused" in emit.progress_messages
    assert emit.chunks()[-1] == ("result", "Here is how.", False, True), "the stronger answer replaces the artifact"


async def test_an_answer_breaking_the_output_schema_escalates(chat: ScriptedChatServer) -> None:
    chat.answer(answer("not json"), answer(json.dumps({"answer": "42"})))
    runtime = make_runtime(chat.base_url, output_schema=SCHEMA, escalation={"model": "strong-1"})

    reply, emit = await ask(runtime)

    assert models(chat) == ["test-model", "strong-1"] and json.loads(reply.text) == {"answer": "42"}
    assert any("does not match output_schema (the answer is not JSON)" in p for p in emit.progress_messages)


async def test_low_confidence_escalates_from_a_stated_confidence_or_the_token_probabilities(
    chat: ScriptedChatServer,
) -> None:
    unsure = answer(json.dumps({"answer": "maybe 41", "confidence": 0.2}))
    unlikely = answer("perhaps", logprobs={"content": [{"token": "perhaps", "logprob": -2.5}]})
    chat.answer(unsure, answer("41"), unlikely, answer("certainly"))
    runtime = make_runtime(chat.base_url, escalation={"model": "strong-1", "min_confidence": 0.6})

    stated, emit = await ask(runtime)
    sampled, emit_too = await ask(runtime)

    assert models(chat) == ["test-model", "strong-1", "test-model", "strong-1"]
    assert (stated.text, sampled.text) == ("41", "certainly")
    assert chat.received[0].body["logprobs"] is True and "logprobs" not in chat.received[1].body
    assert "writer: escalating to strong-1: confidence 0.20 is below 0.6" in emit.progress_messages
    assert "writer: escalating to strong-1: confidence 0.08 is below 0.6" in emit_too.progress_messages


async def test_a_good_answer_stays_with_the_cheap_model(chat: ScriptedChatServer) -> None:
    sure = answer(json.dumps({"answer": "42", "confidence": 0.9}), logprobs={"content": [{"logprob": -0.01}]})
    chat.answer(sure)
    runtime = make_runtime(chat.base_url, output_schema=SCHEMA, escalation={"model": "strong-1"})

    reply, _ = await ask(runtime)

    assert models(chat) == ["test-model"] and reply.state == "completed"


async def test_without_escalation_an_answer_breaking_the_schema_fails_the_task(chat: ScriptedChatServer) -> None:
    chat.answer(answer(json.dumps({"answer": 42})))

    reply, _ = await ask(make_runtime(chat.base_url, output_schema=SCHEMA))

    assert reply.state == "failed"
    assert "does not match output_schema (answer: 42 is not of type 'string')" in reply.text


async def test_max_tokens_is_sent_per_call_and_a_compact_request_asks_for_fewer(chat: ScriptedChatServer) -> None:
    chat.answer(answer("a"), answer("b"), answer("c"))
    compact = AgentCall(text="summarise", data=({"compact": {"max_tokens": 64, "for": "next"}},))

    await ask(make_runtime(chat.base_url, max_tokens=300))
    await ask(make_runtime(chat.base_url, max_tokens=300), compact)
    await ask(make_runtime(chat.base_url))

    assert [received.body.get("max_tokens") for received in chat.received] == [300, 64, None]


async def test_a_short_retry_after_is_waited_out_and_the_call_retried(chat: ScriptedChatServer) -> None:
    chat.answer(Status(429, "slow down", {"Retry-After": "1"}), answer("done"))

    reply, emit = await ask(make_runtime(chat.base_url))

    assert reply.text == "done" and len(chat.received) == 2
    assert "writer: model busy (HTTP 429); retrying in 1s" in emit.progress_messages


async def test_a_handoff_envelope_reaches_the_model_once(chat: ScriptedChatServer) -> None:
    chat.answer(answer("ok"))
    envelope = {"from": "a", "work_done": [{"agent": "a", "summary": "found one bug"}], "findings": [{"rule": "X"}]}
    text = "fix it\n\n--- handed off from a to writer ---\n\nWork done so far:\n[a]\nfound one bug"

    await ask(make_runtime(chat.base_url), AgentCall(text=text, data=({"handoff": envelope}, {"repo": "shop"})))

    content = chat.received[0].body["messages"][-1]["content"]
    assert content.count("found one bug") == 1
    assert '"handoff_findings"' in content and '"rule": "X"' in content and '"repo": "shop"' in content


def test_the_judgement_rules() -> None:
    policy = EscalationSpec(model="m", when=["invalid"])
    assert confidence('{"confidence": 0.3}', []) == 0.3 and confidence("plain", []) is None
    assert confidence('{"confidence": 7}', [-0.1]) == pytest.approx(0.905, abs=1e-3), "7 is no probability"
    assert schema_problem(None, "anything") == "" and schema_problem(SCHEMA, '{"answer": "x"}') == ""
    assert why_escalate(policy, Judged("x", refused=True, confidence=0.0), SCHEMA).startswith("the answer does not")
    assert why_escalate(policy, Judged('{"answer": "x"}', refused=True, confidence=0.0), SCHEMA) == ""


async def test_an_escalating_agent_answers_through_a2a_and_as_an_mcp_tool(
    chat: ScriptedChatServer, tmp_path: Path
) -> None:
    agents = tmp_path / "agents"
    agents.mkdir()
    spec = {
        "format": 1,
        "name": "solver",
        "description": "Answers with a cheap model, a strong one when unsure.",
        "skills": [{"id": "solve", "name": "Solve", "description": "solves", "tags": ["math"], "examples": ["2+2"]}],
        "runtime": {"kind": "llm", "max_tokens": 200, "escalation": {"model": "strong-1", "min_confidence": 0.7}},
    }
    (agents / "solver.yaml").write_text(yaml.safe_dump(spec))
    unsure = answer(json.dumps({"answer": "5", "confidence": 0.3}), 30, 5)
    chat.answer(unsure, answer("4", 30, 1), unsure, answer("4", 30, 1))
    llm = {"llm_base_url": chat.base_url, "llm_model": "cheap-1", "llm_api_key": "sk-test"}
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="2+2")])
    settings = make_settings(tmp_path, agents=agents, mcp_tools=["solver"], **llm)
    async with running_gateway(settings) as gateway, asyncio.timeout(30):
        async with a2a_client(gateway.agent_url("solver"), next(b for b in BINDINGS if b.id == "grpc")) as client:
            events = [event async for event in client.send_message(SendMessageRequest(message=message))]
        async with McpClient(f"{gateway.url}/mcp") as mcp:
            tool = await mcp.call_tool("solver", {"text": "2+2"})

    task = events[-1].task
    assert task.status.state == TaskState.TASK_STATE_COMPLETED and task.status.message.parts[0].text == "4"
    assert not tool.is_error and (tool.structured_content or {}).get("text") == "4", tool.structured_content
    assert models(chat) == ["cheap-1", "strong-1"] * 2
    assert [received.body["max_tokens"] for received in chat.received] == [200] * 4


def test_the_readme_example_of_cost_tiers_is_a_valid_llm_runtime() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", readme, flags=re.S) if "escalation:" in b]
    runtime = LlmRuntime.model_validate(yaml.safe_load(block)["runtime"])
    assert runtime.escalation is not None and runtime.escalation.model == "large-model"
    assert runtime.max_tokens == 800 and runtime.output_schema is not None
