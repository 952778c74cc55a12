"""Cancelling an MCP call cancels its A2A task: seen from the A2A side of the same gateway."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import anyio
import pytest
from a2a.types.a2a_pb2 import TaskState
from mcp.client import Client
from mcp_types import ResourceUpdatedNotification

from tests.mcp.conftest import McpTarget, task_once_ended

TASK_IN_PROGRESS = re.compile(r"task ([0-9a-f-]{36}) submitted")
TIMEOUT_S = 20
WAIT = "wait: 30"


class FirstProgress:
    """A progress callback that remembers the task id named by the first update."""

    def __init__(self) -> None:
        self.started = anyio.Event()
        self.task_id = ""

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        found = TASK_IN_PROGRESS.search(message or "")
        if found and not self.task_id:
            self.task_id = found.group(1)
            self.started.set()


async def cancel_mid_call(client: Client) -> str:
    """Call echo ``wait: 30`` and cancel the request once the task is running; returns the task id."""
    progress = FirstProgress()
    with anyio.fail_after(TIMEOUT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(partial(client.call_tool, "echo", {"text": WAIT}, progress_callback=progress))
            await progress.started.wait()
            group.cancel_scope.cancel()
    return progress.task_id


async def leave_mid_call(mcp: McpTarget) -> str:
    """Call echo ``wait: 30`` and drop the whole client (session, connection) once the task runs."""
    progress = FirstProgress()

    async def call() -> None:
        async with mcp.client() as client:
            await client.call_tool("echo", {"text": WAIT}, progress_callback=progress)

    with anyio.fail_after(TIMEOUT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(call)
            await progress.started.wait()
            group.cancel_scope.cancel()
    return progress.task_id


async def test_cancelling_a_call_cancels_its_a2a_task(mcp_http: McpTarget) -> None:
    assert mcp_http.gateway is not None
    async with mcp_http.client() as client:
        task_id = await cancel_mid_call(client)
        task = await task_once_ended(mcp_http.gateway, "echo", task_id)
    assert task.status.state == TaskState.TASK_STATE_CANCELED


async def test_a_client_that_goes_away_leaves_no_task_running(mcp_http: McpTarget) -> None:
    assert mcp_http.gateway is not None
    task_id = await leave_mid_call(mcp_http)
    task = await task_once_ended(mcp_http.gateway, "echo", task_id)
    assert task.status.state == TaskState.TASK_STATE_CANCELED


class RunUpdates:
    """``notifications/resources/updated`` for one run: ``resources/subscribe`` (2025) or ``listen`` (2026)."""

    def __init__(self) -> None:
        self._send, self._receive = anyio.create_memory_object_stream[str](100)
        self._subscription: AsyncIterator[Any] | None = None

    async def on_message(self, message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            await self._send.send(message.params.uri)

    async def follow(self, client: Client, uri: str, stack: AsyncExitStack, modern: bool) -> None:
        if modern:
            self._subscription = aiter(await stack.enter_async_context(client.listen(resource_subscriptions=[uri])))
        else:
            await client.subscribe_resource(uri)

    async def next(self) -> None:
        if self._subscription is not None:
            await anext(self._subscription)
        else:
            await self._receive.receive()


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
async def test_a_cancelled_call_leaves_its_run_canceled(mcp: McpTarget) -> None:
    progress, updates = FirstProgress(), RunUpdates()
    async with mcp.client(message_handler=updates.on_message) as client, AsyncExitStack() as stack:
        with anyio.fail_after(TIMEOUT_S):
            async with anyio.create_task_group() as group:
                group.start_soon(partial(client.call_tool, "echo", {"text": WAIT}, progress_callback=progress))
                await progress.started.wait()
                await updates.follow(client, f"run://{progress.task_id}", stack, mcp.modern)
                group.cancel_scope.cancel()
            run = (await client.call_tool("get_run", {"run_id": progress.task_id})).structured_content or {}
            while run["state"] != "canceled":
                await updates.next()  # woken by the run's resource updates, not by a timer
                run = (await client.call_tool("get_run", {"run_id": progress.task_id})).structured_content or {}
    assert run["result"]["text"] == "echo: canceled on request"
