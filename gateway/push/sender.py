"""The SDK's ``PushNotificationSender``, writing to the outbox instead of posting.

The request handler calls ``send_notification`` for each task event right after it saved the
task; the event becomes one outbox row per push config of the task, committed before the handler
moves on to the next event (so a task's notifications keep its events' order) and before it hands
the event to any client: an event a client has seen is in the outbox. (Only a crash between the
task's commit and the outbox's, before anyone saw the event, loses its notification; the SDK
saves the task itself, so the two cannot share a transaction on this path.) The runner's path
(``LocalRunner``) saves the task and its notifications in one transaction (``save_and_notify``).
A task ended outside both (the start-up sweep of tasks a crash left running) is queued from its
stored row (``queue_stored_tasks``).
The payload is what the SDK's ``BasePushNotificationSender`` posts: the event as a ``StreamResponse``.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Sequence

from a2a.server.context import ServerCallContext
from a2a.server.tasks.push_notification_sender import PushNotificationEvent, PushNotificationSender
from a2a.types.a2a_pb2 import Task
from a2a.utils.proto_utils import to_stream_response

from gateway.store.database import Params
from gateway.store.outbox import SqlPushOutbox
from gateway.store.tasks import SqlPushConfigStore, SqlTaskStore

AlsoSaved = Callable[[Task, ServerCallContext], list[tuple[str, Params]]]
Published = Callable[[str, PushNotificationEvent], Awaitable[None]]


class OutboxPushSender(PushNotificationSender):
    """Queues each event for every push config of its task; ``wake`` tells the delivery worker."""

    def __init__(self, configs: SqlPushConfigStore, outbox: SqlPushOutbox, wake: Callable[[], None]) -> None:
        self._configs = configs
        self._outbox = outbox
        self._wake = wake
        self.published: Published | None = None
        """Also told of each event (the SDK's path calls this sender for each one, once saved, in order)."""

    async def send_notification(self, task_id: str, event: PushNotificationEvent) -> None:
        """Queue ``event`` for delivery to each config of ``task_id`` (nothing when it has none)."""
        if self.published is not None:
            await self.published(task_id, event)
        statements = await self._statements(task_id, event)
        if statements:
            await self._outbox.db.write_many(statements)
            self._wake()

    async def save_and_notify(
        self, store: SqlTaskStore, task: Task, context: ServerCallContext, also: AlsoSaved | None = None
    ) -> None:
        """Save ``task`` and queue it as a notification in one transaction: both happen or neither.

        ``also`` adds statements of its own to that transaction (a cluster's first event of a run).
        The first save of a task whose id the store minted (``NewTaskIds``) looks up no push config:
        nobody could have set one for an id never shown (a round trip saved on PostgreSQL).
        """
        statements = [] if task.id in store.new_ids else await self._statements(task.id, task)
        extra = also(task, context) if also is not None else []
        if not statements and not extra:
            await store.save(task, context)
            return
        await store.db.write_many([store.save_statement(task, context), *extra, *statements])
        if statements:
            self._wake()

    async def _statements(self, task_id: str, event: PushNotificationEvent) -> list[tuple[str, Params]]:
        targets = await self._configs.dispatch_targets(task_id)
        if not targets:
            return []
        return self._outbox.enqueue(task_id, targets, to_stream_response(event).SerializeToString())


_IDS_PER_QUERY = 500


async def queue_stored_tasks(outbox: SqlPushOutbox, task_ids: Sequence[str]) -> int:
    """Queue each task as stored now for every push config of it; how many tasks had configs."""
    statements: list[tuple[str, Params]] = []
    queued = 0
    for start in range(0, len(task_ids), _IDS_PER_QUERY):
        chunk = list(task_ids[start : start + _IDS_PER_QUERY])
        rows = await outbox.db.fetch_all(
            "SELECT t.id, t.data, c.owner, c.id FROM tasks t JOIN push_configs c ON c.task_id = t.id "
            f"WHERE t.id IN ({', '.join('?' * len(chunk))}) ORDER BY t.id, c.id",
            chunk,
        )
        for (task_id, data), targets in itertools.groupby(rows, key=lambda r: (r[0], bytes(r[1]))):
            payload = to_stream_response(Task.FromString(data)).SerializeToString()
            statements += outbox.enqueue(task_id, [(r[2], r[3]) for r in targets], payload)
            queued += 1
    if statements:
        await outbox.db.write_many(statements)
    return queued
