"""The echo agent's follow-ups: a message naming only its taskId stays in the task's context."""

from __future__ import annotations

from uuid import uuid4

from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.tasks import InMemoryTaskStore
from a2a.types.a2a_pb2 import AgentCard, Message, Part, Role, SendMessageRequest, Task, TaskState

from gateway.agents.echo import EchoExecutor


def _message(prefix: str, text: str, task_id: str = "") -> SendMessageRequest:
    message = Message(
        message_id=f"{prefix}-{uuid4().hex}", role=Role.ROLE_USER, parts=[Part(text=text)], task_id=task_id
    )
    return SendMessageRequest(message=message)


async def test_followups_without_context_id_keep_the_task_context() -> None:
    handler = DefaultRequestHandler(
        agent_executor=EchoExecutor(), task_store=InMemoryTaskStore(), agent_card=AgentCard(name="echo")
    )
    call = ServerCallContext()
    try:
        first = await handler.on_message_send(_message("tck-input-required", "start"), call)
        assert isinstance(first, Task)
        assert first.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
        for text in ("one", "two"):
            again = await handler.on_message_send(_message("tck-input-required", text, first.id), call)
            assert isinstance(again, Task)
            assert again.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
            assert again.status.message.context_id == first.context_id
        done = await handler.on_message_send(_message("tck-complete-task", "done", first.id), call)
        assert isinstance(done, Task)
        assert done.status.state == TaskState.TASK_STATE_COMPLETED
        assert done.context_id == first.context_id
        assert done.status.message.context_id == first.context_id
        agent_messages = [m for m in done.history if m.role == Role.ROLE_AGENT]
        assert agent_messages and all(m.context_id == first.context_id for m in agent_messages)
    finally:
        await handler.aclose()
