from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from gateway.agents import security
from gateway.runtime import AgentCall, FileInput

if TYPE_CHECKING:
    from conftest import RecordingEmitter


def snippet(code: str, name: str = "app.py") -> AgentCall:
    return AgentCall(text="", files=(FileInput(name, text=code),))


async def findings_for(code: str, emit: RecordingEmitter) -> list[dict[str, Any]]:
    reply = await security.run(snippet(code), emit)
    assert reply.state == "completed"
    assert isinstance(reply.data, dict)
    return list(reply.data["findings"])


def rules_by_line(findings: list[dict[str, Any]]) -> dict[int, str]:
    return {finding["line"]: finding["rule"] for finding in findings}


async def test_planted_secret_is_found_and_masked(
    planted_call: AgentCall, planted_text: str, planted_line: Callable[[str], int], emit: RecordingEmitter
) -> None:
    reply = await security.run(planted_call, emit)

    token = re.search(r"ghp_\w+", planted_text)
    assert token is not None
    assert isinstance(reply.data, dict)
    secrets = [f for f in reply.data["findings"] if f["rule"] == "SEC001 hardcoded-secret"]
    assert [(f["file"], f["line"], f["severity"]) for f in secrets] == [
        ("planted.py", planted_line("API_TOKEN ="), "critical")
    ]
    assert "ghp_…" in secrets[0]["message"]
    assert token.group() not in reply.text
    assert token.group() not in json.dumps(reply.data)


async def test_planted_eval_and_shell_are_found(
    planted_call: AgentCall, planted_line: Callable[[str], int], emit: RecordingEmitter
) -> None:
    reply = await security.run(planted_call, emit)

    assert isinstance(reply.data, dict)
    found = rules_by_line(reply.data["findings"])
    assert found[planted_line("eval(")] == "SEC002 eval-exec"
    assert found[planted_line("shell=True")] == "SEC003 shell-command"
    assert reply.artifact_name == "security-findings"
    assert reply.data["summary"] == {
        "total": 3,
        "by_severity": {"critical": 1, "high": 2, "medium": 0, "low": 0, "info": 0},
    }
    assert f"planted.py:{planted_line('eval(')} [high] SEC002 eval-exec" in reply.text


async def test_progress_names_files_and_findings(planted_call: AgentCall, emit: RecordingEmitter) -> None:
    await security.run(planted_call, emit)

    assert emit.progress_messages == ["security: scanning 1 file", "security: 3 findings"]


async def test_secret_found_by_name_is_masked(emit: RecordingEmitter) -> None:
    findings = await findings_for('db_password = "hunter2hunter2"\n', emit)

    assert [(f["line"], f["rule"], f["severity"]) for f in findings] == [(1, "SEC001 hardcoded-secret", "high")]
    assert "hunter2" not in json.dumps(findings)
    assert "`db_password`: hun…" in findings[0]["message"]


async def test_secrets_in_keywords_dicts_and_attributes_are_found(emit: RecordingEmitter) -> None:
    code = (
        'connect(host="db", password="correct-horse")\n'
        'CONFIG = {"api_key": "abc123abc123"}\n'
        'self.secret_key = "x9x9x9x9"\n'
    )

    findings = await findings_for(code, emit)

    assert rules_by_line(findings) == {
        1: "SEC001 hardcoded-secret",
        2: "SEC001 hardcoded-secret",
        3: "SEC001 hardcoded-secret",
    }


async def test_names_and_values_that_are_not_secrets_are_ignored(emit: RecordingEmitter) -> None:
    code = (
        "import os\n"
        'token_url = "https://example.com/token"\n'
        'password = ""\n'
        'password = os.environ["DB_PASSWORD"]\n'
        'DB_PASSWORD = "${DB_PASSWORD}"\n'
        'api_key = "<your key here>"\n'
        'password_prompt = "Password: "\n'
        "max_tokens = 512\n"
    )

    assert await findings_for(code, emit) == []


@pytest.mark.parametrize(
    ("line", "leaked"),
    [
        ('aws = "AKIAIOSFODNN7EXAMPLE"', "AKIAIOSFODNN7EXAMPLE"),
        ("# key: sk-proj-abcdefghijklmnopqrstuvwx", "sk-proj-abcdefghijklmnopqrstuvwx"),
        ("# -----BEGIN OPENSSH PRIVATE KEY-----", "-----BEGIN"),
        ("slack = 'xoxb-1234567890-abcdef'", "xoxb-1234567890-abcdef"),
    ],
)
async def test_credential_formats_are_found_anywhere(line: str, leaked: str, emit: RecordingEmitter) -> None:
    findings = await findings_for(f"{line}\n", emit)

    assert [(f["line"], f["rule"], f["severity"]) for f in findings] == [(1, "SEC001 hardcoded-secret", "critical")]
    assert leaked not in findings[0]["message"]


async def test_shell_commands_are_resolved_through_aliases(emit: RecordingEmitter) -> None:
    code = (
        "import os\n"
        "import subprocess as sp\n"
        "from os import system\n"
        "sp.call(cmd, shell=True)\n"
        'system("ls " + folder)\n'
        "os.popen(cmd)\n"
        'sp.run(["ls", folder])\n'
        'sp.run("ls", shell=False)\n'
        'sp.check_output("ls -l", shell=True)\n'
    )

    findings = await findings_for(code, emit)

    assert [(f["line"], f["rule"], f["severity"]) for f in findings] == [
        (4, "SEC003 shell-command", "high"),
        (5, "SEC003 shell-command", "high"),
        (6, "SEC003 shell-command", "high"),
        (9, "SEC003 shell-command", "medium"),
    ]


async def test_unsafe_deserialisation_is_found_and_safe_yaml_is_not(emit: RecordingEmitter) -> None:
    code = (
        "import marshal, pickle, yaml\n"
        "pickle.loads(blob)\n"
        "marshal.loads(blob)\n"
        "yaml.load(text)\n"
        "yaml.load(text, Loader=yaml.SafeLoader)\n"
        "yaml.safe_load(text)\n"
        "pickle.load(handle)\n"
    )

    findings = await findings_for(code, emit)

    assert rules_by_line(findings) == {n: "SEC004 unsafe-deserialization" for n in (2, 3, 4, 7)}


async def test_sql_built_from_strings_is_found(emit: RecordingEmitter) -> None:
    code = (
        "cur.execute(f\"SELECT * FROM users WHERE name = '{name}'\")\n"
        'cur.execute("DELETE FROM users WHERE id = %s" % user_id)\n'
        'cur.execute("SELECT * FROM t WHERE a = " + a + " AND b = " + b)\n'
        'cur.executemany("INSERT INTO t VALUES ({})".format(values), rows)\n'
        'cur.execute("SELECT * FROM users WHERE id = ?", (user_id,))\n'
        "query = f\"UPDATE users SET name = '{name}' WHERE id = {user_id}\"\n"
        'greeting = f"hello {name}"\n'
        'prompt = "Please select a file from %s" % folder\n'
    )

    findings = await findings_for(code, emit)

    assert [(f["line"], f["rule"], f["severity"]) for f in sorted(findings, key=lambda f: f["line"])] == [
        (1, "SEC005 sql-injection", "high"),
        (2, "SEC005 sql-injection", "high"),
        (3, "SEC005 sql-injection", "high"),
        (4, "SEC005 sql-injection", "high"),
        (6, "SEC005 sql-injection", "medium"),
    ]


async def test_unparseable_file_falls_back_to_patterns(emit: RecordingEmitter) -> None:
    code = 'def broken(:\n    key = "AKIAIOSFODNN7EXAMPLE"\n'

    findings = await findings_for(code, emit)

    assert sorted((f["line"], f["rule"], f["severity"]) for f in findings) == [
        (1, "SEC000 parse-error", "info"),
        (2, "SEC001 hardcoded-secret", "critical"),
    ]


async def test_fenced_snippet_in_the_message_is_reviewed(emit: RecordingEmitter) -> None:
    call = AgentCall(text="Is this safe?\n```python\nimport os\nos.system(cmd)\n```\nThanks")

    reply = await security.run(call, emit)

    assert isinstance(reply.data, dict)
    assert [(f["file"], f["line"]) for f in reply.data["findings"]] == [("snippet.py", 2)]


async def test_message_without_code_asks_for_code(emit: RecordingEmitter) -> None:
    reply = await security.run(AgentCall(text="  \n"), emit)

    assert reply.state == "input-required"
    assert reply.text == "Send Python code as a text part or one or more file parts."
    assert emit.progress_messages == []
