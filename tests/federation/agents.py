"""Agents the federation tests host: a recorder of what a call carried, a streamer, an intake step."""

from __future__ import annotations

import asyncio

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import Part, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.federation.hops import call_headers
from gateway.hosting.executor import data_part
from gateway.runtime import AgentCall, Emitter, Reply

RECORDED_HEADERS = ("authorization", "x-api-key", "traceparent", "a2a-version")


class HeaderRecorder(AgentExecutor):
    """Answers with what the call carried: its credential headers, trace context and message metadata."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Report the call's headers (HTTP) or metadata (gRPC), and the message's metadata."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        if context.current_task is None:
            history = [context.message] if context.message else []
            await event_queue.enqueue_event(
                new_task(updater.task_id, updater.context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
        await updater.update_status(
            TaskState.TASK_STATE_WORKING, updater.new_agent_message([Part(text="recording the call")])
        )
        headers = call_headers(context.call_context)
        seen = {
            "headers": {name: headers.get(name, "") for name in RECORDED_HEADERS},
            "metadata": MessageToDict(context.message.metadata) if context.message else {},
            "transport": "grpc" if "grpc_context" in context.call_context.state else "http",
        }
        await updater.add_artifact([data_part(seen)], name="seen")
        await updater.complete(updater.new_agent_message([Part(text=f"recorded a {seen['transport']} call")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Nothing runs long enough to cancel."""


class Streamer(AgentExecutor):
    """``N DELAY``: emits N chunks of one artifact, DELAY seconds apart, with progress, then completes."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Stream the chunks."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await event_queue.enqueue_event(new_task(updater.task_id, updater.context_id, TaskState.TASK_STATE_SUBMITTED))
        text = context.get_user_input()
        count_text, _, delay_text = text.partition(" ")
        count, delay = int(count_text or "5"), float(delay_text or "0.2")
        for n in range(1, count + 1):
            await updater.update_status(
                TaskState.TASK_STATE_WORKING, updater.new_agent_message([Part(text=f"chunk {n}")])
            )
            await updater.add_artifact(
                [Part(text=f"c{n};")], artifact_id="stream", name="stream", append=n > 1, last_chunk=n == count
            )
            await asyncio.sleep(delay)
        await updater.complete(updater.new_agent_message([Part(text=f"streamed {count} chunks")]))

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task canceled."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel()


async def intake(call: AgentCall, emit: Emitter) -> Reply:
    """Takes a request in and says it is for the partner (a handoff rule routes on that word)."""
    await emit.progress("taking the request in")
    return Reply(text=f"for the partner: {call.text}")
