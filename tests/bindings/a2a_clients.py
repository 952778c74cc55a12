"""One a2a-sdk client per binding, so every end-to-end test runs the same assertions on each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import grpc
import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.utils.constants import TransportProtocol


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
