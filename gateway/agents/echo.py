"""``echo``: repeats what it is sent, and acts out the A2A TCK's scenarios by ``messageId`` prefix.

Beyond the TCK, a few text commands make it a handy live probe of the task lifecycle:
``ask: QUESTION`` waits for input and then echoes the answer; ``wait: SECONDS`` works
(with progress) for that long, so it can be watched, resubscribed to and canceled;
``fail: REASON`` fails the task with that reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from a2a.helpers.proto_helpers import new_task
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events.event_queue_v2 import EventQueue
from a2a.server.tasks.task_updater import TaskUpdater
from a2a.types.a2a_pb2 import Part, TaskState

from gateway.hosting.executor import call_from_context, data_part

MAX_WAIT_S = 600.0
_RESUBSCRIBE_WAIT_S = 4.0  # the TCK's "2x streaming timeout"

Scenario = Callable[[TaskUpdater, EventQueue], Awaitable[None]]


def _text(value: str) -> list[Part]:
    return [Part(text=value)]


def _file() -> list[Part]:
    return [Part(raw=b"tck", media_type="text/plain", filename="output.txt")]


async def _complete_with(updater: TaskUpdater, parts: list[Part], *, working: bool, name: str = "output") -> None:
    if working:
        await updater.start_work()
    await updater.add_artifact(parts, name=name)
    await updater.complete()


async def _chunked(updater: TaskUpdater, _: EventQueue) -> None:
    await updater.start_work()
    await updater.add_artifact(_text("chunk-1 "), artifact_id="chunked", append=True)
    await updater.add_artifact(_text("chunk-2"), artifact_id="chunked", append=True, last_chunk=True)
    await updater.complete()


async def _long(updater: TaskUpdater, _: EventQueue) -> None:
    await updater.start_work()
    await asyncio.sleep(_RESUBSCRIBE_WAIT_S)
    await updater.complete()


async def _message(updater: TaskUpdater, queue: EventQueue) -> None:
    await queue.enqueue_event(updater.new_agent_message(_text("Direct message response")))


def _artifact(parts: Callable[[], list[Part]], *, working: bool) -> Scenario:
    async def scenario(updater: TaskUpdater, _: EventQueue) -> None:
        await _complete_with(updater, parts(), working=working)

    return scenario


async def _hello(updater: TaskUpdater, _: EventQueue) -> None:
    await updater.complete(updater.new_agent_message(_text("Hello from TCK")))


async def _input(updater: TaskUpdater, _: EventQueue) -> None:
    await updater.requires_input(updater.new_agent_message(_text("More input is required.")))


async def _reject(updater: TaskUpdater, _: EventQueue) -> None:
    await updater.reject(updater.new_agent_message(_text("rejected")))


async def _just_complete(updater: TaskUpdater, _: EventQueue) -> None:
    await updater.complete()


# Longest prefix first: "tck-artifact-file-url" must win over "tck-artifact-file".
TCK_SCENARIOS: dict[str, Scenario] = {
    "tck-stream-artifact-chunked": _chunked,
    "test-resubscribe-message-id": _long,
    "tck-stream-artifact-text": _artifact(lambda: _text("Streamed text content"), working=True),
    "tck-stream-artifact-file": _artifact(_file, working=True),
    "tck-stream-ordering-001": _artifact(lambda: _text("Ordered output"), working=True),
    "tck-artifact-file-url": _artifact(
        lambda: [Part(url="https://example.com/output.txt", media_type="text/plain", filename="output.txt")],
        working=False,
    ),
    "tck-message-response": _message,
    "tck-input-required": _input,
    "tck-complete-task": _hello,
    "tck-artifact-text": _artifact(lambda: _text("Generated text content"), working=False),
    "tck-artifact-file": _artifact(_file, working=False),
    "tck-artifact-data": _artifact(lambda: [data_part({"key": "value", "count": 42})], working=False),
    "tck-reject-task": _reject,
    "tck-stream-001": _artifact(lambda: _text("Stream hello from TCK"), working=True),
    "tck-stream-002": _just_complete,
    "tck-stream-003": _artifact(lambda: _text("Stream task lifecycle"), working=True),
}


def _scenario(message_id: str) -> Scenario | None:
    return next((s for prefix, s in TCK_SCENARIOS.items() if message_id.startswith(prefix)), None)


async def _echo(updater: TaskUpdater, text: str, answered: str | None) -> None:
    command, _, arg = text.partition(":")
    command, arg = command.strip().lower(), arg.strip()
    if answered is not None:
        await _complete_with(updater, _text(f"You answered: {answered}"), working=False, name="echo")
    elif command == "ask":
        await updater.requires_input(updater.new_agent_message(_text(arg or "What should I echo?")))
    elif command == "fail":
        await updater.failed(updater.new_agent_message(_text(arg or "failed on request")))
    elif command == "wait":
        await _wait(updater, arg)
    else:
        await updater.add_artifact(_text(text), name="echo")
        await updater.complete(updater.new_agent_message(_text(text)))


async def _wait(updater: TaskUpdater, arg: str) -> None:
    try:
        seconds = float(arg)
    except ValueError:
        await updater.failed(updater.new_agent_message(_text(f"wait needs a number of seconds, got {arg!r}")))
        return
    seconds = max(0.0, min(seconds, MAX_WAIT_S))
    steps = max(1, int(seconds * 2))
    for step in range(steps):
        await updater.update_status(
            TaskState.TASK_STATE_WORKING, updater.new_agent_message(_text(f"waiting: step {step + 1} of {steps}"))
        )
        await asyncio.sleep(seconds / steps)
    await _complete_with(updater, _text(f"waited {seconds:g}s"), working=False, name="echo")


class EchoExecutor(AgentExecutor):
    """The ``echo`` agent (runtime ``python``, entrypoint ``gateway.agents.echo:EchoExecutor``)."""

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Run the TCK scenario named by the message id, or echo."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        message_id = context.message.message_id if context.message else ""
        scenario = _scenario(message_id)
        if scenario is _message:
            await scenario(updater, event_queue)
            return
        waiting = context.current_task is not None and (
            context.current_task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        )
        if context.current_task is None:
            history = [context.message] if context.message else []
            await event_queue.enqueue_event(
                new_task(updater.task_id, updater.context_id, TaskState.TASK_STATE_SUBMITTED, history=history)
            )
        if scenario is not None:
            await scenario(updater, event_queue)
            return
        text = call_from_context(context).text
        await _echo(updater, text, text if waiting else None)

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Mark the task canceled."""
        updater = TaskUpdater(event_queue, context.task_id or "", context.context_id or "")
        await updater.cancel(updater.new_agent_message(_text("echo: canceled on request")))
