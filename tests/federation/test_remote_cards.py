"""A remote card is cached as its server says (ETag, Cache-Control) and verified again whenever it changes."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway.cards.keys import KeyRing, SigningKey
from gateway.cards.signing import TrustPolicy, sign_card_dict
from gateway.errors import PeerUntrustedError
from gateway.federation.remote_cards import CardSource, max_age

URL = "https://peer.example/agents/echo/.well-known/agent-card.json"
RING = KeyRing((SigningKey.generate(),))


def signed_card(description: str) -> bytes:
    card: dict[str, Any] = {
        "name": "echo",
        "description": description,
        "version": "1.0.0",
        "supportedInterfaces": [
            {"url": "https://peer.example/agents/echo", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo", "name": "Echo", "description": "echoes", "tags": ["echo"]}],
    }
    return json.dumps(sign_card_dict(card, RING)).encode()


class PeerCards:
    """A peer serving one card, counting requests and answering If-None-Match."""

    def __init__(self, body: bytes, cache_control: str) -> None:
        self.body = body
        self.cache_control = cache_control
        self.requests: list[httpx.Request] = []

    @property
    def etag(self) -> str:
        return f'"{hash(self.body)}"'

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        headers = {"ETag": self.etag, "Cache-Control": self.cache_control}
        if request.headers.get("if-none-match") == self.etag:
            return httpx.Response(304, headers=headers)
        return httpx.Response(200, content=self.body, headers=headers)


def source() -> CardSource:
    return CardSource(URL, TrustPolicy(jwks=RING.jwks()), "peer", "remote-echo")


async def test_a_fresh_card_is_not_fetched_again() -> None:
    peer = PeerCards(signed_card("first"), "public, max-age=300")
    cards = source()
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer.handle)) as http:
        first = await cards.current(http)
        second = await cards.current(http)
    assert first is second and len(peer.requests) == 1
    assert first.json["description"] == "first" and cards.health == "trusted"


async def test_a_stale_card_is_revalidated_and_a_304_keeps_it_without_verifying_again() -> None:
    peer = PeerCards(signed_card("first"), "no-cache")
    cards = source()
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer.handle)) as http:
        first = await cards.current(http)
        again = await cards.current(http)
    assert [r.headers.get("if-none-match") for r in peer.requests] == [None, peer.etag]
    assert again is first and cards.version == 1


async def test_a_changed_card_is_verified_again_and_replaces_the_old_one() -> None:
    peer = PeerCards(signed_card("first"), "no-cache")
    cards = source()
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer.handle)) as http:
        await cards.current(http)
        peer.body = signed_card("second")
        changed = await cards.current(http)
    assert changed.json["description"] == "second" and cards.version == 2


async def test_a_card_that_stops_verifying_is_not_used_any_more() -> None:
    peer = PeerCards(signed_card("first"), "no-cache")
    cards = source()
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer.handle)) as http:
        await cards.current(http)
        peer.body = peer.body.replace(b'"first"', b'"First"')
        with pytest.raises(PeerUntrustedError, match=r"remote-echo is out of service.*bad-signature"):
            await cards.current(http)
    assert cards.health == "untrusted" and cards.trusted is None and cards.refused_now()


async def test_an_unreachable_peer_keeps_the_last_verified_card_in_use() -> None:
    peer = PeerCards(signed_card("first"), "no-cache")
    cards = source()
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer.handle)) as http:
        first = await cards.current(http)

    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(down)) as http:
        still = await cards.current(http)
    assert still is first and cards.health == "trusted" and "connection refused" in cards.problem


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("public, max-age=60", 60.0), ("no-store", 0.0), ("private, no-cache, max-age=60", 0.0), (None, 300.0)],
)
def test_cache_control_sets_how_long_a_card_is_fresh(header: str | None, seconds: float) -> None:
    assert max_age(header) == seconds
