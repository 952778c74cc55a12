"""Org A's agents and workflows call org B's agents over JSON-RPC/SSE and over gRPC, with full task semantics."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.client.client import ClientCallContext
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict
from mcp.client import Client as McpClient

from gateway.cards.signing import TrustPolicy, verify_card_json
from gateway.federation.republish import ORIGIN_EXTENSION_URI
from tests.federation.conftest import A_TO_B_API_KEY, A_TO_B_TOKEN, USER_TOKEN, Orgs
from tests.federation.support import rpc

WAIT_S = 30.0
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@asynccontextmanager
async def client_for(url: str) -> AsyncIterator[Client]:
    """The SDK's streaming JSON-RPC client for an agent of org A."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT_S)) as http:
        config = ClientConfig(streaming=True, httpx_client=http, grpc_channel_factory=grpc.aio.insecure_channel)
        client = await ClientFactory(config).create_from_url(url)
        try:
            yield client
        finally:
            await client.close()


def user_message(text: str, *, task_id: str = "", message_id: str = "") -> Message:
    return Message(
        role=Role.ROLE_USER, message_id=message_id or str(uuid.uuid4()), parts=[Part(text=text)], task_id=task_id
    )


USER_CALL = ClientCallContext(service_parameters={"Authorization": f"Bearer {USER_TOKEN}", "traceparent": TRACEPARENT})


async def collect(client: Client, message: Message) -> list[StreamResponse]:
    events = []
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=message), context=USER_CALL):
            events.append(event)
    return events


def task_id_of(events: list[StreamResponse]) -> str:
    for event in events:
        if event.HasField("task"):
            return event.task.id
        if event.HasField("status_update"):
            return event.status_update.task_id
    raise AssertionError("no task in the stream")


def progress_texts(events: list[StreamResponse]) -> list[str]:
    return [
        part.text
        for event in events
        if event.HasField("status_update")
        for part in event.status_update.status.message.parts
    ]


def remote_of(task: Task) -> dict[str, Any]:
    remote: dict[str, Any] = MessageToDict(task.metadata)["switchboard"]["remote"]
    return remote


async def b_task(orgs: Orgs, agent: str, task_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10) as http:
        body = await rpc(http, orgs.b.agent_url(agent), "GetTask", {"id": task_id})
    assert "result" in body, body
    task: dict[str, Any] = body["result"]
    return task


@pytest.mark.parametrize(
    ("workflow", "transport"), [("partner-handoff", "http"), ("partner-handoff-grpc", "grpc")], ids=["jsonrpc", "grpc"]
)
async def test_workflow_hands_off_to_the_partner_and_the_result_streams_back(
    orgs: Orgs, workflow: str, transport: str
) -> None:
    async with client_for(orgs.a.agent_url(workflow)) as client:
        events = await collect(client, user_message("please ask our partner"))
        task = await client.get_task(GetTaskRequest(id=task_id_of(events)))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    partner = "b-recorder" if transport == "http" else "bg-recorder"
    assert any(f"{partner}: recording the call" in text for text in progress_texts(events)), progress_texts(events)
    result = next(a for a in task.artifacts if a.name == "result")
    seen = MessageToDict(result.parts[-1].data)["final"]["data"]
    assert seen["transport"] == transport
    authorization = seen["headers"]["authorization"]
    if transport == "http":
        assert authorization == f"Bearer {A_TO_B_TOKEN}"
    else:
        assert authorization in {f"Bearer {token}" for token in orgs.tokens.issued}, orgs.tokens.issued
        assert len(orgs.tokens.issued) == 1, "the OAuth token is cached, not fetched per call"
    assert USER_TOKEN not in json.dumps(seen), "the caller's token never reaches the peer"
    hop = seen["metadata"]["switchboard"]
    assert hop["hops"] == 2 and len(hop["via"]) == 1, hop  # client -> A's run (1) -> B (2), through A only
    assert seen["headers"]["traceparent"].split("-")[1] == TRACE_ID
    assert seen["metadata"]["traceparent"].split("-")[1] == TRACE_ID


@pytest.mark.parametrize(
    ("agent", "transport", "api_key"),
    [
        ("bn-recorder", "http", ""),
        ("bng-recorder", "grpc", ""),
        ("bk-recorder", "http", A_TO_B_API_KEY),
        ("bkg-recorder", "grpc", A_TO_B_API_KEY),
    ],
    ids=["none-jsonrpc", "none-grpc", "api-key-jsonrpc", "api-key-grpc"],
)
async def test_the_callers_token_never_reaches_a_peer_whose_credential_leaves_authorization_alone(
    orgs: Orgs, agent: str, transport: str, api_key: str
) -> None:
    # Behind a bearer or OAuth peer, the peer's credential overwrites Authorization anyway; here nothing does.
    async with client_for(orgs.a.agent_url(agent)) as client:
        events = await collect(client, user_message("record this call"))
        task = await client.get_task(GetTaskRequest(id=task_id_of(events)))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task
    seen = MessageToDict(next(a for a in task.artifacts if a.name == "seen").parts[0].data)
    assert seen["transport"] == transport
    assert seen["headers"]["authorization"] == "", "no credential, and not the caller's"
    assert seen["headers"]["x-api-key"] == api_key
    assert USER_TOKEN not in json.dumps(seen), "the caller's token never reaches the peer"
    assert seen["headers"]["traceparent"].split("-")[1] == TRACE_ID


@pytest.mark.parametrize("agent", ["b-echo", "bg-echo"], ids=["jsonrpc", "grpc"])
async def test_cancel_at_a_cancels_the_task_at_b(orgs: Orgs, agent: str) -> None:
    async with client_for(orgs.a.agent_url(agent)) as client:
        task_id = ""
        async with asyncio.timeout(WAIT_S):
            async for event in client.send_message(SendMessageRequest(message=user_message("wait: 30"))):
                if event.HasField("status_update") and "waiting" in str(event.status_update.status.message):
                    task_id = event.status_update.task_id
                    break
        canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
        local = await client.get_task(GetTaskRequest(id=task_id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    remote = await b_task(orgs, "echo", remote_of(local)["task_id"])
    assert remote["status"]["state"] == "TASK_STATE_CANCELED"


@pytest.mark.parametrize("workflow", ["slow-partner", "slow-partner-grpc"], ids=["jsonrpc", "grpc"])
async def test_canceling_a_workflow_at_a_cancels_its_step_at_b(orgs: Orgs, workflow: str) -> None:
    async with client_for(orgs.a.agent_url(workflow)) as client:
        run_id = context_id = ""
        async with asyncio.timeout(WAIT_S):
            async for event in client.send_message(SendMessageRequest(message=user_message("wait: 30"))):
                if event.HasField("task"):
                    run_id, context_id = event.task.id, event.task.context_id
                if event.HasField("status_update") and "waiting" in str(event.status_update.status.message):
                    break
        await client.cancel_task(CancelTaskRequest(id=run_id))
    step_agent = "b-echo" if workflow == "slow-partner" else "bg-echo"
    async with httpx.AsyncClient(timeout=10) as http:
        listed = await rpc(http, orgs.a.agent_url(step_agent), "ListTasks", {"contextId": context_id})
    (step,) = listed["result"]["tasks"]
    assert step["status"]["state"] == "TASK_STATE_CANCELED"
    remote = await b_task(orgs, "echo", step["metadata"]["switchboard"]["remote"]["task_id"])
    assert remote["status"]["state"] == "TASK_STATE_CANCELED"


async def test_an_answer_to_input_required_goes_to_the_same_remote_task(orgs: Orgs) -> None:
    async with client_for(orgs.a.agent_url("b-echo")) as client:
        asked = await collect(client, user_message("ask: what is your name?"))
        task_id = task_id_of(asked)
        waiting = await client.get_task(GetTaskRequest(id=task_id))
        await collect(client, user_message("Ada", task_id=task_id))
        done = await client.get_task(GetTaskRequest(id=task_id))
    assert waiting.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
    assert done.status.state == TaskState.TASK_STATE_COMPLETED
    assert done.artifacts[-1].parts[0].text == "You answered: Ada"
    remote = await b_task(orgs, "echo", remote_of(done)["task_id"])
    assert remote["status"]["state"] == "TASK_STATE_COMPLETED"
    assert [m["role"] for m in remote["history"]].count("ROLE_USER") == 2, "both turns went to one remote task"


async def test_a_message_reply_is_relayed_as_a_message(orgs: Orgs) -> None:
    async with client_for(orgs.a.agent_url("b-echo")) as client:
        events = await collect(client, user_message("hi", message_id=f"tck-message-response-{uuid.uuid4()}"))
    assert [e.WhichOneof("payload") for e in events] == ["message"]
    assert events[0].message.parts[0].text == "Direct message response"


async def test_a_dropped_upstream_stream_is_resumed_without_loss_or_repeats(orgs: Orgs) -> None:
    chunks: list[str] = []
    severed = 0
    async with client_for(orgs.a.agent_url("b-streamer")) as client:
        async with asyncio.timeout(WAIT_S):
            async for event in client.send_message(SendMessageRequest(message=user_message("8 0.3"))):
                if event.HasField("artifact_update"):
                    chunks += [p.text for p in event.artifact_update.artifact.parts]
                    if len(chunks) == 2 and not severed:
                        severed = orgs.proxy.sever()  # A's stream from B breaks mid-task
                task_id = event.status_update.task_id if event.HasField("status_update") else ""
                if task_id:
                    last_task_id = task_id
        task = await client.get_task(GetTaskRequest(id=last_task_id))
    expected = [f"c{n};" for n in range(1, 9)]
    assert severed, "the proxy had a connection to drop"
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert chunks == expected, "every chunk streamed once, in order"
    assert [p.text for p in task.artifacts[0].parts] == expected
    assert "resubscribing to remote task" in orgs.a.logged()


async def test_a_remote_agent_is_republished_with_this_gateways_urls_and_signature(orgs: Orgs) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        raw = (await http.get(f"{orgs.a.agent_url('b-echo')}/.well-known/agent-card.json")).content
        origin_raw = (await http.get(f"{orgs.b.agent_url('echo')}/.well-known/agent-card.json")).content
        listed = {card["name"] for card in (await http.get(f"{orgs.a.url}/agents")).json()}
        catalog = (await http.get(f"{orgs.a.url}/.well-known/api-catalog")).json()
    verified = await verify_card_json(raw, TrustPolicy(jwks=orgs.a.jwks()))
    card = verified.card
    assert card["name"] == "b-echo" and "b-echo" in listed
    assert any(item["title"] == "b-echo" for item in catalog["linkset"][0]["item"])
    urls = [i["url"] for i in card["supportedInterfaces"] if i["protocolBinding"] != "GRPC"]
    assert urls and all(url == orgs.a.agent_url("b-echo") for url in urls)
    (origin,) = [e for e in card["capabilities"]["extensions"] if e["uri"] == ORIGIN_EXTENSION_URI]
    params = origin["params"]
    assert params["status"] == "verified" and params["peer"] == "b"
    assert params["origin_url"] == f"{orgs.b.public_url}/agents/echo/.well-known/agent-card.json"
    origin_card = json.loads(origin_raw)
    assert params["origin_signatures"] == origin_card["signatures"], "the origin's signatures are kept for audit"
    await verify_card_json(origin_raw, TrustPolicy(jwks=orgs.b.jwks()))
    assert card["description"] == origin_card["description"] and card["skills"] == origin_card["skills"]


async def test_a_remote_agent_is_an_mcp_tool(orgs: Orgs) -> None:
    async with McpClient(f"{orgs.a.url}/mcp", mode="legacy", read_timeout_seconds=30) as mcp:
        tools = {tool.name for tool in (await mcp.list_tools()).tools}
        listed = await mcp.call_tool("list_agents", {})
        result = await mcp.call_tool("b_echo", {"text": "over MCP"})
    assert "b_echo" in tools
    agents = {a["name"]: a for a in (listed.structured_content or {})["agents"]}
    assert agents["b-echo"]["kind"] == "a2a" and agents["b-echo"]["card_url"].startswith(orgs.a.url)
    outcome: dict[str, Any] = result.structured_content or {}
    assert not result.is_error and outcome["state"] == "completed", result.content
    assert outcome["text"] == "over MCP"
