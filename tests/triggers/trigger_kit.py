"""Helpers for trigger tests: agent files with triggers, a signed webhook sender, waiting for a run's end."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
from a2a.client import Client
from a2a.types.a2a_pb2 import GetTaskRequest, SubscribeToTaskRequest, Task, TaskState
from google.protobuf.json_format import MessageToDict

from gateway.testing import RunningGateway
from gateway.triggers.webhook import sign
from tests.bindings.a2a_clients import BINDINGS, a2a_client

SECRET = "whsec_" + "c2VjcmV0LWZvci10cmlnZ2Vycy10ZXN0cw=="
WAIT_S = 20.0
POLL_S = 0.02
ENDED = {
    TaskState.TASK_STATE_COMPLETED,
    TaskState.TASK_STATE_FAILED,
    TaskState.TASK_STATE_CANCELED,
    TaskState.TASK_STATE_REJECTED,
}


def with_triggers(agent_file: dict[str, Any], *triggers: Mapping[str, Any]) -> dict[str, Any]:
    """``agent_file`` with ``triggers`` declared."""
    return {**agent_file, "triggers": [dict(t) for t in triggers]}


def signed_headers(
    body: bytes, event_id: str = "", *, secret: str = SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """The Standard Webhooks headers a sender holding ``secret`` puts on ``body``."""
    event_id = event_id or f"evt_{uuid.uuid4().hex}"
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, event_id, stamp, body),
        "content-type": "application/json",
    }


async def post_webhook(
    http: httpx.AsyncClient, agent: str, trigger: str, payload: Any, event_id: str = "", **kw: Any
) -> httpx.Response:
    """POST ``payload`` as JSON to a webhook trigger, signed."""
    body = json.dumps(payload).encode()
    return await http.post(f"/triggers/{agent}/{trigger}", content=body, headers=signed_headers(body, event_id, **kw))


@asynccontextmanager
async def jsonrpc_client(gateway: RunningGateway, agent: str) -> AsyncIterator[Client]:
    """a2a-sdk's streaming JSON-RPC client for ``agent``."""
    binding = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
    async with a2a_client(gateway.agent_url(agent), binding) as client:
        yield client


async def ended(client: Client, task_id: str) -> Task:
    """The task once it has ended: followed with SubscribeToTask while it runs, read with GetTask after.

    A client without streaming cannot subscribe: it reads the task again until it has ended (bounded).
    """
    async with asyncio.timeout(WAIT_S):
        task = await client.get_task(GetTaskRequest(id=task_id))
        if task.status.state not in ENDED:
            try:
                async for _ in client.subscribe(SubscribeToTaskRequest(id=task_id)):
                    pass
            except Exception:  # it ended between the read and the subscribe, or the client cannot stream
                pass
        while True:
            task = await client.get_task(GetTaskRequest(id=task_id))
            if task.status.state in ENDED:
                return task
            await asyncio.sleep(POLL_S)


def metadata(task: Task) -> dict[str, Any]:
    """The task's metadata as JSON."""
    return MessageToDict(task.metadata)
