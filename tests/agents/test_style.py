from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.agents import style
from gateway.agents.style import severity_of
from gateway.runtime import AgentCall, FileInput

if TYPE_CHECKING:
    from conftest import RecordingEmitter


def files(named: dict[str, str]) -> AgentCall:
    return AgentCall(text="", files=tuple(FileInput(name, text=code) for name, code in named.items()))


def fake_ruff(folder: Path, script: str) -> str:
    """An executable standing in for ruff: it swallows stdin, then runs ``script``."""
    fake = folder / "ruff"
    fake.write_text(f"#!/bin/sh\ncat > /dev/null\n{script}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return str(fake)


async def test_planted_lint_errors_are_found(
    planted_call: AgentCall, planted_line: Callable[[str], int], emit: RecordingEmitter
) -> None:
    reply = await style.run(planted_call, emit)

    assert reply.state == "completed"
    assert reply.artifact_name == "style-findings"
    assert isinstance(reply.data, dict)
    found = {(f["line"], f["rule"]): f for f in reply.data["findings"]}
    unused = found[(planted_line("import os"), "F401 unused-import")]
    assert (unused["severity"], unused["source"], unused["hint"]) == ("medium", "ruff", "Remove unused import: `os`")
    undefined = found[(planted_line("render_summary("), "F821 undefined-name")]
    assert undefined["severity"] == "high"
    assert undefined["file"] == "planted.py"
    assert emit.progress_messages == ["style: linting 1 file with ruff", "style: 2 findings"]


async def test_each_file_is_linted_under_its_own_name(emit: RecordingEmitter) -> None:
    reply = await style.run(files({"pkg/a.py": "import sys\n", "b.py": "x = 1\n", "notes.md": "import os\n"}), emit)

    assert isinstance(reply.data, dict)
    assert [(f["file"], f["line"], f["rule"]) for f in reply.data["findings"]] == [
        ("pkg/a.py", 1, "F401 unused-import")
    ]
    assert reply.data["notes"] == ["skipped 1 non-Python file"]


async def test_syntax_error_is_high(emit: RecordingEmitter) -> None:
    reply = await style.run(files({"bad.py": "x = 1\ndef f(:\n"}), emit)

    assert isinstance(reply.data, dict)
    assert {(f["line"], f["rule"], f["severity"]) for f in reply.data["findings"]} >= {(2, "invalid-syntax", "high")}


async def test_clean_code_has_no_findings(emit: RecordingEmitter) -> None:
    reply = await style.run(AgentCall(text='"""Clean."""\n\n\ndef add(a, b):\n    return a + b\n'), emit)

    assert reply.state == "completed"
    assert isinstance(reply.data, dict)
    assert reply.data["summary"]["total"] == 0


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        *[("F821", "high"), ("E902", "high"), ("F706", "high"), ("invalid-syntax", "high"), ("F401", "medium")],
        *[("E501", "low"), ("B006", "low"), ("UP035", "low"), ("SIM108", "low"), ("I001", "low")],
    ],
)
def test_severity_by_code(code: str, severity: str) -> None:
    assert severity_of(code) == severity


async def test_missing_ruff_fails_clearly(monkeypatch: pytest.MonkeyPatch, emit: RecordingEmitter) -> None:
    monkeypatch.setattr(style, "find_ruff", lambda: None)

    reply = await style.run(files({"a.py": "import os\n"}), emit)

    assert reply.state == "failed"
    assert "ruff" in reply.text
    assert "not installed" in reply.text


async def test_ruff_that_cannot_start_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emit: RecordingEmitter
) -> None:
    monkeypatch.setattr(style, "find_ruff", lambda: str(tmp_path / "no-such-ruff"))

    reply = await style.run(files({"a.py": "import os\n"}), emit)

    assert reply.state == "failed"
    assert "could not run ruff: cannot start ruff" in reply.text
    assert str(tmp_path) not in reply.text


async def test_garbled_ruff_output_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emit: RecordingEmitter
) -> None:
    ruff = fake_ruff(tmp_path, "echo 'this is not json'; exit 1")
    monkeypatch.setattr(style, "find_ruff", lambda: ruff)

    reply = await style.run(files({"a.py": "import os\n"}), emit)

    assert reply.state == "failed"
    assert "not JSON" in reply.text


async def test_ruff_crash_fails_with_its_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emit: RecordingEmitter
) -> None:
    ruff = fake_ruff(tmp_path, "echo 'ruff: broken install' >&2; exit 2")
    monkeypatch.setattr(style, "find_ruff", lambda: ruff)

    reply = await style.run(files({"a.py": "import os\n"}), emit)

    assert reply.state == "failed"
    assert "exit 2" in reply.text
    assert "broken install" in reply.text


async def test_hanging_ruff_times_out_and_is_killed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, emit: RecordingEmitter
) -> None:
    pid_file = tmp_path / "pid"
    ruff = fake_ruff(tmp_path, f"echo $$ > '{pid_file}'; exec tail -f /dev/null")
    monkeypatch.setattr(style, "find_ruff", lambda: ruff)
    monkeypatch.setattr(style, "TIMEOUT_SECONDS", 0.5)

    reply = await style.run(files({"a.py": "x = 1\n"}), emit)

    assert reply.state == "failed"
    assert "took longer than 0.5s on a.py" in reply.text
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped, not left running


async def test_message_without_code_asks_for_code(emit: RecordingEmitter) -> None:
    reply = await style.run(AgentCall(text=""), emit)

    assert reply.state == "input-required"
