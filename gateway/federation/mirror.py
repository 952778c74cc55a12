"""A local task that mirrors a remote one: the peer's events, re-addressed to the local task, each once.

The first event of the remote task creates the local task (when this is not a follow-up), with
``{"switchboard": {"remote": {"peer", "card_url", "task_id", "context_id"}}}`` in its metadata.
Then each status update and artifact update is forwarded with the local task and context ids.
The events of a resubscription (a snapshot of the remote task, then what follows) and of
re-reading the task are reconciled against what was already forwarded, so a dropped stream loses
nothing and repeats nothing: a status is forwarded when its state, message or timestamp differs
from the last one forwarded; an artifact is forwarded when its parts differ, as the missing tail
(``append``) when the parts forwarded so far are a prefix of the snapshot's. Nothing is forwarded
after a final state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from a2a.helpers.proto_helpers import new_task
from a2a.server.events import EventQueue
from a2a.types.a2a_pb2 import (
    Artifact,
    Message,
    StreamResponse,
    Task,
    TaskArtifactUpdateEvent,
    TaskState,
    TaskStatus,
    TaskStatusUpdateEvent,
)

from gateway.hosting.executor import METADATA_KEY
from gateway.store.tasks import stamp_ns

logger = logging.getLogger(__name__)

TERMINAL = frozenset(
    {
        TaskState.TASK_STATE_COMPLETED,
        TaskState.TASK_STATE_FAILED,
        TaskState.TASK_STATE_CANCELED,
        TaskState.TASK_STATE_REJECTED,
    }
)
INTERRUPTED = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED, TaskState.TASK_STATE_AUTH_REQUIRED})

OnRemoteTask = Callable[[str, str], Awaitable[None]]


def _parts_of(artifact: Artifact) -> list[bytes]:
    return [part.SerializeToString(deterministic=True) for part in artifact.parts]


def _status_key(status: TaskStatus) -> tuple[int, str, int, int]:
    message_id = status.message.message_id if status.HasField("message") else ""
    return status.state, message_id, status.timestamp.seconds, status.timestamp.nanos


class Mirror:
    """Forwards one remote task's events to one local task's event queue."""

    def __init__(
        self,
        queue: EventQueue,
        task_id: str,
        context_id: str,
        *,
        current: Task | None,
        request: Message | None,
        remote_metadata: dict[str, Any],
        on_remote_task: OnRemoteTask,
    ) -> None:
        self.task_id = task_id
        self.context_id = context_id
        self.remote_task_id = ""
        self.remote_context_id = ""
        self.state: int | None = None
        self.reply: Message | None = None
        self._queue = queue
        self._exists = current is not None
        self._request = request
        self._remote_metadata = remote_metadata
        self._on_remote_task = on_remote_task
        self._status: tuple[int, str, int, int] | None = None
        self._artifacts = {a.artifact_id: _parts_of(a) for a in current.artifacts} if current is not None else {}
        self._lock = asyncio.Lock()

    @property
    def finished(self) -> bool:
        """Whether the local task has reached a final state (or was answered with a message)."""
        return self.reply is not None or self.state in TERMINAL

    @property
    def settled(self) -> bool:
        """Whether there is nothing more to follow for now: finished, or waiting for input."""
        return self.finished or self.state in INTERRUPTED

    async def apply(self, event: StreamResponse) -> None:
        """Forward one event of the remote task (a send's stream, a resubscription, or a re-read task)."""
        kind = event.WhichOneof("payload")
        async with self._lock:
            if kind == "task":
                await self._task(event.task)
            elif kind == "status_update":
                await self._status_update(event.status_update)
            elif kind == "artifact_update":
                await self._artifact_update(event.artifact_update)
            elif kind == "message":
                await self._message(event.message)

    async def apply_task(self, task: Task) -> None:
        """Reconcile with the remote task as read (``GetTask``, ``CancelTask``)."""
        await self.apply(StreamResponse(task=task))

    async def _learn(self, task_id: str, context_id: str) -> None:
        if self.remote_task_id or not task_id:
            return
        self.remote_task_id, self.remote_context_id = task_id, context_id
        await self._on_remote_task(task_id, context_id)

    async def _ensure_local(self) -> None:
        if self._exists:
            return
        history = [self._request] if self._request is not None else []
        task = new_task(self.task_id, self.context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
        remote = {**self._remote_metadata, "task_id": self.remote_task_id, "context_id": self.remote_context_id}
        task.metadata.update({METADATA_KEY: {"remote": remote}})
        await self._queue.enqueue_event(task)
        self._exists = True
        self.state = TaskState.TASK_STATE_SUBMITTED

    async def _task(self, task: Task) -> None:
        await self._learn(task.id, task.context_id)
        await self._ensure_local()
        for artifact in task.artifacts:
            await self._artifact_snapshot(artifact)
        await self._forward_status(task.status, None)

    async def _status_update(self, event: TaskStatusUpdateEvent) -> None:
        await self._learn(event.task_id, event.context_id)
        await self._ensure_local()
        await self._forward_status(event.status, event)

    async def _forward_status(self, status: TaskStatus, event: TaskStatusUpdateEvent | None) -> None:
        if self.finished:
            return
        key = _status_key(status)
        if key == self._status or (
            status.state == self.state == TaskState.TASK_STATE_SUBMITTED and not status.HasField("message")
        ):
            return
        local = TaskStatus()
        local.CopyFrom(status)
        if local.HasField("timestamp") and stamp_ns(local.timestamp) is None:
            local.timestamp.GetCurrentTime()  # a peer's time no store holds (past 2262, bad nanos): when it came
        if local.HasField("message"):
            local.message.task_id, local.message.context_id = self.task_id, self.context_id
        forwarded = TaskStatusUpdateEvent(task_id=self.task_id, context_id=self.context_id, status=local)
        if event is not None and event.HasField("metadata"):
            forwarded.metadata.CopyFrom(event.metadata)
        await self._queue.enqueue_event(forwarded)
        self._status, self.state = key, status.state

    async def _artifact_update(self, event: TaskArtifactUpdateEvent) -> None:
        await self._learn(event.task_id, event.context_id)
        await self._ensure_local()
        if self.finished:
            return
        artifact_id, parts = event.artifact.artifact_id, _parts_of(event.artifact)
        if event.append:
            self._artifacts.setdefault(artifact_id, []).extend(parts)
        elif self._artifacts.get(artifact_id) == parts:
            return
        else:
            self._artifacts[artifact_id] = parts
        forwarded = TaskArtifactUpdateEvent(task_id=self.task_id, context_id=self.context_id)
        forwarded.artifact.CopyFrom(event.artifact)
        forwarded.append, forwarded.last_chunk = event.append, event.last_chunk
        if event.HasField("metadata"):
            forwarded.metadata.CopyFrom(event.metadata)
        await self._queue.enqueue_event(forwarded)

    async def _artifact_snapshot(self, artifact: Artifact) -> None:
        """Forward what a snapshot's artifact has beyond what was forwarded: its tail, or all of it."""
        if self.finished:
            return
        have, parts = self._artifacts.get(artifact.artifact_id), _parts_of(artifact)
        if have == parts:
            return
        forwarded = TaskArtifactUpdateEvent(task_id=self.task_id, context_id=self.context_id)
        forwarded.artifact.CopyFrom(artifact)
        if have is not None and parts[: len(have)] == have:
            del forwarded.artifact.parts[: len(have)]
            forwarded.append = True
        self._artifacts[artifact.artifact_id] = parts
        await self._queue.enqueue_event(forwarded)

    async def _message(self, message: Message) -> None:
        if self._exists or self.remote_task_id:
            logger.warning("task %s: the peer sent a message inside its task's stream; not forwarded", self.task_id)
            return
        reply = Message()
        reply.CopyFrom(message)
        reply.context_id, reply.task_id = self.context_id, ""
        await self._queue.enqueue_event(reply)
        self.reply = reply
