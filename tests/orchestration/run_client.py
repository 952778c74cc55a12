"""Running a workflow through a2a-sdk's streaming client against a real gateway, for engine tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a2a.client import Client
from a2a.types.a2a_pb2 import (
    Artifact,
    GetTaskRequest,
    ListTasksRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    Task,
    TaskState,
)
from google.protobuf.json_format import MessageToDict

from gateway.orchestration.step_outputs import StepOutput, is_steps, step_outputs
from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client

STREAMING = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
RUN_TIMEOUT_S = 30.0
TERMINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}


@dataclass
class RunLog:
    """What a streamed run showed: its progress texts, its outputs' names in order, and the final task.

    ``artifacts`` names what the stream's artifact updates carried, in order: each step's output in
    a ``steps`` update as ``step-<n>-<agent>`` (``output_names``), any other artifact by its name.
    """

    task: Task
    progress: list[str] = field(default_factory=list)
    artifacts: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The final status message's text."""
        return text_of(self.task)

    def artifact(self, name: str) -> Artifact:
        """The run's artifact ``name``."""
        return artifact(self.task, name)

    def step(self, name: str) -> StepOutput:
        """The output of step ``name`` (``step-<n>-<agent>``) in the final task's ``steps`` artifact."""
        return step_output(self.task, name)


def text_of(task: Task) -> str:
    """A task's status message text."""
    return "\n".join(p.text for p in task.status.message.parts if p.text)


def artifact(task: Task, name: str) -> Artifact:
    """The artifact called ``name`` of ``task``."""
    found = [a for a in task.artifacts if a.name == name]
    assert found, f"no artifact {name!r}; have {[a.name for a in task.artifacts]}"
    return found[0]


def output_names(artifacts: Sequence[Artifact]) -> list[str]:
    """Artifact names in order, a ``steps`` artifact (or chunk) as the ``step-<n>-<agent>`` of each output it holds."""
    return [
        name
        for a in artifacts
        for name in ([o.name for o in step_outputs(a.parts)] if is_steps(a) else [a.name or a.artifact_id])
    ]


def step_output(task: Task, name: str) -> StepOutput:
    """The latest output of step ``name`` (``step-<n>-<agent>``) in a run's task.

    A step shows once per state it reached: a step that asked for input shows its question, and
    once answered, its outcome (the latest); nothing is shown twice.
    """
    found = [o for a in task.artifacts if is_steps(a) for o in step_outputs(a.parts) if o.name == name]
    assert found, f"no output of {name!r}; have {output_names(task.artifacts)}"
    links = [(o.step, o.state, o.task_id) for o in found]
    assert len(set(links)) == len(links), f"{name!r} is shown twice: {links}"
    return found[-1]


def data_of(item: Artifact | Message) -> Any:
    """The first data part of an artifact or message, as plain values."""
    return next(MessageToDict(p.data) for p in item.parts if p.HasField("data"))


def meta(item: Artifact | Message | Task) -> dict[str, Any]:
    """The gateway's entry (``switchboard``) in an artifact's, message's or task's metadata."""
    value = MessageToDict(item.metadata).get("switchboard", {})
    assert isinstance(value, dict)
    return value


def request(text: str = "", files: Sequence[Path] = (), message_id: str = "") -> Message:
    """A user message with ``text`` and one part per file."""
    parts = [Part(text=text)] if text else []
    parts += [Part(raw=p.read_bytes(), filename=p.name, media_type="text/x-python") for p in files]
    return Message(role=Role.ROLE_USER, message_id=message_id or str(uuid.uuid4()), parts=parts)


async def stream_run(client: Client, message: Message, log: RunLog) -> str:
    """Stream ``message`` into ``log``; the task id."""
    task_id = ""
    async for event in client.send_message(SendMessageRequest(message=message)):
        if event.HasField("task"):
            task_id = event.task.id
        elif event.HasField("status_update"):
            task_id = task_id or event.status_update.task_id
            log.progress += [p.text for p in event.status_update.status.message.parts if p.text]
        elif event.HasField("artifact_update"):
            log.artifacts += output_names([event.artifact_update.artifact])
    return task_id


async def run_workflow(
    gateway: RunningGateway, workflow: str, message: Message | str, within: float = RUN_TIMEOUT_S
) -> RunLog:
    """Run ``workflow`` to its end (or until it asks for input) over streaming JSON-RPC."""
    message = request(message) if isinstance(message, str) else message
    log = RunLog(task=Task())
    async with a2a_client(gateway.agent_url(workflow), STREAMING) as client, asyncio.timeout(within):
        task_id = await stream_run(client, message, log)
        log.task = await client.get_task(GetTaskRequest(id=task_id))
    return log


async def start_run(gateway: RunningGateway, workflow: str, text: str) -> Task:
    """Start a run and return at once (``return_immediately``), over non-streaming JSON-RPC."""
    binding = next(b for b in BINDINGS if b.id == "jsonrpc")
    config = SendMessageConfiguration(return_immediately=True)
    async with a2a_client(gateway.agent_url(workflow), binding) as client, asyncio.timeout(RUN_TIMEOUT_S):
        async for event in client.send_message(SendMessageRequest(message=request(text), configuration=config)):
            if event.HasField("task"):
                return event.task
    raise AssertionError("no task came back")


async def get_task(gateway: RunningGateway, agent: str, task_id: str) -> Task:
    """GetTask on ``agent``'s own URL."""
    async with a2a_client(gateway.agent_url(agent), STREAMING) as client:
        return await client.get_task(GetTaskRequest(id=task_id))


async def list_tasks(gateway: RunningGateway, agent: str) -> list[Task]:
    """Every task of ``agent`` (the caller's), newest first."""
    async with a2a_client(gateway.agent_url(agent), STREAMING) as client:
        return list((await client.list_tasks(ListTasksRequest(include_artifacts=True))).tasks)
