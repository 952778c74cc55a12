"""A cancel lands everywhere: through every wire, of every kind of task, at every gateway involved.

Wires: A2A JSON-RPC, REST and gRPC (``CancelTask`` on the binding that started the task) and MCP
in both eras, two ways: the client cancels its ``tools/call`` (``notifications/cancelled``, which
the MCP SDK delivers through an anyio cancel scope), or calls ``cancel_run`` on a ``start_run``.
Tasks, all at org A: a local task (``echo``), a workflow whose step is local (``slow-local`` ->
``echo``), a relayed remote task (``b-echo`` -> org B's ``echo``) and a workflow whose step is
relayed (``slow-partner`` -> ``b-echo`` -> B's ``echo``). Each ends CANCELED, and so does every
task under it, read with ``GetTask`` on the gateway that holds it. The two gateways are the
session's (``orgs``).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio
import pytest
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    ListTasksRequest,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    Task,
    TaskState,
)
from a2a.utils.errors import A2AError
from google.protobuf.json_format import MessageToDict
from mcp.client import Client as McpClient

from tests.bindings.a2a_clients import BINDINGS, Binding, a2a_client, user_message
from tests.federation.conftest import Orgs

WAIT_S = 30.0
WORK = "wait: 30"
SUBMITTED = re.compile(r"task ([0-9a-f-]{36}) submitted")
TERMINAL = {
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_REJECTED,
}
STREAMING = {b.protocol: b for b in BINDINGS if b.streaming}
JSONRPC_SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
WIRES = ["jsonrpc", "rest", "grpc", "mcp-2025", "mcp-2026", "mcp-2025-cancel_run", "mcp-2026-cancel_run"]


@dataclass(frozen=True)
class Target:
    """A task to cancel at org A, and what runs under it."""

    agent: str
    step: str = ""  # a workflow's step agent at A
    remote: bool = False  # whether the agent (or the step's agent) relays to org B's echo

    @property
    def tool(self) -> str:
        return self.agent.replace("-", "_")


TARGETS = [
    Target("echo"),
    Target("slow-local", step="echo"),
    Target("b-echo", remote=True),
    Target("slow-partner", step="b-echo", remote=True),
]


def _binding(wire: str) -> Binding:
    return next(replace(b, streaming=True) for b in BINDINGS if b.id == wire)


def _status_text(event: StreamResponse) -> str:
    if not event.HasField("status_update"):
        return ""
    return " ".join(p.text for p in event.status_update.status.message.parts)


async def cancel_over_a2a(url: str, binding: Binding) -> str:
    """Stream the work until the agent (or its step) says it is waiting, then ``CancelTask``; the task id."""
    async with a2a_client(url, binding) as client:
        task_id = ""
        async with asyncio.timeout(WAIT_S):
            stream = client.send_message(SendMessageRequest(message=user_message(WORK)))
            try:
                async for event in stream:
                    if event.HasField("task"):
                        task_id = task_id or event.task.id
                    if event.HasField("status_update"):
                        task_id = task_id or event.status_update.task_id
                    if "waiting" in _status_text(event):
                        break
            finally:
                await stream.aclose()
            assert task_id, "the stream named no task"
            canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED, canceled
    return task_id


class Working:
    """An MCP progress callback: the task id from the first update, then an event once the work waits."""

    def __init__(self) -> None:
        self.waiting = anyio.Event()
        self.task_id = ""

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        found = SUBMITTED.search(message or "")
        if found and not self.task_id:
            self.task_id = found.group(1)
        if self.task_id and "waiting" in (message or ""):
            self.waiting.set()


async def cancel_over_mcp(mcp_url: str, mode: str, tool: str) -> str:
    """Call the agent's tool and cancel the request once it works (MCP's own cancel); the task id."""
    working = Working()
    async with McpClient(mcp_url, mode=mode, read_timeout_seconds=WAIT_S) as client:
        with anyio.fail_after(WAIT_S):
            async with anyio.create_task_group() as group:
                group.start_soon(partial(client.call_tool, tool, {"text": WORK}, progress_callback=working))
                await working.waiting.wait()
                group.cancel_scope.cancel()
    return working.task_id


async def waiting(url: str, task_id: str) -> None:
    """Until the task (or its step) says it is waiting: followed with ``SubscribeToTask``."""
    async with a2a_client(url, JSONRPC_SSE) as client, asyncio.timeout(WAIT_S):
        async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
            if "waiting" in _status_text(event):
                return


async def cancel_run_over_mcp(mcp_url: str, mode: str, agent_url: str, agent: str) -> str:
    """``start_run``, then ``cancel_run`` once the work waits; the run's task id."""
    async with McpClient(mcp_url, mode=mode, read_timeout_seconds=WAIT_S) as client:
        started = await client.call_tool("start_run", {"agent": agent, "text": WORK})
        run_id = str((started.structured_content or {})["run_id"])
        await waiting(agent_url, run_id)
        canceled = await client.call_tool("cancel_run", {"run_id": run_id})
    assert not canceled.is_error and (canceled.structured_content or {})["state"] == "canceled", canceled.content
    return run_id


async def task_once_ended(url: str, task_id: str) -> Task:
    """The task once it has ended: followed with ``SubscribeToTask``, then read with ``GetTask``."""
    async with a2a_client(url, JSONRPC_SSE) as client, asyncio.timeout(WAIT_S):
        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state not in TERMINAL:
            try:
                async for event in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                    status = event.status_update.status if event.HasField("status_update") else event.task.status
                    if status.state in TERMINAL:
                        break
            except A2AError:
                pass  # it ended between the read and the subscription: nothing left to stream
        return await client.get_task(GetTaskRequest(id=task_id))


async def step_task(url: str, context_id: str) -> str:
    """The one child task a run left on its step agent (the run's context names it)."""
    async with a2a_client(url, JSONRPC_SSE) as client:
        listed = await client.list_tasks(ListTasksRequest(context_id=context_id))
    (step,) = listed.tasks
    return step.id


def remote_task_id(task: Task) -> str:
    remote: dict[str, Any] = MessageToDict(task.metadata)["switchboard"]["remote"]
    return str(remote["task_id"])


def state(task: Task) -> str:
    return TaskState.Name(task.status.state)


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.agent)
@pytest.mark.parametrize("wire", WIRES)
async def test_a_cancel_ends_every_task_involved_canceled(orgs: Orgs, wire: str, target: Target) -> None:
    mode = "legacy" if wire.startswith("mcp-2025") else "2026-07-28"
    if wire.endswith("cancel_run"):
        task_id = await cancel_run_over_mcp(f"{orgs.a.url}/mcp", mode, orgs.a.agent_url(target.agent), target.agent)
    elif wire.startswith("mcp"):
        task_id = await cancel_over_mcp(f"{orgs.a.url}/mcp", mode, target.tool)
    else:
        task_id = await cancel_over_a2a(orgs.a.agent_url(target.agent), _binding(wire))

    top = await task_once_ended(orgs.a.agent_url(target.agent), task_id)
    ended = {f"A {target.agent}": top}
    relay = top
    if target.step:
        child_id = await step_task(orgs.a.agent_url(target.step), top.context_id)
        relay = ended[f"A {target.step} (step)"] = await task_once_ended(orgs.a.agent_url(target.step), child_id)
    if target.remote:
        ended["B echo (remote)"] = await task_once_ended(orgs.b.agent_url("echo"), remote_task_id(relay))

    states = {where: state(task) for where, task in ended.items()}
    assert set(states.values()) == {"TASK_STATE_CANCELED"}, states
