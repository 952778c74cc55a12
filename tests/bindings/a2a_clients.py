"""One a2a-sdk client per binding, so every end-to-end test runs the same assertions on each."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import GetTaskRequest, Message, Part, Role, SendMessageRequest, StreamResponse, Task
from a2a.utils.constants import TransportProtocol

WAIT_S = 20.0


@dataclass(frozen=True)
class Binding:
    """How a test talks to the gateway."""

    id: str
    protocol: str
    streaming: bool


BINDINGS = [
    Binding("jsonrpc", TransportProtocol.JSONRPC.value, streaming=False),
    Binding("jsonrpc-sse", TransportProtocol.JSONRPC.value, streaming=True),
    Binding("rest", TransportProtocol.HTTP_JSON.value, streaming=False),
    Binding("rest-sse", TransportProtocol.HTTP_JSON.value, streaming=True),
    Binding("grpc", TransportProtocol.GRPC.value, streaming=False),
    Binding("grpc-stream", TransportProtocol.GRPC.value, streaming=True),
]


@asynccontextmanager
async def a2a_client(agent_url: str, binding: Binding) -> AsyncIterator[Client]:
    """The SDK's client for the agent at ``agent_url``, pinned to ``binding``."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
        config = ClientConfig(
            streaming=binding.streaming,
            httpx_client=http,
            supported_protocol_bindings=[binding.protocol],
            use_client_preference=True,
            grpc_channel_factory=grpc.aio.insecure_channel,
        )
        client = await ClientFactory(config).create_from_url(agent_url)
        try:
            yield client
        finally:
            await client.close()


def user_message(text: str, *, task_id: str = "", context_id: str = "") -> Message:
    return Message(
        role=Role.ROLE_USER,
        message_id=str(uuid.uuid4()),
        parts=[Part(text=text)],
        task_id=task_id,
        context_id=context_id,
    )


def task_of(event: StreamResponse) -> Task | None:
    return event.task if event.HasField("task") else None


async def send(client: Client, text: str, **ids: str) -> tuple[Task, list[StreamResponse]]:
    """Send and collect every event; return the task as the server finally has it."""
    events: list[StreamResponse] = []
    task_id = ""
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=user_message(text, **ids))):
            events.append(event)
            if event.HasField("status_update"):
                task_id = task_id or event.status_update.task_id
            task_id = task.id if (task := task_of(event)) else task_id
    assert task_id, f"no task in {events}"
    return await client.get_task(GetTaskRequest(id=task_id)), events


async def start(client: Client, text: str) -> Task:
    """Start a long task and return as soon as it exists (without waiting for it to finish)."""
    request = SendMessageRequest(message=user_message(text))
    request.configuration.return_immediately = True
    async with asyncio.timeout(WAIT_S):
        stream = client.send_message(request)
        try:
            async for event in stream:
                if (task := task_of(event)) is not None:
                    return task
                if event.HasField("status_update"):
                    return await client.get_task(GetTaskRequest(id=event.status_update.task_id))
        finally:
            await stream.aclose()
    raise AssertionError("the server sent no task")


def artifact_texts(task: Task) -> list[str]:
    return [p.text for a in task.artifacts for p in a.parts if p.HasField("text")]
