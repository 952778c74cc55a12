"""Admission control (``admission:`` in an agent file): caps, a bounded queue, retry-after hints, degraded mode."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from a2a.types.a2a_pb2 import SendMessageRequest, TaskState
from google.rpc import error_details_pb2, status_pb2
from mcp.client import Client as McpClient
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.bindings.a2a_grpc import a2a_status
from gateway.errors import AgentBusyError
from gateway.hosting.admission import Admission
from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import api_key, authed_client
from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, send, start, user_message
from tests.conftest import make_settings
from tests.hosting import gated_agents
from tests.hosting.gated_agents import MODULE, entered, gate
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.triggers.trigger_kit import ended, jsonrpc_client, metadata

WAIT_S = 20


def admitted(agent_file: dict[str, Any], **admission: Any) -> dict[str, Any]:
    return {**agent_file, "admission": admission}


def gated_agent(name: str, **admission: Any) -> dict[str, Any]:
    return admitted(python_agent(name, f"{MODULE}:gated", gate_name=name), **admission)


@pytest.fixture(autouse=True)
def fresh_gates() -> Iterator[None]:
    gated_agents.reset()
    yield
    gated_agents.reset()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    files = [
        gated_agent("solo", max_concurrent=1, retry_after_s=3),
        gated_agent("fractional", max_concurrent=1, retry_after_s=2.5),
        gated_agent("queued", max_concurrent=1, max_queued=1, queue_timeout_s=10),
        gated_agent("impatient", max_concurrent=1, max_queued=1, queue_timeout_s=0.2),
        python_agent("fast", f"{MODULE}:fast"),
        workflow("degrading", "sequential", ["solo"], {"fallbacks": {"solo": ["fast"]}}),
        python_agent("held", f"{MODULE}:gated", gate_name="held"),
        admitted(workflow("single-run", "sequential", ["held"]), max_concurrent=1),
    ]
    agents = agents_folder(tmp_path / "agents", files)
    async with running_gateway(make_settings(tmp_path, agents=agents, mcp_tools=["*"])) as running:
        yield running


async def hold(gateway: RunningGateway, agent: str, text: str = "first") -> str:
    """Start a run of ``agent`` that holds its slot until its gate opens; its task id."""
    async with a2a_client(gateway.agent_url(agent), BINDINGS[0]) as client:
        task = await start(client, text)
    async with asyncio.timeout(WAIT_S):
        await entered(agent).get()
    return task.id


@pytest.mark.parametrize("binding", BINDINGS, ids=lambda b: b.id)
async def test_over_the_cap_a_caller_gets_the_protocols_retryable_error_with_a_hint(
    gateway: RunningGateway, binding: Binding
) -> None:
    held = await hold(gateway, "solo")
    async with a2a_client(gateway.agent_url("solo"), binding) as client:
        with pytest.raises(AgentBusyError) as refused:
            await send(client, "second")
        gate("solo").set()
        first = await ended(client, held)
        after, _ = await send(client, "third")

    assert "busy" in refused.value.message and "retry after 3s" in refused.value.message
    if binding.protocol != "GRPC":  # a2a-sdk's gRPC client rebuilds the error without its ErrorInfo metadata
        assert refused.value.retry_after_s == 3
    assert first.status.state == after.status.state == TaskState.TASK_STATE_COMPLETED


async def test_each_wire_says_retry_after_its_own_way(gateway: RunningGateway) -> None:
    await hold(gateway, "solo")
    body = {"message": {"role": "ROLE_USER", "messageId": "m-2", "parts": [{"text": "second"}]}}
    async with httpx.AsyncClient(base_url=gateway.url, headers={"A2A-Version": "1.0"}) as http:
        rest = await http.post("/agents/solo/message:send", json=body)
        rpc = await http.post("/agents/solo", json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": body})
    gate("solo").set()
    status = status_pb2.Status()
    grpc_status = a2a_status(AgentBusyError("busy", retry_after_s=3))
    status.ParseFromString(dict(grpc_status.trailing_metadata)["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))

    assert rest.status_code == 429 and rest.headers["retry-after"] == "3"
    info = rest.json()["error"]["details"][0]
    assert (info["reason"], info["metadata"]["retryAfterSeconds"]) == ("AGENT_BUSY", "3")
    error = rpc.json()["error"]
    assert error["code"] == -32061
    assert "3" in json.dumps(error.get("data", "")) or "retry after 3s" in error["message"]
    assert grpc_status.code.name == "RESOURCE_EXHAUSTED" and retry.retry_delay.seconds == 3


async def test_a_fractional_hint_is_rounded_up_on_every_wire(gateway: RunningGateway) -> None:
    # A client that waits less than the hint is refused again: 2.5 s is 3 whole seconds, never 2.
    await hold(gateway, "fractional")
    body = {"message": {"role": "ROLE_USER", "messageId": "m-2", "parts": [{"text": "second"}]}}
    async with httpx.AsyncClient(base_url=gateway.url, headers={"A2A-Version": "1.0"}) as http:
        rest = await http.post("/agents/fractional/message:send", json=body)
    gate("fractional").set()
    status = status_pb2.Status()
    grpc_status = a2a_status(AgentBusyError("busy", retry_after_s=2.5))
    status.ParseFromString(dict(grpc_status.trailing_metadata)["grpc-status-details-bin"])
    retry = error_details_pb2.RetryInfo()
    assert any(d.Unpack(retry) for d in status.details if d.Is(retry.DESCRIPTOR))

    assert rest.status_code == 429 and rest.headers["retry-after"] == "3"
    assert rest.json()["error"]["details"][0]["metadata"]["retryAfterSeconds"] == "2.5"
    assert retry.retry_delay.seconds == 3


async def test_a_queued_request_waits_for_a_slot_and_a_full_queue_refuses(gateway: RunningGateway) -> None:
    held = await hold(gateway, "queued")
    admission = gateway.app.state.gateway.agents["queued"].handler.admission
    async with a2a_client(gateway.agent_url("queued"), BINDINGS[0]) as client:
        waiting = asyncio.ensure_future(send(client, "second"))
        await queued(admission, 1)
        with pytest.raises(AgentBusyError) as refused:
            await send(client, "third")
        assert not waiting.done()
        gate("queued").set()
        second, _ = await asyncio.wait_for(waiting, WAIT_S)
        first = await ended(client, held)

    assert "1 waiting" in refused.value.message
    assert first.status.state == second.status.state == TaskState.TASK_STATE_COMPLETED
    assert (admission.running, admission.queued) == (0, 0)


async def queued(admission: Admission, count: int) -> None:
    """Wait until ``count`` requests wait in the agent's queue (in-process state: nothing to await on)."""
    async with asyncio.timeout(WAIT_S):
        while True:
            if admission.queued >= count:
                return
            await asyncio.sleep(0.01)


async def test_a_queued_request_that_gets_no_slot_in_time_is_refused(gateway: RunningGateway) -> None:
    await hold(gateway, "impatient")
    async with a2a_client(gateway.agent_url("impatient"), BINDINGS[0]) as client:
        with pytest.raises(AgentBusyError) as refused:
            await send(client, "second")
    gate("impatient").set()

    assert "within 0.2s" in refused.value.message


async def test_a_workflow_step_on_a_busy_agent_goes_to_its_fallback_at_once(gateway: RunningGateway) -> None:
    await hold(gateway, "solo")
    async with jsonrpc_client(gateway, "degrading") as client:
        run, events = await send(client, "degrade gracefully")
    gate("solo").set()
    progress = [p.text for e in events if e.HasField("status_update") for p in e.status_update.status.message.parts]
    assert any("fast takes over" in text for text in progress), progress
    assert not any("retry" in text for text in progress), "the busy agent was retried before its fallback"

    assert run.status.state == TaskState.TASK_STATE_COMPLETED, run.status
    steps = metadata(run)["switchboard"]["steps"]
    assert [(s["agent"], s["state"]) for s in steps][-1] == ("fast", "completed")
    assert "fast answer: degrade gracefully" in "\n".join(p.text for p in run.status.message.parts)


async def test_a_workflow_at_its_cap_refuses_until_its_run_ends(gateway: RunningGateway) -> None:
    async with a2a_client(gateway.agent_url("single-run"), BINDINGS[0]) as client:
        running = await start(client, "long job")
        async with asyncio.timeout(WAIT_S):
            await entered("held").get()
        with pytest.raises(AgentBusyError):
            await send(client, "another job")
        gate("held").set()
        async with jsonrpc_client(gateway, "single-run") as streaming:
            done = await ended(streaming, running.id)
        again, _ = await send(client, "a later job")

    assert done.status.state == again.status.state == TaskState.TASK_STATE_COMPLETED


async def test_an_mcp_call_to_a_busy_agent_is_an_error_result_saying_when_to_retry(gateway: RunningGateway) -> None:
    await hold(gateway, "solo")
    async with McpClient(f"{gateway.url}/mcp") as client:
        with anyio.fail_after(WAIT_S):
            result = await client.call_tool("solo", {"text": "from the IDE"})
    gate("solo").set()

    assert result.is_error
    text = "\n".join(getattr(c, "text", "") for c in result.content)
    assert "busy" in text and "retry after 3s" in text


async def test_a_caller_over_its_own_cap_is_refused_while_another_caller_goes_through(tmp_path: Path) -> None:
    alice, bob = new_api_key(), new_api_key()
    settings = make_settings(
        tmp_path,
        agents=agents_folder(tmp_path / "agents", [gated_agent("shared", per_caller_concurrent=1)]),
        auth_api_keys=[api_key_line("alice", alice), api_key_line("bob", bob)],
    )
    async with running_gateway(settings) as gateway:
        url = gateway.agent_url("shared")
        async with authed_client(url, BINDINGS[0], api_key(alice)) as as_alice:
            request = SendMessageRequest(message=user_message("alice's first"))
            request.configuration.return_immediately = True
            await as_alice.send_message(request).__anext__()
            async with asyncio.timeout(WAIT_S):
                await entered("shared").get()
            with pytest.raises(AgentBusyError) as refused:
                await send(as_alice, "alice's second")
            async with authed_client(url, BINDINGS[0], api_key(bob)) as as_bob:
                bobs = asyncio.ensure_future(send(as_bob, "bob's first"))
                async with asyncio.timeout(WAIT_S):
                    assert await entered("shared").get() == "bob's first"
                gate("shared").set()
                bob_task, _ = await bobs

    assert "this caller already has 1 run" in refused.value.message
    assert bob_task.status.state == TaskState.TASK_STATE_COMPLETED


async def test_metrics_show_refusals_and_slots(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        before = samples(await http.get("/metrics"), "solo")
        await hold(gateway, "solo")
        async with a2a_client(gateway.agent_url("solo"), BINDINGS[0]) as client:
            with pytest.raises(AgentBusyError):
                await send(client, "second")
        during = samples(await http.get("/metrics"), "solo")
        gate("solo").set()

    assert during["switchboard_admission_refusals_total"] == before.get("switchboard_admission_refusals_total", 0) + 1
    assert during["switchboard_admission_slots:running"] == 1


def samples(response: httpx.Response, agent: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.labels.get("agent") == agent and sample.name.startswith("switchboard_admission"):
                state = sample.labels.get("state")
                found[f"{sample.name}:{state}" if state else sample.name] = sample.value
    return found
