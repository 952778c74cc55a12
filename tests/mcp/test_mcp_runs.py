"""Long runs: start one, poll it, follow its resource, cancel it; runs are the caller's own."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from a2a.auth.user import UnauthenticatedUser, User
from mcp.client import Client
from mcp.server import ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, ResourceUpdatedNotification

from gateway.app import create_app
from gateway.bindings.mcp_server import create_mcp_binding
from tests.conftest import make_settings
from tests.mcp.conftest import McpTarget, task_once_ended

TIMEOUT_S = 30
LONG = "wait: 30"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return result.structured_content or {}


async def test_a_long_run_is_started_polled_and_cancelled(mcp: McpTarget) -> None:
    async with mcp.client() as client:
        with anyio.fail_after(TIMEOUT_S):
            started = await call(client, "start_run", agent="echo", text=LONG)
            run_id = started["run_id"]
            polled = await call(client, "get_run", run_id=run_id)
            cancelled = await call(client, "cancel_run", run_id=run_id)
            after = await call(client, "get_run", run_id=run_id)
            again = await client.call_tool("cancel_run", {"run_id": run_id})
            resource = await client.read_resource(f"run://{run_id}")
    assert started["state"] in ("submitted", "working") and started["resource"] == f"run://{run_id}"
    assert polled["state"] in ("submitted", "working") and polled["result"] is None
    assert polled["progress"]["message"].startswith("echo")
    assert cancelled["state"] == "canceled" and after["state"] == "canceled"
    assert after["result"]["text"] == "echo: canceled on request"
    assert again.is_error and "already ended" in again.content[0].text
    assert json.loads(resource.contents[0].text)["state"] == "canceled"


async def test_a_finished_run_shows_its_result(mcp_http: McpTarget) -> None:
    assert mcp_http.gateway is not None
    async with mcp_http.client() as client:
        with anyio.fail_after(TIMEOUT_S):
            run_id = (await call(client, "start_run", agent="echo", text="hello"))["run_id"]
            await task_once_ended(mcp_http.gateway, "echo", run_id)
            finished = await call(client, "get_run", run_id=run_id)
    assert finished["state"] == "completed"
    assert finished["result"]["artifacts"][0]["text"] == "hello"


async def test_unknown_runs_are_clear_errors(mcp_http: McpTarget) -> None:
    async with mcp_http.client() as client:
        status = await client.call_tool("get_run", {"run_id": "no-such-run"})
        cancel = await client.call_tool("cancel_run", {"run_id": "no-such-run"})
        with pytest.raises(MCPError) as caught:
            await client.read_resource("run://no-such-run")
    assert status.is_error and "no run 'no-such-run'" in status.content[0].text
    assert cancel.is_error and "no run 'no-such-run'" in cancel.content[0].text
    assert caught.value.error.code == INVALID_PARAMS


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
async def test_run_updates_reach_resource_subscribers(mcp_http: McpTarget) -> None:
    updates: list[str] = []
    seen = anyio.Event()

    async def on_message(message: object) -> None:
        if isinstance(message, ResourceUpdatedNotification):
            updates.append(message.params.uri)
            seen.set()

    async with mcp_http.client(message_handler=on_message) as client:
        with anyio.fail_after(TIMEOUT_S):
            run_id = (await call(client, "start_run", agent="echo", text=LONG))["run_id"]
            uri = f"run://{run_id}"
            if mcp_http.modern:
                async with client.listen(resource_subscriptions=[uri]) as subscription:
                    await call(client, "cancel_run", run_id=run_id)
                    event = await anext(aiter(subscription))
                    updates.append(event.uri)
            else:
                await client.subscribe_resource(uri)
                await call(client, "cancel_run", run_id=run_id)
                await seen.wait()
    assert updates and updates[0] == uri


def user_from_meta(ctx: ServerRequestContext[Any, Any]) -> User:
    """A test identity seam: the caller named in the request's ``_meta``."""
    name = (ctx.meta or {}).get("test/user", "")
    return _Named(name) if name else UnauthenticatedUser()


class _Named(User):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def user_name(self) -> str:
        return self._name


@asynccontextmanager
async def in_process_binding(tmp_path: Path) -> AsyncIterator[Client]:
    """The gateway's agents behind an MCP server whose identity seam reads ``_meta``, connected in-process."""
    app = create_app(make_settings(tmp_path))
    async with app.router.lifespan_context(app):
        binding = create_mcp_binding(app.state.gateway, identify=user_from_meta)
        async with binding.running(), Client(binding.server, mode="legacy") as client:
            yield client


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")
async def test_another_callers_run_is_not_found(tmp_path: Path) -> None:
    alice, bob = {"test/user": "alice"}, {"test/user": "bob"}
    async with in_process_binding(tmp_path) as client:
        with anyio.fail_after(TIMEOUT_S):
            started = await client.call_tool("start_run", {"agent": "echo", "text": LONG}, meta=alice)
            run_id = (started.structured_content or {})["run_id"]
            peek = await client.call_tool("get_run", {"run_id": run_id}, meta=bob)
            steal = await client.call_tool("cancel_run", {"run_id": run_id}, meta=bob)
            with pytest.raises(MCPError, match=r"no run .*another caller"):
                await client.read_resource(f"run://{run_id}/artifacts/result", meta=bob)
            with pytest.raises(MCPError, match="another caller"):
                await client.subscribe_resource(f"run://{run_id}/artifacts/result", meta=bob)
            own = await client.call_tool("cancel_run", {"run_id": run_id}, meta=alice)
    assert peek.is_error and steal.is_error and "another caller" in peek.content[0].text
    assert (own.structured_content or {})["state"] == "canceled"
