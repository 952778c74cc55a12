"""Peers and remote agents: trust policy, outbound credentials, and the SDK client each call goes through.

A ``Peer`` is a partner gateway as configured (in the peers file, or inline in one agent file).
A ``RemoteAgent`` is one agent of a peer hosted here: its card source and the a2a-sdk ``Client``
built from its verified card by ``ClientFactory``. The factory picks the transport (JSON-RPC with
SSE, HTTP+JSON or gRPC) from the card's interfaces, in the peer's preferred order when one is
configured, else in the card's own order; nothing here branches on the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc
import grpc.aio
import httpx
from a2a.client import Client, ClientConfig, ClientFactory
from a2a.client.client import ClientCallContext
from a2a.client.interceptors import AfterArgs, BeforeArgs, ClientCallInterceptor
from a2a.types.a2a_pb2 import AgentCard
from a2a.utils.constants import TransportProtocol

from gateway.cards.signing import TrustPolicy
from gateway.errors import PeerRefusedError, RuntimeLoadError
from gateway.federation.credentials import Credentials, build_credentials
from gateway.federation.remote_cards import CardSource, TrustedCard
from gateway.spec import CredentialsSpec, TrustSpec

logger = logging.getLogger(__name__)

DEFAULT_TRANSPORTS = (TransportProtocol.JSONRPC.value, TransportProtocol.GRPC.value, TransportProtocol.HTTP_JSON.value)
MAX_ANSWER_BYTES = 16 * 1024 * 1024
"""The most a peer's answer to one call, or one event of its stream, may hold (gRPC has its own 4 MB default)."""
_EVENT_END = re.compile(rb"\r?\n\r?\n")


class PeerConfigError(RuntimeLoadError):
    """A peer or remote agent that cannot be set up as configured (names the file and the field)."""

    message = "invalid peer configuration"
    reason = "invalid-peer"


def trust_policy(spec: TrustSpec, base: Path, where: str) -> TrustPolicy:
    """The ``TrustPolicy`` of ``spec``; a ``jwks_file`` is read relative to ``base``."""
    jwks = spec.jwks
    if spec.jwks_file:
        path = base / spec.jwks_file
        try:
            jwks = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PeerConfigError(f"{where}: trust.jwks_file: cannot read a JWKS from {path}: {exc}") from exc
    try:
        return TrustPolicy(
            jwks=jwks,
            allowed_jku_origins=tuple(spec.allowed_jku_origins),
            algorithms=tuple(spec.algorithms),
            require_signature=spec.require_signature,
        )
    except ValueError as exc:
        raise PeerConfigError(f"{where}: trust: {exc}") from exc


@dataclass
class Peer:
    """A partner gateway: how its cards are trusted and how this gateway authenticates to it."""

    name: str
    policy: TrustPolicy
    credentials: Credentials
    transports: tuple[str, ...] = ()
    timeout_s: float = 30.0
    base_url: str = ""

    @classmethod
    def configure(
        cls,
        name: str,
        trust: TrustSpec,
        credentials: CredentialsSpec | None,
        *,
        base: Path,
        where: str,
        transports: tuple[str, ...] = (),
        timeout_s: float = 30.0,
        base_url: str = "",
    ) -> Peer:
        """A peer from its configuration (``where`` names the file, for errors)."""
        return cls(
            name=name,
            policy=trust_policy(trust, base, where),
            credentials=build_credentials(name, credentials),
            transports=transports,
            timeout_s=timeout_s,
            base_url=base_url,
        )


class PeerCredentialsInterceptor(ClientCallInterceptor):
    """Adds the peer's credential to every call: the only credential a peer call ever carries."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def before(self, args: BeforeArgs) -> None:
        """Set the credential headers (HTTP) or call metadata (gRPC)."""
        headers = await self._credentials.headers()
        if not headers:
            return
        if args.context is None:
            args.context = ClientCallContext()
        args.context.service_parameters = {**(args.context.service_parameters or {}), **headers}

    async def after(self, args: AfterArgs) -> None:
        """Nothing to do after a call."""


class PeerAnswerTooLargeError(ValueError):
    """A peer's answer (or one event of its stream) went past ``MAX_ANSWER_BYTES``: it is not read further."""


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, url: str, events: bool, limit: int) -> None:
        self._stream, self._url, self._events, self._limit = stream, url, events, limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        held = 0  # bytes of the answer, or of the event being read (a stream ends each event with a blank line)
        tail = b""  # the end of the previous chunk: a blank line may be split between two chunks
        async for chunk in self._stream:
            ends = [m.end() for m in _EVENT_END.finditer(tail + chunk)] if self._events else []
            held = len(tail) + len(chunk) - ends[-1] if ends else held + len(chunk)
            tail = chunk[-3:]
            if held > self._limit:
                what = "an event of its stream" if self._events else "its answer"
                raise PeerAnswerTooLargeError(f"{self._url}: {what} is larger than {self._limit} bytes")
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """httpx's transport, with every response read only up to ``limit`` bytes (per event for an event stream)."""

    def __init__(self, limit: int = MAX_ANSWER_BYTES) -> None:
        self._transport = httpx.AsyncHTTPTransport()
        self._limit = limit

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send ``request``; its response's body is read through the cap."""
        response = await self._transport.handle_async_request(request)
        events = response.headers.get("content-type", "").startswith("text/event-stream")
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(response.stream, str(request.url), events, self._limit)
        return response

    async def aclose(self) -> None:
        """Close the connections."""
        await self._transport.aclose()


def _channel_factory(secure: bool) -> Callable[[str], grpc.aio.Channel]:
    def make(target: str) -> grpc.aio.Channel:
        if secure:
            return grpc.aio.secure_channel(target, grpc.ssl_channel_credentials())
        return grpc.aio.insecure_channel(target)

    return make


def _unsigned(card: AgentCard) -> AgentCard:
    content = AgentCard()
    content.CopyFrom(card)
    content.ClearField("signatures")
    return content


@dataclass
class RemoteAgent:
    """One agent of a peer, hosted here under ``name``.

    Its SDK client (and, over gRPC, its channel) is built from the verified card and kept while
    the card's content stays the same: a peer that signs its card afresh on every fetch (ES256
    signatures differ each time) does not get a new client per refresh. A card whose content
    changed gets a new client; the old one is closed as soon as no call holds it.
    """

    name: str
    peer: Peer
    source: CardSource
    rendered: tuple[int, str] = (-1, "")
    _client: Client | None = None
    _client_card: AgentCard | None = None
    _retired: list[Client] = field(default_factory=list)
    _holds: dict[Client, int] = field(default_factory=dict)
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def create(cls, name: str, card_url: str, peer: Peer) -> RemoteAgent:
        """A remote agent whose card is at ``card_url``, not fetched yet."""
        return cls(name=name, peer=peer, source=CardSource(card_url, peer.policy, peer.name, name, peer.timeout_s))

    def client(self, trusted: TrustedCard, http: httpx.AsyncClient) -> Client:
        """The SDK client for the verified card (a new one only when the card's content changed)."""
        content = _unsigned(trusted.card)
        if self._client is not None and self._client_card == content:
            return self._client
        config = ClientConfig(
            streaming=True,
            httpx_client=http,
            grpc_channel_factory=_channel_factory(urlsplit(self.source.url).scheme == "https"),
            supported_protocol_bindings=list(self.peer.transports or DEFAULT_TRANSPORTS),
            use_client_preference=bool(self.peer.transports),
        )
        try:
            client = ClientFactory(config).create(trusted.card, [PeerCredentialsInterceptor(self.peer.credentials)])
        except ValueError as exc:
            offered = sorted({i.protocol_binding for i in trusted.card.supported_interfaces})
            wanted = list(self.peer.transports or DEFAULT_TRANSPORTS)
            raise PeerRefusedError(
                f"{self.name}: the peer's card offers {offered}, none of {wanted}: {exc}", peer=self.peer.name
            ) from exc
        if self._client is not None:
            self._retire(self._client)
        self._client, self._client_card = client, content
        return client

    def hold(self, client: Client) -> None:
        """Keep ``client`` open (a call is using it) until ``release``."""
        self._holds[client] = self._holds.get(client, 0) + 1

    def release(self, client: Client) -> None:
        """A call is done with ``client``: a replaced client no call holds any more is closed."""
        left = self._holds.get(client, 0) - 1
        if left > 0:
            self._holds[client] = left
            return
        self._holds.pop(client, None)
        if client in self._retired:
            self._retired.remove(client)
            self._spawn(_close(client, self.name))

    def _retire(self, client: Client) -> None:
        if client in self._holds:
            self._retired.append(client)  # closed by the last release
        else:
            self._spawn(_close(client, self.name))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def settled(self) -> None:
        """Wait for the streams still draining and the clients still closing."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    def drain(self, client: Client, stream: AsyncGenerator[object], within_s: float) -> None:
        """Read the rest of ``stream`` (a call on ``client``) in the background, closing it after ``within_s``.

        A stream read to its end leaves its connection reusable. The peer ends a stream only after
        its own bookkeeping for the task's final event, which the caller need not wait for.
        """
        self.hold(client)

        async def drain() -> None:
            try:
                await _drain(stream, within_s)
            finally:
                self.release(client)

        self._spawn(drain())

    async def aclose(self) -> None:
        """Close every client built for this agent (after the streams still draining on them)."""
        await self.settled()
        for client in [*self._retired, *([self._client] if self._client else [])]:
            await _close(client, self.name)
        self._client, self._client_card, self._retired = None, None, []
        self._holds.clear()


async def _close(client: Client, agent: str) -> None:
    try:
        await client.close()
    except Exception as exc:  # a client that fails to close is only logged
        logger.debug("closing a client of %s: %s", agent, exc)


async def _drain(stream: AsyncGenerator[object], within_s: float) -> None:
    try:
        async with asyncio.timeout(within_s):
            async for _ in stream:
                pass
    except Exception as exc:  # the task it carried has settled: a stream that ends badly now changes nothing
        logger.debug("a settled remote stream ended with %s", exc)
    finally:
        with contextlib.suppress(Exception):
            await stream.aclose()
