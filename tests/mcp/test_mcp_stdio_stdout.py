"""``switchboard mcp``: stdout carries MCP messages alone; what agent code prints goes to stderr."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import anyio
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from tests.mcp.conftest import REPO_ROOT, WAIT_TIMEOUT_S

AGENT = """\
    import os
    import subprocess
    import sys

    print("the agent's module is loading", flush=True)  # before the gateway serves anything


    def run(call):
        print("working on", call.text)  # buffered: it goes out whenever the buffer does
        print("and flushed", flush=True)
        sys.stdout.write("no newline, then ")
        os.write(1, b"straight to fd 1\\n")
        subprocess.run([sys.executable, "-c", "print('a child process prints')"], check=True)
        return call.text.upper()
    """


def printing_agent(folder: Path) -> Path:
    """An agents folder with ``loud``, a python agent (beside its file) that prints in every way there is."""
    folder.mkdir()
    (folder / "loud_agent.py").write_text(textwrap.dedent(AGENT), encoding="utf-8")
    (folder / "loud.yaml").write_text(
        textwrap.dedent("""\
            format: 1
            name: loud
            description: Shouts, and prints as it goes.
            skills: [{id: shout, name: Shout, description: Says it louder., tags: [t]}]
            runtime: {kind: python, entrypoint: "loud_agent:run"}
            """),
        encoding="utf-8",
    )
    return folder


async def test_what_an_agent_prints_goes_to_stderr_and_the_json_rpc_stream_stays_clean(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_AGENTS": str(printing_agent(tmp_path / "agents")),
        "SWITCHBOARD_MCP_TOOLS": "loud",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "PYTHONPATH": str(REPO_ROOT),
    }
    server = StdioServerParameters(command=sys.executable, args=["-m", "gateway", "mcp"], env=env, cwd=str(REPO_ROOT))
    faults: list[Exception] = []

    async def on_message(message: object) -> None:
        if isinstance(message, Exception):  # a line on stdout that is not a JSON-RPC message
            faults.append(message)

    texts = []
    with (tmp_path / "stderr").open("w+", encoding="utf-8") as stderr:
        async with (
            stdio_client(server, errlog=stderr) as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            with anyio.fail_after(WAIT_TIMEOUT_S):
                await session.initialize()
                for text in ("hi", "again"):
                    result = await session.call_tool("loud", {"text": text})
                    assert not result.is_error, result.content
                    texts.append((result.structured_content or {}).get("text"))
                assert [tool.name for tool in (await session.list_tools()).tools if tool.name == "loud"] == ["loud"]
        stderr.seek(0)
        printed = stderr.read()
    assert texts == ["HI", "AGAIN"]
    assert faults == [] and "Failed to parse JSONRPC message" not in caplog.text, faults
    for line in (
        "the agent's module is loading",
        "working on hi",
        "working on again",
        "and flushed",
        "no newline, then straight to fd 1",
        "a child process prints",
    ):
        assert line in printed, f"{line!r} is not on stderr: {printed}"
