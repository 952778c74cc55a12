"""A local task mirrors its remote task: re-addressed events, each once, across a resubscription's snapshot."""

from __future__ import annotations

import time
from typing import Any, cast

from a2a.server.events import EventQueue
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    Part,
    Role,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from gateway.federation.mirror import Mirror

WORKING, COMPLETED = TaskState.TASK_STATE_WORKING, TaskState.TASK_STATE_COMPLETED


class RecordingQueue:
    """The local task's event queue, as far as the mirror uses it."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def enqueue_event(self, event: Any) -> None:
        self.events.append(event)


def status(state: int, text: str = "", second: int = 1) -> TaskStatus:
    result = TaskStatus(state=cast(TaskState, state))
    if text:
        result.message.CopyFrom(
            Message(
                message_id=f"m-{text}", role=Role.ROLE_AGENT, task_id="r1", context_id="rc", parts=[Part(text=text)]
            )
        )
    result.timestamp.seconds = second
    return result


def status_event(state: int, text: str = "", second: int = 1) -> StreamResponse:
    return StreamResponse(
        status_update=TaskStatusUpdateEvent(task_id="r1", context_id="rc", status=status(state, text, second))
    )


def chunk(text: str, append: bool) -> StreamResponse:
    artifact = Artifact(artifact_id="out", name="out", parts=[Part(text=text)])
    return StreamResponse(
        artifact_update=TaskArtifactUpdateEvent(task_id="r1", context_id="rc", artifact=artifact, append=append)
    )


def snapshot(state: int, text: str, second: int, parts: list[str]) -> StreamResponse:
    task = Task(id="r1", context_id="rc", status=status(state, text, second))
    task.artifacts.add(artifact_id="out", name="out", parts=[Part(text=p) for p in parts])
    return StreamResponse(task=task)


def mirror(queue: RecordingQueue, current: Task | None = None) -> tuple[Mirror, list[tuple[str, str]]]:
    linked: list[tuple[str, str]] = []

    async def on_remote_task(task_id: str, context_id: str) -> None:
        linked.append((task_id, context_id))

    request = Message(message_id="req", role=Role.ROLE_USER, parts=[Part(text="hi")])
    made = Mirror(
        cast(EventQueue, queue),
        "local",
        "local-ctx",
        current=current,
        request=request,
        remote_metadata={"peer": "b"},
        on_remote_task=on_remote_task,
    )
    return made, linked


def describe(event: Any) -> str:
    if isinstance(event, Task):
        return f"task {TaskState.Name(event.status.state)}"
    if isinstance(event, TaskStatusUpdateEvent):
        text = event.status.message.parts[0].text if event.status.message.parts else ""
        return f"status {TaskState.Name(event.status.state)} {text}".strip()
    if isinstance(event, TaskArtifactUpdateEvent):
        parts = "".join(p.text for p in event.artifact.parts)
        return f"artifact {parts}{' +' if event.append else ''}"
    return f"message {event.parts[0].text}"


async def test_a_resubscription_snapshot_forwards_only_what_was_missed() -> None:
    queue = RecordingQueue()
    relay, linked = mirror(queue)
    for event in (
        StreamResponse(task=Task(id="r1", context_id="rc", status=status(TaskState.TASK_STATE_SUBMITTED))),
        status_event(WORKING, "one", 1),
        chunk("c1", append=False),
        chunk("c2", append=True),
        # the stream drops here; the resubscription starts with a snapshot, then goes on
        snapshot(WORKING, "two", 2, ["c1", "c2", "c3"]),
        chunk("c4", append=True),
        status_event(COMPLETED, "done", 3),
        status_event(COMPLETED, "done", 3),  # a repeat after the end
        chunk("late", append=True),
    ):
        await relay.apply(event)
    assert [describe(e) for e in queue.events] == [
        "task TASK_STATE_SUBMITTED",
        "status TASK_STATE_WORKING one",
        "artifact c1",
        "artifact c2 +",
        "artifact c3 +",  # a snapshot's artifacts come before its status, which may be final
        "status TASK_STATE_WORKING two",
        "artifact c4 +",
        "status TASK_STATE_COMPLETED done",
    ]
    assert linked == [("r1", "rc")] and relay.finished
    assert all(getattr(e, "task_id", "local") == "local" for e in queue.events[1:])
    assert queue.events[0].id == "local" and queue.events[0].metadata["switchboard"]["remote"]["task_id"] == "r1"
    final = queue.events[-1].status.message
    assert (final.task_id, final.context_id) == ("local", "local-ctx"), "status messages are re-addressed too"


async def test_a_snapshot_that_repeats_what_was_forwarded_forwards_nothing() -> None:
    queue = RecordingQueue()
    relay, _ = mirror(queue)
    await relay.apply(snapshot(WORKING, "one", 1, ["c1"]))
    before = len(queue.events)
    await relay.apply(snapshot(WORKING, "one", 1, ["c1"]))
    assert len(queue.events) == before


async def test_a_follow_up_does_not_forward_the_earlier_turns_artifacts_again() -> None:
    current = Task(id="local", context_id="local-ctx", status=status(TaskState.TASK_STATE_INPUT_REQUIRED, "ask"))
    current.artifacts.add(artifact_id="out", parts=[Part(text="c1")])
    queue = RecordingQueue()
    relay, _ = mirror(queue, current)
    await relay.apply(snapshot(COMPLETED, "done", 5, ["c1", "answer"]))
    assert [describe(e) for e in queue.events] == ["artifact answer +", "status TASK_STATE_COMPLETED done"]


async def test_a_message_reply_is_forwarded_in_the_local_context() -> None:
    queue = RecordingQueue()
    relay, _ = mirror(queue)
    reply = Message(message_id="x", role=Role.ROLE_AGENT, context_id="rc", parts=[Part(text="direct")])
    await relay.apply(StreamResponse(message=reply))
    (forwarded,) = queue.events
    assert isinstance(forwarded, Message) and forwarded.context_id == "local-ctx" and relay.finished


async def test_a_peer_status_time_no_store_can_hold_is_restamped_with_the_time_it_arrived() -> None:
    """Past 2262 nanoseconds overflow a BIGINT; nanos out of range are no valid Timestamp (binary gRPC carries both)."""
    queue = RecordingQueue()
    relay, _ = mirror(queue)
    year_9999 = status_event(WORKING, "far", 0)
    year_9999.status_update.status.timestamp.seconds = 253370764800
    bad_nanos = status_event(WORKING, "odd", 5)
    bad_nanos.status_update.status.timestamp.nanos = 2_000_000_000
    before_ns = time.time_ns()
    for event in (year_9999, year_9999, bad_nanos):
        await relay.apply(event)
    forwarded = [e for e in queue.events if isinstance(e, TaskStatusUpdateEvent)]
    assert [describe(e) for e in forwarded] == ["status TASK_STATE_WORKING far", "status TASK_STATE_WORKING odd"]
    for event in forwarded:
        assert before_ns <= event.status.timestamp.ToNanoseconds() <= time.time_ns()
