from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from gateway.agents import lead, style
from gateway.agents.findings import SEVERITY_RANK, Finding
from gateway.runtime import AgentCall

if TYPE_CHECKING:
    from conftest import RecordingEmitter


def finding(
    rule: str, severity: str, source: str, line: int = 3, message: str = "", file: str = "x.py"
) -> dict[str, Any]:
    return Finding(file, line, rule, severity, message or f"{rule} here", f"fix {rule}", source).to_dict()


def test_finding_round_trips_and_rejects_unknown_severity() -> None:
    original = Finding("a.py", 3, "SEC002 eval-exec", "high", "eval", "don't", "security")

    assert Finding.from_dict(original.to_dict()) == original
    assert original.code == "SEC002"
    with pytest.raises(ValueError, match="unknown severity"):
        Finding.from_dict({**original.to_dict(), "severity": "apocalyptic"})


def report(reply: Any) -> list[dict[str, Any]]:
    assert reply.state == "completed"
    assert reply.artifact_name == "review-report"
    assert isinstance(reply.data, dict)
    return list(reply.data["findings"])


async def test_code_alone_gets_every_specialist_and_a_ranked_report(
    planted_call: AgentCall, planted_line: Callable[[str], int], emit: RecordingEmitter
) -> None:
    reply = await lead.run(planted_call, emit)

    findings = report(reply)
    planted = [
        ("SEC001", planted_line("API_TOKEN =")),
        ("SEC002", planted_line("eval(")),
        ("SEC003", planted_line("shell=True")),
        ("F821", planted_line("render_summary(")),
        ("F401", planted_line("import os")),
        ("CPX001", planted_line("def classify(")),
    ]
    listed = [(f["rule"].split()[0], f["line"]) for f in findings]
    assert [entry for entry in listed if entry in planted] == planted
    ranks = [SEVERITY_RANK[f["severity"]] for f in findings]
    assert ranks == sorted(ranks)
    assert {"security", "complexity", "ruff"} <= set(reply.data["sources"])
    lines = [line for line in reply.text.splitlines() if line.startswith("- planted.py:")]
    assert lines[0].startswith(f"- planted.py:{planted[0][1]} [critical] SEC001 hardcoded-secret")
    assert {"security: scanning 1 file", "complexity: measuring 1 file", "style: linting 1 file with ruff"} <= set(
        emit.progress_messages
    )


async def test_same_concern_from_two_tools_is_reported_once(emit: RecordingEmitter) -> None:
    ours = finding("SEC001 hardcoded-secret", "critical", "security")
    ruffs = finding("S105 hardcoded-password-string", "medium", "ruff")
    call = AgentCall(text="", data=({"findings": [ours]}, {"findings": [ruffs]}))

    findings = report(await lead.run(call, emit))

    assert [(f["rule"], f["severity"], f["source"]) for f in findings] == [
        ("SEC001 hardcoded-secret", "critical", "ruff, security")
    ]


async def test_exact_duplicates_collapse_but_distinct_findings_stay(emit: RecordingEmitter) -> None:
    unused_os = finding("F401 unused-import", "medium", "ruff", line=1, message="`os` imported but unused")
    unused_sys = finding("F401 unused-import", "medium", "ruff", line=1, message="`sys` imported but unused")
    elsewhere = finding("F401 unused-import", "medium", "ruff", line=1, message="`os` imported but unused", file="y.py")
    call = AgentCall(text="", data=({"findings": [unused_os, unused_sys, unused_os]}, {"findings": [elsewhere]}))

    findings = report(await lead.run(call, emit))

    assert [(f["file"], f["message"]) for f in findings] == [
        ("x.py", "`os` imported but unused"),
        ("x.py", "`sys` imported but unused"),
        ("y.py", "`os` imported but unused"),
    ]


async def test_given_findings_are_ranked_by_severity_file_and_line(emit: RecordingEmitter) -> None:
    given = [
        finding("CPX001 high-complexity", "low", "complexity", line=9),
        finding("F821 undefined-name", "high", "ruff", line=7, file="b.py"),
        finding("SEC002 eval-exec", "high", "security", line=2, file="b.py"),
        finding("SEC003 shell-command", "high", "security", line=5, file="a.py"),
        finding("SEC001 hardcoded-secret", "critical", "security", line=40),
    ]

    findings = report(await lead.run(AgentCall(text="", data=({"findings": given},)), emit))

    assert [(f["file"], f["line"]) for f in findings] == [
        ("x.py", 40),
        ("a.py", 5),
        ("b.py", 2),
        ("b.py", 7),
        ("x.py", 9),
    ]
    assert emit.progress_messages == ["lead: merging 5 findings", "lead: 5 findings after merging 5"]


async def test_findings_in_other_shapes_are_accepted(emit: RecordingEmitter) -> None:
    ruff_native = {
        "code": "F401",
        "name": "unused-import",
        "message": "`os` imported but unused",
        "filename": "x.py",
        "location": {"row": 1, "column": 8},
        "fix": {"message": "Remove unused import: `os`"},
        "severity": "error",
    }
    bandit = {
        "test_id": "B602",
        "issue_severity": "HIGH",
        "issue_text": "subprocess call with shell=True",
        "filename": "x.py",
        "line_number": 4,
    }
    ours = finding("SEC003 shell-command", "high", "security", line=4)
    data = ({"findings": [ours]}, {"style": {"diagnostics": [ruff_native]}}, {"results": [bandit], "errors": []})

    findings = report(await lead.run(AgentCall(text="", data=data), emit))

    assert [(f["rule"], f["line"], f["severity"], f["hint"]) for f in findings] == [
        ("F401 unused-import", 1, "high", "Remove unused import: `os`"),
        ("SEC003 shell-command", 4, "high", "fix SEC003 shell-command"),
    ]


async def test_findings_as_json_text_are_merged_without_running_specialists(emit: RecordingEmitter) -> None:
    text = "```json\n" + json.dumps({"findings": [finding("SEC002 eval-exec", "high", "security")]}) + "\n```"

    findings = report(await lead.run(AgentCall(text=text), emit))

    assert [f["rule"] for f in findings] == ["SEC002 eval-exec"]
    assert not any(message.startswith(("security:", "style:", "complexity:")) for message in emit.progress_messages)


async def test_empty_findings_lists_give_an_empty_report(emit: RecordingEmitter) -> None:
    reply = await lead.run(AgentCall(text="", data=({"agent": "security", "findings": []},)), emit)

    assert report(reply) == []
    assert reply.text.startswith("## Code review report: 0 findings")


@pytest.mark.parametrize(
    "call", [AgentCall(text=""), AgentCall(text='{"hello": "world"}'), AgentCall(text="", data=({},))]
)
async def test_no_code_and_no_findings_asks_for_input(call: AgentCall, emit: RecordingEmitter) -> None:
    reply = await lead.run(call, emit)

    assert reply.state == "input-required"
    assert "Python code" in reply.text


async def test_a_failed_specialist_is_noted_and_the_rest_reported(
    monkeypatch: pytest.MonkeyPatch, planted_call: AgentCall, emit: RecordingEmitter
) -> None:
    monkeypatch.setattr(style, "find_ruff", lambda: None)

    reply = await lead.run(planted_call, emit)

    findings = report(reply)
    assert {f["source"] for f in findings} == {"security", "complexity"}
    assert isinstance(reply.data, dict)
    assert reply.data["notes"] == [f"style did not run (failed): {style.UNAVAILABLE_TEXT}"]
    assert style.UNAVAILABLE_TEXT in reply.text
