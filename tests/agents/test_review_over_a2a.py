"""The planted sample sent as a file part over A2A: each specialist finds its own, the lead ranks them all."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client

PLANTED = Path(__file__).resolve().parents[1] / "samples" / "planted.py"
STREAMING = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
SEVERITY_ORDER = ["critical", "high", "medium", "low", "info"]


async def review(gateway: RunningGateway, agent: str) -> tuple[dict[str, Any], list[str]]:
    """Send the sample as a file; return the data artifact and the progress texts streamed on the way."""
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=[
            Part(text="Please review this file."),
            Part(raw=PLANTED.read_bytes(), filename="planted.py", media_type="text/x-python"),
        ],
    )
    progress: list[str] = []
    task_id = ""
    async with a2a_client(gateway.agent_url(agent), STREAMING) as client, asyncio.timeout(60):
        async for event in client.send_message(SendMessageRequest(message=message)):
            if event.HasField("task"):
                task_id = event.task.id
            if event.HasField("status_update"):
                progress += [p.text for p in event.status_update.status.message.parts if p.text]
        task = await client.get_task(GetTaskRequest(id=task_id))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
    data = [MessageToDict(p.data) for a in task.artifacts for p in a.parts if p.HasField("data")]
    assert len(data) == 1 and task.status.message.parts[0].text, "a data artifact and a readable summary"
    return data[0], progress


def rules(report: dict[str, Any]) -> set[str]:
    return {f["rule"].split()[0] for f in report["findings"]}


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("security-reviewer", {"SEC001", "SEC002", "SEC003"}),
        ("complexity-reviewer", {"CPX001"}),
        ("style-reviewer", {"F401", "F821"}),
    ],
)
async def test_each_specialist_finds_its_own(gateway: RunningGateway, agent: str, expected: set[str]) -> None:
    report, progress = await review(gateway, agent)
    assert expected <= rules(report)
    assert all(f["file"] == "planted.py" and f["line"] > 0 and f["hint"] for f in report["findings"])
    assert progress, "status updates while working"


async def test_lead_reports_everything_ranked(gateway: RunningGateway) -> None:
    report, progress = await review(gateway, "review-lead")
    assert {"SEC001", "SEC002", "SEC003", "CPX001", "F401", "F821"} <= rules(report)
    ranks = [SEVERITY_ORDER.index(f["severity"]) for f in report["findings"]]
    assert ranks == sorted(ranks), "ranked by severity"
    assert report["findings"][0]["rule"].startswith("SEC001"), "the hard-coded secret comes first"
    assert len(progress) >= 3
