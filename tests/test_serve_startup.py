"""``switchboard serve`` that cannot start says why in one line, before anything claims to be serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]


def serve(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env |= {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO)}
    argv = ("--port", "0", "--grpc-port", "0", *argv)  # later options win
    command = [sys.executable, "-m", "gateway", "serve", *argv]
    return subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=60)


def assert_refused(done: subprocess.CompletedProcess[str], *said: str) -> None:
    """Exit 2; stderr holds JSON log lines only, exactly one error among them, saying ``said``; nothing served."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    entries = [json.loads(line) for line in done.stderr.splitlines()]  # no stray non-JSON line (grpc's C core)
    errors = [e["msg"] for e in entries if e["level"] == "error"]
    assert len(errors) == 1 and errors[0].startswith("cannot start: "), errors
    assert "exc" not in json.dumps(entries)
    for text in said:
        assert text in errors[0], errors[0]
    assert not any(e["msg"].startswith("serving") for e in entries)


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("mysql://user@db.example/x", "unsupported database URL scheme: 'mysql'"),
        ("not-a-url", "unsupported database URL scheme"),
        ("postgresql://user:secret@127.0.0.1:{free}/x", "Connect call failed"),
    ],
    ids=["mysql", "not-a-url", "refused"],
)
def test_a_bad_database_url_is_one_line(tmp_path: Path, url: str, said: str) -> None:
    done = serve(tmp_path, "--database-url", url.format(free=free_port()))

    assert_refused(done, "cannot open the database", said, "--database-url")
    assert "secret" not in done.stderr


@pytest.mark.parametrize(("which", "said"), [("role", 'role "no_such_role"'), ("database", 'database "no_such_db"')])
def test_an_unknown_postgres_role_or_database_is_one_line(tmp_path: Path, pg_dsn: str, which: str, said: str) -> None:
    parts = urlsplit(pg_dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    url = (
        f"postgresql://no_such_role@{host}{parts.path}" if which == "role" else f"{pg_dsn.rsplit('/', 1)[0]}/no_such_db"
    )

    assert_refused(serve(tmp_path, "--database-url", url), said, "does not exist")


def test_a_taken_grpc_port_says_which_option_to_change(tmp_path: Path, taken_port: int) -> None:
    assert_refused(serve(tmp_path, "--grpc-port", str(taken_port)), f"gRPC on 127.0.0.1:{taken_port}", "--grpc-port")


def test_a_taken_http_port_says_which_option_to_change(tmp_path: Path, taken_port: int) -> None:
    assert_refused(serve(tmp_path, "--port", str(taken_port)), f"HTTP on 127.0.0.1:{taken_port}", "--port")


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (
            ["serve", "--grpc-port", "99999"],
            {},
            "grpc_port (--grpc-port or SWITCHBOARD_GRPC_PORT): Input should be less",
        ),
        (
            ["serve"],
            {"SWITCHBOARD_PORT": "eighty"},
            "port (--port or SWITCHBOARD_PORT): Input should be a valid integer",
        ),
        (["mcp"], {"SWITCHBOARD_CARD_INTERFACES": "SOAP"}, "card_interfaces.0 (SWITCHBOARD_CARD_INTERFACES): Input"),
    ],
    ids=["grpc-port-range", "port-not-a-number", "mcp-card-interfaces"],
)
def test_a_setting_that_does_not_parse_is_one_line_naming_it(
    tmp_path: Path, argv: list[str], env: dict[str, str], said: str
) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    clean |= {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO), **env}
    command = [sys.executable, "-m", "gateway", *argv]
    done = subprocess.run(
        command, env=clean, cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )

    assert done.returncode == 2
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "cannot start: invalid setting: " in done.stderr and said in done.stderr


async def test_the_bound_http_socket_serves_connections_without_nagle():
    """asyncio turns Nagle off only on sockets whose proto says TCP; with it on, each small answer waited ~40 ms."""
    import asyncio
    import socket

    from gateway.serve import bind_http

    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            transport.close()

    sock = bind_http("127.0.0.1", 0)
    server = await asyncio.get_running_loop().create_server(Probe, sock=sock)
    try:
        _, writer = await asyncio.open_connection(*sock.getsockname()[:2])
        assert await asyncio.wait_for(seen, 10) != 0, "TCP_NODELAY is off on accepted connections"
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
