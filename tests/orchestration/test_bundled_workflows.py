"""The bundled offline workflows end to end over A2A: lint-fix makes code clean, triage routes by skill."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from typing import Any

import httpx
import pytest
import ruff
from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest, Task, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client

JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
FIXABLE = "import os\nimport sys\n\ndef  greet( name ):\n    return 'hi '+name\n"
SAMPLE = "def add(a, b):\n    return a + b\n"


async def run_workflow(gateway: RunningGateway, agent: str, parts: list[Part]) -> Task:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts)
    async with a2a_client(gateway.agent_url(agent), JSONRPC) as client, asyncio.timeout(120):
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
        return await client.get_task(GetTaskRequest(id=events[-1].task.id))


def result_data(task: Task) -> dict[str, Any]:
    found = [MessageToDict(p.data) for a in task.artifacts if a.name == "result" for p in a.parts if p.HasField("data")]
    assert found, [a.name for a in task.artifacts]
    return found[0]


def ruff_findings(code: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [ruff.find_ruff_bin(), "check", "--isolated", "--no-cache", "--output-format", "json", "--stdin-filename",
         "x.py", "-"],
        input=code, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    return json.loads(done.stdout)  # type: ignore[no-any-return]


async def test_lint_fix_turns_fixable_lint_into_clean_code(gateway: RunningGateway) -> None:
    assert ruff_findings(FIXABLE), "the sample starts with lint"
    task = await run_workflow(
        gateway, "lint-fix", [Part(raw=FIXABLE.encode(), filename="greet.py", media_type="text/x-python")]
    )
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status.message
    data = result_data(task)
    assert data["approved"] is True
    code = data["final_output"]["data"]["files"][0]["code"]
    assert data["iterations"] >= 1 and data["final_output"]["agent"] == "lint-fixer"
    assert "import sys" not in code and ruff_findings(code) == [], "clean by an independent ruff run"


@pytest.mark.parametrize(
    ("request_text", "agent"),
    [
        ("Is there a hard-coded password in this code?", "security-reviewer"),
        ("Which function here is too complex?", "complexity-reviewer"),
        ("Fix the lint in this file", "lint-fix"),
    ],
)
async def test_triage_routes_requests_to_different_agents(
    gateway: RunningGateway, request_text: str, agent: str
) -> None:
    task = await run_workflow(gateway, "triage", [Part(text=f"{request_text}\n\n```python\n{SAMPLE}```")])
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status.message
    assert result_data(task)["path"] == [agent]


async def test_root_card_is_the_triage_card(http: httpx.AsyncClient) -> None:
    root = await http.get("/.well-known/agent-card.json")
    triage = await http.get("/agents/triage/.well-known/agent-card.json")
    assert root.status_code == 200 and root.content == triage.content
    assert root.json()["name"] == "triage" and root.json()["signatures"]
