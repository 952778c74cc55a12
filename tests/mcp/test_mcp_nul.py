"""NUL (U+0000) in an MCP tool's run id, task id or run:// URI on PostgreSQL: a clear error, never PostgreSQL's.

PostgreSQL text cannot hold NUL; an id holding one names no run. Message text with NUL is kept as
sent (it is stored inside the task's protobuf bytes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from mcp.client import Client
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS

from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.mcp.conftest import HTTP_ARMS, TEST_TOOLS

TIMEOUT_S = 30
LEAKS = ("PostgreSQL", "0x00", "asyncpg", "invalid byte sequence", "internal", "Internal")


@pytest.fixture
async def pg_gateway(tmp_path: Path, pg_dsn: str) -> AsyncIterator[RunningGateway]:
    async with running_gateway(make_settings(tmp_path, mcp_tools=TEST_TOOLS, database_url=pg_dsn)) as running:
        yield running


def client_of(gateway: RunningGateway) -> Client:
    return Client(f"{gateway.url}/mcp", mode=HTTP_ARMS[0].mode, read_timeout_seconds=60)


async def test_nul_in_a_run_or_task_id_is_a_clear_tool_error(pg_gateway: RunningGateway) -> None:
    async with client_of(pg_gateway) as client:
        with anyio.fail_after(TIMEOUT_S):
            results = {
                "get_run": await client.call_tool("get_run", {"run_id": "x\x00"}),
                "cancel_run": await client.call_tool("cancel_run", {"run_id": "x\x00"}),
                "echo task_id": await client.call_tool("echo", {"text": "hi", "task_id": "x\x00"}),
            }
            with pytest.raises(MCPError) as caught:
                await client.read_resource("run://x%00")
    for name, result in results.items():
        text = result.content[0].text  # type: ignore[union-attr]
        assert result.is_error, (name, text)
        assert "NUL" in text or "no run" in text or "no task" in text, (name, text)
        assert not any(leak in text for leak in LEAKS), (name, text)
    assert caught.value.error.code in (INVALID_PARAMS, -32002), caught.value.error
    assert not any(leak in caught.value.error.message for leak in LEAKS), caught.value.error


async def test_message_text_with_nul_is_kept_as_sent(pg_gateway: RunningGateway) -> None:
    async with client_of(pg_gateway) as client:
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("echo", {"text": "a\x00b"})
    assert not result.is_error, result.content
    assert (result.structured_content or {})["text"] == "a\x00b", result.structured_content
