"""The ``switchboard`` client commands, run as a user runs them: a subprocess against a real gateway.

Every mistake ends in exactly one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings

REPO = Path(__file__).resolve().parents[1]
PLANTED = REPO / "tests" / "samples" / "planted.py"
BOX = "def add(item, into=[]):\n    into.append(item)\n    return into\n"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: no SWITCHBOARD_* of the caller's, this checkout first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    return env | {"PYTHONPATH": str(REPO), **extra}


async def switchboard(*args: str, **env: str) -> tuple[int, str, str]:
    """Run ``python -m gateway ARGS`` to its end; its exit code, stdout and stderr."""
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=REPO, env=cli_env(**env), stdin=asyncio.subprocess.DEVNULL,
        stdout=pipe, stderr=pipe,
    )  # fmt: skip
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line(err: str, *said: str) -> None:
    """``err`` is one line, no traceback, and says each of ``said``."""
    assert "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1, err
    for text in said:
        assert text in err, err


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["send", "echo", ""], "nothing to send"),
        (["send", "echo"], "nothing to send"),
        (["run", "code-review"], "nothing to send"),
        (["send", "echo", "hi", "--file", "/nonexistent.py"], "cannot read /nonexistent.py: No such file"),
        (["send", "no-such-agent", "hi"], "no agent at"),
        (["tasks", "get", "no-such-task"], "no task no-such-task"),
        (["tasks", "reply", "no-such-task", "blue", "--agent", "echo"], "no task no-such-task on agent echo"),
        (["tasks", "list", "--state", "sleeping"], "unknown task state 'sleeping': one of submitted, working"),
    ],
    ids=[
        "empty-text",
        "no-text",
        "run-no-input",
        "missing-file",
        "unknown-agent",
        "unknown-task",
        "reply-unknown",
        "unknown-state",
    ],
)
async def test_a_mistake_is_one_line_and_exit_2(gateway: RunningGateway, argv: list[str], said: str) -> None:
    code, _, err = await switchboard(*argv, "--url", gateway.url)

    assert code == 2
    assert_one_line(err, said)


async def test_an_unreachable_gateway_is_one_line() -> None:
    code, _, err = await switchboard("send", "echo", "hi", "--url", f"http://127.0.0.1:{closed_port()}")

    assert code == 2
    assert_one_line(err, "cannot reach agent at")


async def test_debug_shows_the_traceback(gateway: RunningGateway) -> None:
    code, _, err = await switchboard("--debug", "send", "echo", "hi", "--file", "/nonexistent.py")

    assert code == 2 and "Traceback" in err and "cannot read /nonexistent.py" in err


async def test_version() -> None:
    code, out, _ = await switchboard("--version")

    assert code == 0 and out.startswith("switchboard ")


async def test_a_review_prints_the_report_once_and_integers_as_integers(gateway: RunningGateway) -> None:
    code, out, _ = await switchboard("run", "code-review", "--file", str(PLANTED), "--url", gateway.url)

    assert code == 0
    assert out.count("## Code review report") == 1, out
    assert len(out.splitlines()) < 40, out
    assert '"total"' not in out, "the report is shown as text; the data is for --json"

    code, out, _ = await switchboard("run", "code-review", "--file", str(PLANTED), "--url", gateway.url, "--json")
    task = json.loads(out)
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    data = [p["data"] for a in task["artifacts"] if a["name"] == "result" for p in a["parts"] if "data" in p]
    summary = data[0]["output"]["summary"]
    assert summary["total"] == 6 and isinstance(summary["total"], int)
    assert '"line": 9' in out and '"line": 9.0' not in out and ".0," not in out


async def test_quiet_prints_the_result_only(gateway: RunningGateway) -> None:
    code, out, err = await switchboard("send", "echo", "hello", "--quiet", "--url", gateway.url)

    assert (code, out, err) == (0, "hello\n", "")


async def test_a_failed_task_exits_1_with_its_reason(gateway: RunningGateway) -> None:
    code, out, _ = await switchboard("send", "echo", "fail: out of ink", "--url", gateway.url)

    assert code == 1
    assert "== failed ==" in out and "out of ink" in out


async def test_agents_wraps_descriptions_at_word_boundaries(gateway: RunningGateway) -> None:
    code, out, _ = await switchboard("agents", "--url", gateway.url, COLUMNS="80")

    assert code == 0
    words = set((await gateway_descriptions(gateway)).split())
    shown = [line[23:] for line in out.splitlines() if line[23:] and not line[23:].startswith("skills:")]
    for line in shown:
        assert set(line.split()) <= words, f"a word was cut: {line!r}"
        assert len(line) + 23 <= 80
    assert "skills: code-review" in out


async def gateway_descriptions(gateway: RunningGateway) -> str:
    async with httpx.AsyncClient() as http:
        cards = (await http.get(f"{gateway.url}/agents")).json()
    return " ".join(card["name"] + " " + card.get("description", "") for card in cards)


@pytest.fixture
async def keyed_gateway(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, str]]:
    """A gateway that admits one API key; anonymous callers get 401."""
    key = new_api_key()
    settings = make_settings(tmp_path, auth_api_keys=[api_key_line("cli", key, [])])
    async with running_gateway(settings) as running:
        yield running, key


async def test_a_gateway_with_auth_takes_a_key_or_says_how_to_give_one(
    keyed_gateway: tuple[RunningGateway, str],
) -> None:
    gateway, key = keyed_gateway
    code, _, err = await switchboard("send", "lint-checker", BOX, "--url", gateway.url)
    assert code == 2
    assert_one_line(err, "HTTP 401 Unauthorized from", "requires authentication", "--api-key")
    assert "developer.mozilla.org" not in err, "httpx's own wording stays out of the CLI's line"

    code, _, err = await switchboard("send", "lint-checker", BOX, "--url", gateway.url, "--api-key", "sb_wrong")
    assert code == 2
    assert_one_line(err, "HTTP 401 Unauthorized from", "the API key is not valid")

    code, out, _ = await switchboard("send", "lint-checker", BOX, "--url", gateway.url, "--api-key", key, "-q")
    assert code == 0 and "fixable by ruff" in out

    code, out, _ = await switchboard(
        "tasks", "list", "--agent", "lint-checker", "--url", gateway.url, SWITCHBOARD_API_KEY=key
    )
    assert code == 0 and "lint-checker" in out and "completed" in out


async def test_card_verify_without_trust_suggests_trusting_the_card_origin(gateway: RunningGateway) -> None:
    code, out, _ = await switchboard("card", "verify", gateway.agent_url("echo"))
    assert code == 1
    assert out.startswith("FAILED (untrusted-jku)") and "--trust-card-origin" in out

    code, out, _ = await switchboard("card", "verify", gateway.agent_url("echo"), "--trust-card-origin")
    assert (code, out.split(" signed by ")[0]) == (0, "OK: echo")


async def test_card_verify_of_a_missing_card_reports_the_http_error(gateway: RunningGateway) -> None:
    code, out, err = await switchboard("card", "verify", gateway.agent_url("no-such-agent"), "--trust-card-origin")

    assert code == 1 and out.startswith("FAILED (http-404): GET ") and "HTTP 404 Not Found" in out
    assert "malformed-json" not in out and "Traceback" not in err


async def test_a_question_is_answered_later_with_tasks_reply(gateway: RunningGateway) -> None:
    code, out, err = await switchboard("send", "echo", "ask: colour?", "--url", gateway.url)
    assert code == 3 and "== input-required ==" in out and "colour?" in out
    task_id = err.split("switchboard tasks reply ")[1].split()[0]
    assert_one_line(err, f"task {task_id} waits for input")

    code, out, _ = await switchboard("tasks", "list", "--state", "input-required", "--url", gateway.url)
    assert code == 0 and task_id in out and "colour?" in out

    code, out, _ = await switchboard("tasks", "reply", task_id, "blue", "--url", gateway.url)
    assert code == 0 and "You answered: blue" in out

    code, out, err = await switchboard("tasks", "cancel", task_id, "--url", gateway.url)
    assert code == 1
    assert_one_line(err, "already ended (completed): nothing to cancel")


async def test_tasks_cancel_cancels_a_waiting_task(gateway: RunningGateway) -> None:
    code, _, err = await switchboard("send", "echo", "ask: colour?", "--url", gateway.url)
    task_id = err.split("switchboard tasks reply ")[1].split()[0]

    code, out, _ = await switchboard("tasks", "cancel", task_id, "--agent", "echo", "--url", gateway.url)
    assert (code, out) == (0, f"task {task_id} is canceled\n")
    code, out, _ = await switchboard("tasks", "get", task_id, "--json", "--url", gateway.url)
    assert code == 0 and json.loads(out)["status"]["state"] == "TASK_STATE_CANCELED"


async def failed_gets(gateway: RunningGateway) -> dict[str, float]:
    """GetTask calls counted as errors on /metrics, per series (the registry is the test process's, shared)."""
    async with httpx.AsyncClient() as http:
        metrics = (await http.get(f"{gateway.url}/metrics")).text
    series = [line.rsplit(" ", 1) for line in metrics.splitlines() if line.startswith("switchboard_requests_total{")]
    return {name: float(value) for name, value in series if 'method="GetTask"' in name and 'outcome="error"' in name}


async def test_a_task_found_without_its_agent_is_no_failed_call_on_the_others(gateway: RunningGateway) -> None:
    code, _, err = await switchboard("send", "echo", "ask: colour?", "--url", gateway.url)
    task_id = err.split("switchboard tasks reply ")[1].split()[0]
    async with httpx.AsyncClient() as http:
        found = (await http.get(f"{gateway.url}/ui/api/tasks", params={"id": task_id})).json()
    assert [row["agent"] for row in found["tasks"]] == ["echo"], found  # where the CLI looks first
    before = await failed_gets(gateway)

    code, out, _ = await switchboard("tasks", "get", task_id, "--url", gateway.url)
    assert code == 0 and "colour?" in out
    code, out, _ = await switchboard("tasks", "reply", task_id, "blue", "--url", gateway.url)
    assert code == 0 and "You answered: blue" in out

    assert await failed_gets(gateway) == before, "no other agent was asked for the task, so none failed"


async def test_card_commands_send_the_credentials() -> None:
    seen: list[bytes] = []
    answered = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()
        answered.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        code, _, err = await switchboard("card", "show", f"http://127.0.0.1:{port}/agents/x", "--api-key", "k-123")
        async with asyncio.timeout(10):
            await answered.wait()

    assert code == 2 and "HTTP 404" in err
    assert b"x-api-key: k-123" in seen[0].lower()


async def test_retiring_a_key_that_does_not_exist_names_it_and_how_to_list_keys(tmp_path: Path) -> None:
    code, _, err = await switchboard("keys", "retire", "no-such-kid", "--data-dir", str(tmp_path))
    assert code == 2
    assert_one_line(err, "no signing key 'no-such-kid'", "switchboard keys")


async def test_rotating_keys_with_a_database_url_of_another_scheme_says_so_and_leaves_the_local_keys(
    tmp_path: Path,
) -> None:
    code, out, err = await switchboard("keys", "rotate", "--data-dir", str(tmp_path), "--database-url", "mysql://x/db")
    assert code == 2 and out == ""
    assert_one_line(err, "'mysql'", "postgresql://", "switchboard keys")
    assert not os.listdir(tmp_path), "nothing was rotated in the local data dir"


async def test_keys_rotate_changes_the_data_dir_the_gateway_uses_and_records_it_there(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"  # given as the gateway is given it: SWITCHBOARD_DATA_DIR, with its SQLite database
    env = {"SWITCHBOARD_DATA_DIR": str(data_dir), "SWITCHBOARD_DATABASE_URL": f"sqlite:///{data_dir}/switchboard.db"}
    code, out, err = await switchboard("keys", "rotate", **env)
    assert code == 0, err
    (kid,) = [line.split()[0] for line in out.splitlines()]
    assert os.listdir(data_dir / "keys") == [f"{kid}.pem"]
    with sqlite3.connect(data_dir / "switchboard.db") as db:
        assert db.execute("SELECT method FROM audit WHERE kind = 'admin'").fetchall() == [("keys.rotate",)]
    # a running gateway reads its data dir's keys as it starts: the CLI says a restart is needed
    assert_one_line(err, str(data_dir), "once restarted", "--database-url")
