"""Each step's output on the run's task: the parts of one artifact, ``steps``, with a link per part.

A run publishes its steps' outputs in batches (``engine.RunPublisher``); each batch is one
artifact update of the artifact ``steps`` (the first creates it, later ones append), since every
event on the run's task is a save of the whole task. A step's output is one text part and/or one
data part, in that order, each carrying the step's link to its child task in the part's metadata:
``{"switchboard": {"step", "agent", "state", "task_id", "label"}}`` (the label is the step's place
in the pattern, "item 3/9, attempt 2", which its progress lines name it by). Within a batch steps
come in step order; batches come in the order steps finished. A step with neither text nor data has no part
(its link is in the final status update's metadata, ``adapters.workflow.publish_outcome``).

Readers (the CLI, the MCP binding, tests) get the outputs back with ``step_outputs``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from a2a.types.a2a_pb2 import Artifact, Part
from google.protobuf.json_format import MessageToDict

from gateway.hosting.data_parts import data_value
from gateway.hosting.executor import METADATA_KEY, data_part

STEPS_ARTIFACT = "steps"
"""The id and name of the artifact that holds every step's output."""


@dataclass(frozen=True)
class StepOutput:
    """One step's output as the run's task shows it."""

    step: int
    agent: str
    state: str
    task_id: str
    text: str | None = None
    data: Any = None
    label: str = ""

    @property
    def name(self) -> str:
        """``step-<n>-<agent>``: how the CLI and the MCP binding name a step's output."""
        return f"step-{self.step}-{self.agent}"

    def link(self) -> dict[str, Any]:
        """The step's entry in its parts' metadata."""
        link = {"step": self.step, "agent": self.agent, "state": self.state, "task_id": self.task_id}
        return {**link, "label": self.label} if self.label else link


def step_parts(outputs: Iterable[StepOutput]) -> list[Part]:
    """The parts of ``outputs``: text then data for each, each part linked to its step."""
    parts: list[Part] = []
    for output in outputs:
        own = ([Part(text=output.text)] if output.text else []) + (
            [data_part(output.data)] if output.data is not None else []
        )
        for part in own:
            part.metadata.update({METADATA_KEY: output.link()})
        parts += own
    return parts


def is_steps(artifact: Artifact) -> bool:
    """Whether ``artifact`` is (a chunk of) a run's ``steps`` artifact."""
    return artifact.artifact_id == STEPS_ARTIFACT


def step_outputs(parts: Sequence[Part]) -> list[StepOutput]:
    """The steps whose output ``parts`` hold (the parts of a ``steps`` artifact or of a chunk of it), in order."""
    outputs: list[StepOutput] = []
    for part in parts:
        link = MessageToDict(part.metadata).get(METADATA_KEY) if part.HasField("metadata") else None
        if not isinstance(link, dict) or not isinstance(link.get("step"), int | float):
            continue
        text = part.text if part.HasField("text") else None
        data = data_value(part.data) if part.HasField("data") else None
        last = outputs[-1] if outputs else None
        if last is not None and last.step == int(link["step"]) and last.data is None and data is not None:
            outputs[-1] = dataclasses.replace(last, data=data)
            continue
        outputs.append(
            StepOutput(
                int(link["step"]),
                str(link.get("agent", "")),
                str(link.get("state", "")),
                str(link.get("task_id", "")),
                text,
                data,
                str(link.get("label", "")),
            )
        )
    return outputs


def published_steps(artifacts: Iterable[Artifact]) -> set[int]:
    """The step numbers a task's ``steps`` artifact already shows (a resumed run publishes only the others)."""
    return {o.step for a in artifacts if is_steps(a) for o in step_outputs(a.parts)}
