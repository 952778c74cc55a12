"""v0.3 clients are still served at the agent's URL through the SDK's 0.3 transports.

The card itself is a pure 1.0 card: the 1.0 card schema allows no extra top-level members, so the
0.3 fields (``url``, ``preferredTransport``) would fail the TCK's CARD-STRUCT-001 (a MUST).
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from a2a.client import ClientConfig, ClientFactory
from a2a.types.a2a_pb2 import AgentCard, GetTaskRequest, Message, Part, Role, SendMessageRequest, TaskState
from google.protobuf.json_format import ParseDict

from gateway.testing import RunningGateway


@pytest.mark.parametrize("binding", ["JSONRPC", "HTTP+JSON"])
async def test_sdk_v0_3_transport_completes_a_task(gateway: RunningGateway, binding: str) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        served = (await http.get(f"{gateway.agent_url('echo')}/.well-known/agent-card.json")).json()
        assert "url" not in served and "preferredTransport" not in served, "a pure 1.0 card"
        card = ParseDict(served, AgentCard(), ignore_unknown_fields=True)
        del card.supported_interfaces[:]  # a 0.3 client configured with the agent's URL
        card.supported_interfaces.add(url=gateway.agent_url("echo"), protocol_binding=binding, protocol_version="0.3")
        config = ClientConfig(streaming=False, httpx_client=http, supported_protocol_bindings=[binding])
        client = ClientFactory(config).create(card)
        message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="from 2025")])
        events = [e async for e in client.send_message(SendMessageRequest(message=message))]
        task = await client.get_task(GetTaskRequest(id=events[-1].task.id))
        await client.close()
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert task.artifacts[0].parts[0].text == "from 2025"
