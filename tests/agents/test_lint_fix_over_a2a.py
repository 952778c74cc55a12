"""The lint-fix workflow over A2A: the checker's counts reach the fixer as integers, so unsafe fixes apply."""

from __future__ import annotations

import asyncio
import uuid

from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState

from gateway.hosting.data_parts import data_value
from gateway.testing import RunningGateway
from tests.agents.test_review_over_a2a import STREAMING
from tests.bindings.a2a_clients import a2a_client

# ruff fixes B006 (a mutable default) only with --unsafe-fixes: the fixer adds it once the checker
# reports fixable findings left (the count arrives through the data part of the checker's step).
MUTABLE_DEFAULT = "def add(item, into=[]):\n    into.append(item)\n    return into\n"


async def test_a_file_needing_unsafe_fixes_comes_back_clean(gateway: RunningGateway) -> None:
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=[Part(raw=MUTABLE_DEFAULT.encode(), filename="box.py", media_type="text/x-python")],
    )
    async with a2a_client(gateway.agent_url("lint-fix"), STREAMING) as client, asyncio.timeout(60):
        task_id = ""
        async for event in client.send_message(SendMessageRequest(message=message)):
            task_id = task_id or (event.task.id if event.HasField("task") else event.status_update.task_id)
        task = await client.get_task(GetTaskRequest(id=task_id))

    assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status.message
    texts = [p.text for a in task.artifacts for p in a.parts if p.HasField("text")]
    assert any("if into is None:\n        into = []" in text for text in texts), texts


async def test_integers_in_a_data_artifact_come_back_as_integers(gateway: RunningGateway) -> None:
    message = Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=[Part(raw=MUTABLE_DEFAULT.encode(), filename="box.py", media_type="text/x-python")],
    )
    async with a2a_client(gateway.agent_url("lint-checker"), STREAMING) as client, asyncio.timeout(60):
        task_id = ""
        async for event in client.send_message(SendMessageRequest(message=message)):
            task_id = task_id or (event.task.id if event.HasField("task") else event.status_update.task_id)
        task = await client.get_task(GetTaskRequest(id=task_id))

    data = [data_value(p.data) for a in task.artifacts for p in a.parts if p.HasField("data")]
    assert data and data[0]["fixable"] == 1 and isinstance(data[0]["fixable"], int)
    assert all(isinstance(f["line"], int) for f in data[0]["findings"])
