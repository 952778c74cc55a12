"""The lint-fix pair on the real ruff: fix makes code clean where ruff can, check approves only clean code."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from gateway.agents import lint_fix
from gateway.runtime import AgentCall, FileInput, Turn

if TYPE_CHECKING:
    from conftest import RecordingEmitter

FIXABLE = "import sys\nimport os\nfrom typing import List\ndef total(xs: List[int]):\n  return  sum(xs)+len(os.sep)\n"
FIXED = "import os\n\n\ndef total(xs: list[int]):\n    return sum(xs) + len(os.sep)\n"
UNFIXABLE = "def greet(name):\n    return salutation + name\n"
MUTABLE_DEFAULT = "def add(item, into=[]):\n    into.append(item)\n    return into\n"


def files(named: dict[str, str]) -> AgentCall:
    return AgentCall(text="", files=tuple(FileInput(name, text=code) for name, code in named.items()))


async def test_fixable_lint_is_fixed_and_formatted(emit: RecordingEmitter) -> None:
    reply = await lint_fix.fix(AgentCall(text=f"please fix:\n```python\n{FIXABLE}```"), emit)

    assert reply.state == "completed"
    assert reply.text == FIXED
    assert reply.artifact_name == "fixed-code"
    assert isinstance(reply.data, dict)
    assert reply.data["files"] == [{"name": "snippet.py", "code": FIXED}]
    assert (reply.data["changed"], reply.data["unsafe_fixes"]) == (True, False)
    assert emit.progress_messages == ["lint-fix: fixing 1 file with ruff", "lint-fix: 1 file changed"]


async def test_check_approves_what_fix_returns(emit: RecordingEmitter) -> None:
    fixed = await lint_fix.fix(AgentCall(text=FIXABLE), emit)
    assert isinstance(fixed.data, dict)

    reply = await lint_fix.check(AgentCall(text="ignored: the files in data win", data=(fixed.data,)), emit)

    assert reply.state == "completed"
    assert reply.text == "APPROVED: ruff finds nothing to fix in 1 file"
    assert isinstance(reply.data, dict)
    assert (reply.data["clean"], reply.data["findings"], reply.data["fixable"]) == (True, [], 0)


async def test_check_lists_what_is_wrong_with_unfixed_code(emit: RecordingEmitter) -> None:
    reply = await lint_fix.check(files({"calc.py": FIXABLE}), emit)

    assert isinstance(reply.data, dict)
    assert reply.data["clean"] is False
    rules = {(f["line"], f["rule"]) for f in reply.data["findings"] if f["file"] == "calc.py"}
    assert {(1, "F401 unused-import"), (0, "format"), (1, "I001 unsorted-imports")} <= rules
    assert reply.data["fixable"] >= 4
    assert "APPROVED" not in reply.text
    assert f"> {reply.data['fixable']} fixable by ruff" in reply.text


async def test_an_undefined_name_stays_and_is_reported(emit: RecordingEmitter) -> None:
    fixed = await lint_fix.fix(files({"greet.py": UNFIXABLE}), emit)
    assert isinstance(fixed.data, dict) and fixed.data["changed"] is False

    reply = await lint_fix.check(AgentCall(text="", data=(fixed.data,)), emit)

    assert isinstance(reply.data, dict)
    assert reply.data["clean"] is False and reply.data["fixable"] == 0
    [finding] = reply.data["findings"]
    assert (finding["file"], finding["line"], finding["rule"], finding["severity"]) == (
        "greet.py",
        2,
        "F821 undefined-name",
        "high",
    )
    assert "none of them fixable by ruff" in reply.text


async def test_unsafe_fixes_only_when_the_checker_still_reports_fixable(emit: RecordingEmitter) -> None:
    first = await lint_fix.fix(files({"box.py": MUTABLE_DEFAULT}), emit)
    assert isinstance(first.data, dict) and first.data["changed"] is False
    feedback = await lint_fix.check(AgentCall(text="", data=(first.data,)), emit)
    assert isinstance(feedback.data, dict) and feedback.data["fixable"] == 1

    envelope = {"maker_checker": {"feedback": {"data": feedback.data}, "previous_output": {"data": first.data}}}
    second = await lint_fix.fix(AgentCall(text=feedback.text, data=(envelope,)), emit)

    assert isinstance(second.data, dict)
    assert second.data["unsafe_fixes"] is True and second.data["changed"] is True
    assert second.data["files"][0]["name"] == "box.py"
    assert "if into is None:\n        into = []" in second.text


def test_feedback_in_the_task_history_also_asks_for_unsafe_fixes() -> None:
    call = AgentCall(text="again", history=(Turn("agent", "## Lint check: 1 finding\n\n> 1 fixable by ruff"),))
    assert lint_fix.wants_unsafe_fixes(call)
    assert not lint_fix.wants_unsafe_fixes(AgentCall(text="x", data=({"clean": False, "fixable": 0},)))


async def test_code_that_does_not_parse_is_returned_unformatted_with_a_note(emit: RecordingEmitter) -> None:
    reply = await lint_fix.fix(files({"bad.py": "x = (\n"}), emit)

    assert isinstance(reply.data, dict)
    assert reply.data["files"][0]["code"] == "x = (\n"
    assert reply.data["notes"][0].startswith("could not format bad.py:")


async def test_several_files_keep_their_names_and_non_python_passes_through(emit: RecordingEmitter) -> None:
    sent = {"pkg/a.py": "import os\nx=1\n", "b.py": "y = 2\n", "notes.md": "import os\n"}
    reply = await lint_fix.fix(files(sent), emit)

    assert isinstance(reply.data, dict)
    assert reply.data["files"] == [
        {"name": "pkg/a.py", "code": "x = 1\n"},
        {"name": "b.py", "code": "y = 2\n"},
        {"name": "notes.md", "code": "import os\n"},
    ]
    assert reply.data["changed_files"] == ["pkg/a.py"]
    assert reply.text.startswith("# pkg/a.py\n```python\nx = 1\n```")


async def test_without_code_it_asks_for_some(emit: RecordingEmitter) -> None:
    assert (await lint_fix.fix(AgentCall(text="  "), emit)).state == "input-required"
    assert (await lint_fix.check(AgentCall(text=""), emit)).state == "input-required"


async def test_a_broken_ruff_fails_the_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emit: RecordingEmitter
) -> None:
    fake = tmp_path / "ruff"
    fake.write_text("#!/bin/sh\ncat > /dev/null\necho 'ruff exploded' >&2\nexit 2\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(lint_fix, "find_ruff", lambda: str(fake))

    reply = await lint_fix.fix(AgentCall(text="x = 1\n"), emit)

    assert reply.state == "failed"
    assert "ruff exploded" in reply.text
