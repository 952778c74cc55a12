"""A child task's final state as a step result: text, data, and what the executor put in the metadata."""

from __future__ import annotations

from a2a.types.a2a_pb2 import Artifact, Message, Part, Role, Task, TaskState, TaskStatus

from gateway.hosting.executor import data_part, reply_metadata
from gateway.orchestration.api import StepInput
from gateway.orchestration.child_tasks import StepLink, child_message, step_result
from gateway.runtime import FileInput, Reply, Usage
from tests.orchestration.run_client import data_of, meta

LINK = StepLink(parent_task_id="parent", context_id="ctx", run_id="run", step=3, hops=1)


def finished(state: TaskState, text: str = "", metadata: dict[str, object] | None = None, *parts: Part) -> Task:
    message = Message(role=Role.ROLE_AGENT, message_id="m", parts=[Part(text=text)])
    if metadata:
        message.metadata.update(metadata)
    task = Task(id="child", context_id="ctx", status=TaskStatus(state=state, message=message))
    if parts:
        task.artifacts.append(Artifact(artifact_id="result", parts=list(parts)))
    return task


def test_usage_and_a_handoff_recorded_by_the_executor_reach_the_step_result() -> None:
    reply = Reply(text="over to the critic", usage=Usage(12, 30, 0.004), handoff_to="critic", handoff_note="check it")
    task = finished(TaskState.TASK_STATE_COMPLETED, reply.text, reply_metadata(reply), data_part({"draft": 1}))

    outcome = step_result("writer", task)

    result = outcome.result
    assert (result.state, result.text, result.data, result.task_id) == ("completed", reply.text, {"draft": 1}, "child")
    assert result.usage == Usage(12, 30, 0.004)
    assert (result.handoff_to, result.handoff_note) == ("critic", "check it")
    assert not outcome.retryable


def test_a_failure_marked_retryable_is_retryable_and_a_plain_one_is_not() -> None:
    marked = reply_metadata(Reply(state="failed"), retryable=True, reason="model-unavailable")
    retryable = step_result("llm", finished(TaskState.TASK_STATE_FAILED, "overloaded", marked))
    plain = step_result("llm", finished(TaskState.TASK_STATE_FAILED, "bad request"))

    assert retryable.retryable and retryable.result.error == "overloaded"
    assert not plain.retryable and plain.result.state == "failed"


def test_text_falls_back_to_text_artifacts_and_several_data_parts_make_a_list() -> None:
    task = finished(
        TaskState.TASK_STATE_COMPLETED, "", None, Part(text="the answer"), data_part({"a": 1}), data_part([2])
    )

    result = step_result("agent", task).result

    assert result.text == "the answer" and result.data == [{"a": 1.0}, [2.0]]


def test_a_task_that_did_not_reach_a_final_state_fails_the_step() -> None:
    result = step_result("agent", finished(TaskState.TASK_STATE_WORKING, "still going")).result

    assert result.state == "failed" and result.error == "agent ended in TASK_STATE_WORKING, not a final state"


def test_a_child_message_carries_the_input_and_links_the_parent() -> None:
    files = (FileInput(name="a.py", media_type="text/x-python", text="x = 1\n"),)
    request = StepInput(text="review", data=({"k": "v"},), files=files, metadata={"switchboard": "spoofed", "x": 1})

    message = child_message(request, LINK)
    follow_up = child_message(StepInput(text="yes"), LINK, follow_up=("child", "child-ctx"))

    assert [p.text for p in message.parts if p.text] == ["review"] and data_of(message) == {"k": "v"}
    assert message.parts[2].raw == b"x = 1\n" and message.parts[2].filename == "a.py"
    assert meta(message) == {"parent_task_id": "parent", "run_id": "run", "step": 3.0, "hops": 1.0}
    assert list(message.reference_task_ids) == ["parent"] and message.context_id == "ctx" and not message.task_id
    assert (follow_up.task_id, follow_up.context_id) == ("child", "child-ctx")
