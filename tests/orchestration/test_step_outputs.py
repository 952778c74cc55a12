"""A step's output part carries its link, with the step's label, and reads back as it was written."""

from __future__ import annotations

from google.protobuf.json_format import MessageToDict

from gateway.orchestration.step_outputs import StepOutput, step_outputs, step_parts


def test_a_steps_label_travels_in_its_link_and_reads_back() -> None:
    written = [
        StepOutput(3, "pool-a", "failed", "t3", "cannot do it", None, "item 2/4, attempt 1"),
        StepOutput(4, "pool-b", "completed", "t4", "did it", {"n": 1}, "item 2/4, attempt 2"),
        StepOutput(5, "echo", "completed", "t5", "unlabelled"),
    ]

    parts = step_parts(written)

    links = [MessageToDict(part.metadata)["switchboard"] for part in parts]
    assert links[0] == {
        "step": 3,
        "agent": "pool-a",
        "state": "failed",
        "task_id": "t3",
        "label": "item 2/4, attempt 1",
    }
    assert "label" not in links[-1], "no label, no key: the link is as it was"
    assert step_outputs(parts) == written
