"""A subscriber that does not keep up never holds up a run: its notifications wait for it, the run goes on.

A 2025-11-25 session's ``resources/updated`` notifications go out through its own stream; a
client that stops reading it (or a connection that stalls) makes every send to that session
wait. The run's progress path announces each update to the run's subscribers, so it must not
wait for any of them.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import anyio
import pytest
from a2a.types.a2a_pb2 import TaskState
from mcp.client import Client
from mcp.server.session import ServerSession

from gateway.bindings.mcp_runs import ResourceNotifier
from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.mcp.conftest import TEST_TOOLS, task_once_ended

TIMEOUT_S = 30
SUBMITTED = re.compile(r"task ([0-9a-f-]{36}) submitted")


class StalledSession:
    """Makes one session's notification sends hang, as a client that stopped reading its stream does."""

    def __init__(self, session: ServerSession, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tried = asyncio.Event()
        self._released = asyncio.Event()
        monkeypatch.setattr(session, "send_resource_updated", self.send)

    async def send(self, uri: str) -> None:
        self.tried.set()
        await self._released.wait()

    def release(self) -> None:
        self._released.set()


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
async def test_a_subscriber_that_stalls_does_not_stall_the_run(
    gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier: ResourceNotifier = gateway.app.state.mcp.notifier
    async with Client(f"{gateway.url}/mcp", mode="legacy", read_timeout_seconds=TIMEOUT_S) as client:
        with anyio.fail_after(TIMEOUT_S):
            # The run waits for input: the stalled subscriber is in place before the answer's turn runs.
            started = await client.call_tool("start_run", {"agent": "echo", "text": "ask: go on?"})
            run_id = (started.structured_content or {})["run_id"]
            await client.subscribe_resource(f"run://{run_id}")
            (session,) = notifier.sessions_of(f"run://{run_id}")
            stalled = StalledSession(session, monkeypatch)
            try:
                answered = await client.call_tool("start_run", {"agent": "echo", "text": "yes", "task_id": run_id})
                assert not answered.is_error, answered.content
                task = await task_once_ended(gateway, "echo", run_id)
                await stalled.tried.wait()  # the run did try to tell the stalled subscriber
            finally:
                stalled.release()
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status


class StalledProgress:
    """Makes every progress notification hang, as a caller that stopped reading its call's stream does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.first = asyncio.Event()
        self.messages: list[str] = []
        self._released = asyncio.Event()
        stalled = self

        async def report_progress(
            session: ServerSession, progress: float, total: float | None = None, message: str | None = None
        ) -> None:
            stalled.messages.append(message or "")
            stalled.first.set()
            await stalled._released.wait()

        monkeypatch.setattr(ServerSession, "report_progress", report_progress)

    def release(self) -> None:
        self._released.set()


@pytest.fixture
async def echo_tool_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, mcp_tools=TEST_TOOLS)) as gateway:
        yield gateway


async def _ignore_progress(value: float, total: float | None, message: str | None) -> None:
    return None


async def test_a_caller_that_stops_reading_its_progress_does_not_stall_the_task(
    echo_tool_gateway: RunningGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    stalled = StalledProgress(monkeypatch)
    async with Client(f"{echo_tool_gateway.url}/mcp", mode="legacy", read_timeout_seconds=TIMEOUT_S) as client:
        with anyio.fail_after(TIMEOUT_S):
            async with anyio.create_task_group() as group:
                call = partial(client.call_tool, "echo", {"text": "wait: 2"}, progress_callback=_ignore_progress)
                group.start_soon(call)
                await stalled.first.wait()
                task_id = SUBMITTED.search(stalled.messages[0]).group(1)  # type: ignore[union-attr]
                try:
                    task = await task_once_ended(echo_tool_gateway, "echo", task_id)
                finally:
                    stalled.release()  # the call then ends as usual
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
