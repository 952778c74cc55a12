"""The CLI's A2A client side: list a gateway's agents, send a message and show its progress."""

from __future__ import annotations

import json
import mimetypes
import sys
import uuid
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx
from a2a.client import A2AClientError, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest, StreamResponse, Task, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.executor import data_part
from gateway.orchestration.step_outputs import is_steps, step_outputs

TERMINAL = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}


def _state(state: int) -> str:
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")


def _parts_text(parts: Sequence[Part]) -> str:
    out = []
    for part in parts:
        if part.HasField("text"):
            out.append(part.text)
        elif part.HasField("data"):
            out.append(json.dumps(MessageToDict(part.data), indent=2))
        elif part.HasField("url"):
            out.append(f"<file {part.filename or ''} at {part.url}>")
        elif part.HasField("raw"):
            out.append(f"<file {part.filename or ''}, {len(part.raw)} bytes>")
    return "\n".join(out)


def build_message(text: str, files: Sequence[Path]) -> Message:
    """A user message with ``text`` and one file part per path."""
    parts = [Part(text=text)] if text else []
    for path in files:
        media = mimetypes.guess_type(path.name)[0] or "text/plain"
        parts.append(Part(raw=path.read_bytes(), filename=path.name, media_type=media))
    return Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=parts)


def render_event(event: StreamResponse, out: TextIO) -> Task | None:
    """Print one streamed event as a progress line; returns the task when the event carries one."""
    if event.HasField("task"):
        out.write(f"[{_state(event.task.status.state)}] task {event.task.id}\n")
        return event.task
    if event.HasField("status_update"):
        status = event.status_update.status
        text = _parts_text(status.message.parts)
        out.write(f"[{_state(status.state)}] {text}\n" if text else f"[{_state(status.state)}]\n")
    elif event.HasField("artifact_update"):
        artifact = event.artifact_update.artifact
        names = [o.name for o in step_outputs(artifact.parts)] if is_steps(artifact) else []
        for name in names or [artifact.name or artifact.artifact_id]:
            out.write(f"[artifact] {name}\n")
    elif event.HasField("message"):
        out.write(_parts_text(event.message.parts) + "\n")
    out.flush()
    return None


def print_result(task: Task, out: TextIO, as_json: bool, artifacts: Collection[str] | None = None) -> None:
    """The final state, the status message and every artifact (or only those named in ``artifacts``)."""
    if as_json:
        out.write(json.dumps(MessageToDict(task), indent=2) + "\n")
        return
    out.write(f"\n== {_state(task.status.state)} ==\n")
    if task.status.message.parts:
        out.write(_parts_text(task.status.message.parts) + "\n")
    for name, parts in _sections(task):
        if artifacts is None or name in artifacts:
            out.write(f"\n-- artifact: {name} --\n{_parts_text(parts)}\n")


def _sections(task: Task) -> list[tuple[str, Sequence[Part]]]:
    """Each artifact's name and parts; a run's ``steps`` artifact as one section per step (``step-<n>-<agent>``)."""
    sections: list[tuple[str, Sequence[Part]]] = []
    for artifact in task.artifacts:
        if not is_steps(artifact):
            sections.append((artifact.name or artifact.artifact_id, artifact.parts))
            continue
        for output in step_outputs(artifact.parts):
            parts = [Part(text=output.text)] if output.text else []
            sections.append((output.name, parts + ([data_part(output.data)] if output.data is not None else [])))
    return sections


async def send(
    base_url: str,
    agent: str,
    text: str,
    files: Sequence[Path],
    *,
    stream: bool = False,
    as_json: bool = False,
    artifacts: Collection[str] | None = None,
) -> int:
    """Send ``text`` (and files) to ``agent``; exit code 0 when the task completed.

    The final task is printed with every artifact, or only those named in ``artifacts``.
    """
    url = agent if "://" in agent else f"{base_url.rstrip('/')}/agents/{agent}"
    out = sys.stdout
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=None)) as http:
        config = ClientConfig(streaming=stream, httpx_client=http)
        try:
            client = await ClientFactory(config).create_from_url(url)
        except (A2AClientError, httpx.HTTPError) as exc:
            sys.stderr.write(f"switchboard: cannot reach agent at {url}: {exc}\n")
            return 2
        task: Task | None = None
        try:
            async for event in client.send_message(SendMessageRequest(message=build_message(text, files))):
                if stream:
                    task = render_event(event, out) or task
                elif event.HasField("task"):
                    task = event.task
                if not stream and event.HasField("message"):
                    out.write(_parts_text(event.message.parts) + "\n")
                    return 0
            if task is not None and task.status.state not in TERMINAL:
                task = await client.get_task(_get(task.id))
        except A2AClientError as exc:
            sys.stderr.write(f"switchboard: {exc}\n")
            return 1
        finally:
            await client.close()
    if task is None:
        return 0
    print_result(task, out, as_json, artifacts)
    return 0 if task.status.state == TaskState.TASK_STATE_COMPLETED else 1


async def run_workflow(base_url: str, workflow: str, text: str, files: Sequence[Path], *, as_json: bool = False) -> int:
    """Run ``workflow`` on ``text`` (and files), streaming each step's progress; prints the run's result.

    A run is an A2A task of the workflow agent, so this is a streaming send whose status updates
    are the steps' progress; each step's own output stays on the task, in its ``steps`` artifact
    (printed as it arrives as ``[artifact] step-<n>-<agent>``).
    """
    return await send(base_url, workflow, text, files, stream=True, as_json=as_json, artifacts=("result",))


def _get(task_id: str) -> Any:
    from a2a.types.a2a_pb2 import GetTaskRequest

    return GetTaskRequest(id=task_id)


async def list_agents(base_url: str) -> int:
    """Print the name, description and skills of each agent a gateway hosts."""
    async with httpx.AsyncClient(timeout=10.0) as http:
        try:
            response = await http.get(f"{base_url.rstrip('/')}/agents")
            response.raise_for_status()
        except httpx.HTTPError as exc:
            sys.stderr.write(f"switchboard: cannot list agents at {base_url}: {exc}\n")
            return 2
    for card in response.json():
        skills = ", ".join(s.get("id", "") for s in card.get("skills", []))
        sys.stdout.write(f"{card['name']:<22} {card.get('description', '').splitlines()[0][:70]}\n")
        sys.stdout.write(f"{'':<22} skills: {skills}\n")
    return 0
