"""The SDK client of a remote agent: one per card content, old ones closed once no call uses them."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc.aio
import httpx

from gateway.cards.keys import KeyRing, SigningKey
from gateway.cards.signing import sign_card_dict
from gateway.federation.peers import Peer, RemoteAgent
from gateway.spec import TrustSpec

BASE = "https://peer.example"
CARD_URL = f"{BASE}/agents/echo/.well-known/agent-card.json"
RING = KeyRing((SigningKey.generate("ES256"),))
REFRESHES = 20


def grpc_card(version: str = "1.0.0") -> dict[str, Any]:
    return {
        "name": "echo",
        "description": "Echoes.",
        "version": version,
        "supportedInterfaces": [{"url": "127.0.0.1:9", "protocolBinding": "GRPC", "protocolVersion": "1.0"}],
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["echo"]}],
    }


def open_channels() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, grpc.aio.Channel) and not o._channel.closed())


def peer_serving(card: Callable[[int], dict[str, Any]]) -> httpx.MockTransport:
    """A peer whose card is signed afresh on every fetch (ES256: a new signature each time)."""
    fetches = [0]

    def serve(request: httpx.Request) -> httpx.Response:
        fetches[0] += 1
        body = json.dumps(sign_card_dict(card(fetches[0]), RING)).encode()
        return httpx.Response(200, content=body, headers={"Cache-Control": "no-cache"})

    return httpx.MockTransport(serve)


def remote_agent() -> RemoteAgent:
    peer = Peer.configure("b", TrustSpec(jwks=RING.jwks()), None, base=Path("."), where="test", transports=("GRPC",))
    return RemoteAgent.create("b-echo", CARD_URL, peer)


async def refreshed_clients(remote: RemoteAgent, http: httpx.AsyncClient, hold: bool = False) -> list[object]:
    clients = []
    for _ in range(REFRESHES):
        assert await remote.source.refresh(http), "each fetch is a new card to verify"
        client = remote.client(remote.source.usable(), http)
        if hold:
            remote.hold(client)
        clients.append(client)
    return clients


async def test_a_card_re_signed_on_every_fetch_keeps_one_client_and_one_channel() -> None:
    before = open_channels()
    remote = remote_agent()
    async with httpx.AsyncClient(transport=peer_serving(lambda _: grpc_card())) as http:
        clients = await refreshed_clients(remote, http)
        assert remote.source.version == REFRESHES
        assert len({id(c) for c in clients}) == 1, "only the signature changed: the client is reused"
        assert open_channels() - before == 1
        await remote.aclose()
    assert open_channels() == before


async def test_a_card_whose_content_changes_closes_the_old_client_once_no_call_uses_it() -> None:
    before = open_channels()
    remote = remote_agent()
    async with httpx.AsyncClient(transport=peer_serving(lambda n: grpc_card(f"1.0.{n}"))) as http:
        clients = await refreshed_clients(remote, http, hold=True)
        assert len({id(c) for c in clients}) == REFRESHES, "a changed card gets a client of its own"
        assert open_channels() - before == REFRESHES, "a client a call still uses stays open"
        for client in clients:
            remote.release(client)
        await remote.settled()
        assert open_channels() - before == 1, "only the current card's client is left open"
        await remote.aclose()
    assert open_channels() == before
