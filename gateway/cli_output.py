"""How the CLI shows A2A tasks: readable text by default, ``--json`` for machines, ``--quiet`` for the result only.

Text shows each thing once: progress lines while a task runs, then the final state and the
result. An artifact that has a text part is shown by its text (its data part is the same content
for machines: ``--json`` has it); an artifact of data alone is shown as JSON. The status message
is shown only when it says something the artifacts do not (a failure's reason, a question).
"""

from __future__ import annotations

import json
import shutil
import textwrap
from collections.abc import Collection, Sequence
from typing import Any, Literal, TextIO

from a2a.types.a2a_pb2 import Message, Part, StreamResponse, Task, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.hosting.data_parts import data_value, integral
from gateway.orchestration.step_outputs import is_steps, step_outputs

Mode = Literal["text", "json", "quiet"]

TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
WAITING = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})


def state_name(state: int) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input-required``."""
    name: str = TaskState.Name(state)
    return name.removeprefix("TASK_STATE_").lower().replace("_", "-")


def as_json(message: Task | Message) -> str:
    """``message`` as indented JSON, integers as integers."""
    return json.dumps(integral(MessageToDict(message)), indent=2, ensure_ascii=False)


def _part_text(part: Part) -> str:
    if part.HasField("text"):
        return part.text
    if part.HasField("data"):
        return json.dumps(data_value(part.data), indent=2, ensure_ascii=False)
    if part.HasField("url"):
        return f"<file {part.filename or ''} at {part.url}>"
    if part.HasField("raw"):
        return f"<file {part.filename or ''}, {len(part.raw)} bytes>"
    return ""


def readable(parts: Sequence[Part]) -> str:
    """The parts a person reads: the text parts, or (when there is no text) the data as JSON, files by name."""
    shown = [p for p in parts if p.HasField("text")] or list(parts)
    return "\n".join(text for text in map(_part_text, shown) if text).rstrip("\n")


def render_event(event: StreamResponse, out: TextIO) -> None:
    """Print one streamed event as progress lines (the final state and result are printed once, later)."""
    if event.HasField("task"):
        out.write(f"[{state_name(event.task.status.state)}] task {event.task.id}\n")
    elif event.HasField("status_update"):
        status = event.status_update.status
        if status.state in TERMINAL or status.state in WAITING:
            return  # said once by the result (or asked as the question)
        text = readable(status.message.parts)
        out.write(f"[{state_name(status.state)}] {text}\n" if text else f"[{state_name(status.state)}]\n")
    elif event.HasField("artifact_update"):
        artifact = event.artifact_update.artifact
        names = [o.name for o in step_outputs(artifact.parts)] if is_steps(artifact) else []
        if event.artifact_update.append and not names:
            return  # a further chunk of an artifact already announced
        for name in names or [artifact.name or artifact.artifact_id]:
            out.write(f"[artifact] {name}\n")
    out.flush()


def sections(task: Task, names: Collection[str] | None = None) -> list[tuple[str, str]]:
    """Each artifact's name and readable text (a run's ``steps`` artifact: one per step), those in ``names`` only."""
    found: list[tuple[str, str]] = []
    for artifact in task.artifacts:
        if not is_steps(artifact):
            found.append((artifact.name or artifact.artifact_id, readable(artifact.parts)))
            continue
        for output in step_outputs(artifact.parts):
            shown = output.text or (json.dumps(integral(output.data), indent=2) if output.data is not None else "")
            found.append((output.name, shown))
    return [(name, text) for name, text in found if names is None or name in names]


def status_text(task: Task, shown: Sequence[str]) -> str:
    """The status message, unless an artifact already says the same."""
    text = readable(task.status.message.parts)
    return "" if not text or any(text.strip() == s.strip() for s in shown) else text


def print_task(task: Task, out: TextIO, mode: Mode, names: Collection[str] | None = None) -> None:
    """The final task: its state and result (``names``: only those artifacts), as ``mode`` asks."""
    if mode == "json":
        out.write(as_json(task) + "\n")
        return
    if names is None and any(is_steps(a) for a in task.artifacts) and any(a.name == "result" for a in task.artifacts):
        names = ("result",)  # a run: its result; each step's output stays on the task (--json, tasks get --json)
    found = sections(task, names)
    status = status_text(task, [text for _, text in found])
    if mode == "quiet":
        result = [text for _, text in found if text] or ([status] if status else [])
        if result:
            out.write("\n\n".join(result) + "\n")
        return
    out.write(f"== {state_name(task.status.state)} ==\n")
    if status:
        out.write(status + "\n")
    for name, text in found:
        out.write(f"\n-- artifact: {name} --\n{text}\n" if len(found) > 1 else f"\n{text}\n")


def print_message(message: Message, out: TextIO, mode: Mode) -> None:
    """An agent's direct reply (no task)."""
    out.write((as_json(message) if mode == "json" else readable(message.parts)) + "\n")


def print_tasks(rows: Sequence[tuple[str, Task]], out: TextIO) -> None:
    """One line per task: id, agent, state, last update, and the first line of its status message."""
    if not rows:
        out.write("no tasks\n")
        return
    for agent, task in rows:
        when = task.status.timestamp.ToJsonString() if task.status.HasField("timestamp") else ""
        note = readable(task.status.message.parts).split("\n", 1)[0][:60]
        out.write(
            f"{task.id}  {agent:<20} {state_name(task.status.state):<15} {when[:19]:<19}  {note}\n".rstrip() + "\n"
        )


def print_agents(cards: Sequence[dict[str, Any]], out: TextIO) -> None:
    """Name, description (wrapped at word boundaries to the terminal's width) and skills of each agent."""
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120))
    indent = " " * 23
    for card in cards:
        name = str(card.get("name", ""))
        description = " ".join(str(card.get("description", "")).split()) or "(no description)"
        lines = textwrap.wrap(description, width=width - len(indent)) or [""]
        out.write(f"{name:<22} {lines[0]}\n")
        for line in lines[1:]:
            out.write(f"{indent}{line}\n")
        skills = ", ".join(str(s.get("id", "")) for s in card.get("skills", []))
        if skills:
            out.write(textwrap.fill(f"skills: {skills}", width=width, initial_indent=indent, subsequent_indent=indent))
            out.write("\n")
