"""The MCP client pool against real MCP servers: one session per server, timeouts, restarts, clear start errors."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest

from gateway.hosting import mcp_clients
from gateway.hosting.mcp_clients import McpCallError, McpClientPool, McpServerError, server_key
from gateway.spec import McpServerSpec, McpToolsSpec
from tests.adapters.mcp_servers import RAW_SERVER, TEST_DIR_ENV, evidence, http_server, stdio_spec

TOKEN = "mcp-test-token-0123456789"


@pytest.fixture
async def pool(tmp_path: Path) -> McpClientPool:
    clients = McpClientPool({TEST_DIR_ENV: str(tmp_path), "MCP_TOKEN": TOKEN})
    yield clients  # type: ignore[misc]
    await clients.aclose()


async def test_one_session_serves_concurrent_calls(pool: McpClientPool, tmp_path: Path) -> None:
    server = stdio_spec()
    names = [tool.name for tool in await pool.list_tools(server)]
    assert {"add", "word_count", "countdown", "delete_everything"} <= set(names)
    results = await asyncio.gather(*(pool.call_tool(server, "add", {"a": i, "b": 1}, timeout_s=10) for i in range(8)))
    assert [r.structured_content for r in results] == [{"result": i + 1} for i in range(8)]
    assert len(evidence(tmp_path, "started")) == 1, "one server process for every call"
    assert sorted(evidence(tmp_path, "add")) == sorted(f"{i}+1" for i in range(8))


async def test_progress_reaches_the_callback(pool: McpClientPool) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        seen.append((done, total, message))

    result = await pool.call_tool(stdio_spec(), "countdown", {"steps": 3}, timeout_s=10, progress=progress)
    assert not result.is_error
    assert seen == [(1, 3, "step 1 of 3"), (2, 3, "step 2 of 3"), (3, 3, "step 3 of 3")]


async def test_a_tool_error_is_a_result_not_an_exception(pool: McpClientPool) -> None:
    result = await pool.call_tool(stdio_spec(), "refuse", {"reason": "no such file"}, timeout_s=10)
    assert result.is_error and "no such file" in result.content[0].text  # type: ignore[union-attr]


async def test_a_call_that_never_ends_times_out_and_the_server_is_told(pool: McpClientPool, tmp_path: Path) -> None:
    with pytest.raises(McpCallError, match=r"countdown of MCP server tools did not finish within 0.5s"):
        await pool.call_tool(stdio_spec(), "countdown", {"steps": 0}, timeout_s=0.5)
    # The SDK's notifications/cancelled reaches the tool; another process's file offers no event to wait on.
    async with asyncio.timeout(10):
        while evidence(tmp_path, "countdown") != ["waiting", "cancelled"]:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    assert (await pool.call_tool(stdio_spec(), "add", {"a": 1, "b": 1}, timeout_s=10)).structured_content == {
        "result": 2
    }


async def test_a_server_that_exits_is_started_again(pool: McpClientPool, tmp_path: Path) -> None:
    server = stdio_spec()
    with pytest.raises(McpCallError, match="exit_now of MCP server tools failed: Connection closed"):
        await pool.call_tool(server, "exit_now", {}, timeout_s=10)
    result = await pool.call_tool(server, "add", {"a": 2, "b": 3}, timeout_s=10)
    assert result.structured_content == {"result": 5}
    assert len(evidence(tmp_path, "started")) == 2


async def test_a_missing_program_is_a_clear_error(pool: McpClientPool) -> None:
    with pytest.raises(McpServerError, match=r"cannot start: no program 'no-such-mcp-server' \(is it installed\?\)"):
        await pool.list_tools(McpServerSpec(name="gone", command=["no-such-mcp-server"]))


async def test_a_server_that_hangs_at_start_fails_within_its_start_timeout(pool: McpClientPool) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(McpServerError, match=r"MCP server tools did not start within 1s"):
            await pool.list_tools(stdio_spec("--hang", start_timeout_s=1))


async def test_a_server_that_exits_at_start_is_named_with_its_stderr(pool: McpClientPool) -> None:
    crash = "import sys; sys.stderr.write('config file missing\\n'); sys.exit(2)"
    with pytest.raises(McpServerError, match=r"exited before its session started; its stderr ends: config file"):
        await pool.list_tools(McpServerSpec(name="crash", command=[sys.executable, "-c", crash]))


async def test_repeated_failures_take_the_server_out_of_service(
    pool: McpClientPool, caplog: pytest.LogCaptureFixture
) -> None:
    server = McpServerSpec(name="gone", command=["no-such-mcp-server"])
    for _ in range(mcp_clients.MAX_FAILURES):
        with pytest.raises(McpServerError, match="no program"):
            await pool.list_tools(server)
    with caplog.at_level(logging.ERROR), pytest.raises(McpServerError, match=r"gone is out of service: .*no program"):
        await pool.list_tools(server)
    assert "MCP server gone is out of service" in caplog.text


async def test_a_malformed_result_is_a_call_error(pool: McpClientPool) -> None:
    server = McpServerSpec(name="raw", command=[sys.executable, str(RAW_SERVER)])
    assert [tool.name for tool in await pool.list_tools(server)] == ["broken"]
    with pytest.raises(McpCallError, match=r"MCP server raw answered broken with a malformed result \(content"):
        await pool.call_tool(server, "broken", {}, timeout_s=10)


async def test_streamable_http_server_gets_the_credentials_named_by_env(pool: McpClientPool) -> None:
    async with http_server(TOKEN) as (url, guard):
        server = McpServerSpec(name="remote", url=url, credentials={"kind": "bearer", "token_env": "MCP_TOKEN"})
        result = await pool.call_tool(server, "word_count", {"text": "one two three"}, timeout_s=10)
        assert result.content[0].text == "3 words"  # type: ignore[union-attr]
        assert guard.admitted >= 1
        refused = McpServerSpec(name="anon", url=url)
        with pytest.raises(McpServerError, match="MCP server anon did not start"):
            await pool.list_tools(refused)
        await pool.aclose()


async def test_aclose_stops_the_stdio_server(tmp_path: Path) -> None:
    pool = McpClientPool({TEST_DIR_ENV: str(tmp_path)})
    await pool.list_tools(stdio_spec())
    (pid,) = evidence(tmp_path, "started")
    await pool.aclose()
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(int(pid), 0)


def test_specs_of_one_server_share_a_key_whatever_their_names_and_tools() -> None:
    plain = stdio_spec()
    listed = McpToolsSpec(**stdio_spec(name="other", start_timeout_s=3).model_dump(), tools=["add"], timeout_s=5)
    assert server_key(plain) == server_key(listed)
    assert server_key(plain) != server_key(stdio_spec("--hang"))


def test_specs_of_one_server_share_a_connection_each_time_they_are_asked() -> None:
    pool = McpClientPool({})
    plain, renamed, hanging = stdio_spec(), stdio_spec(name="other"), stdio_spec("--hang")
    first = pool.connection(plain)
    assert [pool.connection(s) for s in (plain, renamed, plain)] == [first, first, first]
    assert pool.connection(hanging) is not first
    assert pool.connection(hanging) is pool.connection(stdio_spec("--hang"))


async def test_a_server_that_exits_is_logged_when_it_does(pool: McpClientPool) -> None:
    logged = asyncio.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "MCP server tools ended its session" in record.getMessage():
                logged.set()

    watch = Watch(logging.WARNING)
    logging.getLogger(mcp_clients.__name__).addHandler(watch)
    try:
        with pytest.raises(McpCallError):
            await pool.call_tool(stdio_spec(), "exit_now", {}, timeout_s=10)
        # logged by the session's own task as the server's stream ends, before any next call
        await asyncio.wait_for(logged.wait(), 10)
    finally:
        logging.getLogger(mcp_clients.__name__).removeHandler(watch)


async def test_a_start_cancelled_while_the_server_hangs_leaves_nothing_behind(
    pool: McpClientPool, tmp_path: Path
) -> None:
    starting = asyncio.create_task(pool.list_tools(stdio_spec("--hang", start_timeout_s=60)))
    async with asyncio.timeout(10):  # the server says when it hangs (another process: no event to wait on)
        while not evidence(tmp_path, "hanging"):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    starting.cancel()  # as the gateway's stop cancels a re-probe
    with pytest.raises(asyncio.CancelledError):
        await starting
    await asyncio.wait_for(pool.aclose(), 10)  # the session's owner task was ended, not left waiting
    (pid,) = map(int, evidence(tmp_path, "hanging"))
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
