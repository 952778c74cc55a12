"""``switchboard mcp`` serves on stdin/stdout only: the process listens on no TCP port (no HTTP, no gRPC)."""

from __future__ import annotations

import os
from pathlib import Path

from mcp import ClientSession
from mcp.client.stdio import stdio_client

from tests.mcp.conftest import TEST_TOOLS, stdio_server

LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's state column


def pid_running(marker: str) -> int:
    """The pid of the one process whose command line or environment names ``marker`` (the test's data dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and entry.name != str(os.getpid()):
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    assert len(found) == 1, found
    return found[0]


def listening_ports(pid: int) -> set[int]:
    """The TCP ports ``pid`` listens on: its socket inodes matched against /proc/net/tcp and tcp6."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        target = os.readlink(fd)
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == LISTEN and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def test_stdio_mcp_opens_no_network_listener(tmp_path: Path) -> None:
    data_dir = tmp_path / "stdio-data"
    async with stdio_client(stdio_server(data_dir, TEST_TOOLS)) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        assert tools.tools, "the tools are served"

        assert listening_ports(pid_running(str(data_dir))) == set()
