"""A remote agent's card: fetched with httpx, cached as its server says, verified whenever it changes.

A fetch must end within the peer's ``timeout_s`` (connecting, each read and the whole body: a
peer that drips its card cannot hold a check open), and stops reading at ``MAX_CARD_BYTES``.
The cache honours ``Cache-Control`` (``max-age``; ``no-cache``/``no-store`` mean revalidate every
time) and revalidates with ``If-None-Match``. A card is verified with
``gateway.cards.build.signing.verify_card_json`` over the bytes exactly as received, whenever those bytes
change. A card that fails verification takes its agent out of service (with the reason logged
and given to every caller) until a card that verifies is served again; a card that cannot be
fetched keeps the last verified one in use, or, when there is none yet, is tried again on the
next call.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Literal

import httpx
from a2a.client.card_resolver import parse_agent_card
from a2a.types.a2a_pb2 import AgentCard
from google.protobuf.json_format import ParseError

from gateway.cards.signing import (
    MAX_CARD_BYTES,
    CardVerificationError,
    TrustPolicy,
    VerifiedCard,
    fetch_jwks,
    verify_card_json,
)
from gateway.errors import PeerError, PeerUnavailableError, PeerUntrustedError
from gateway.federation.errors import translate

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 300.0
UNTRUSTED_RECHECK_S = 30.0
"""A card that did not verify is fetched again at most this often (a fixed card is noticed, a bad one not hammered)."""
_MAX_AGE = re.compile(r"(?:^|,)\s*(?:s-)?max-age\s*=\s*\"?(\d+)", re.IGNORECASE)

Health = Literal["unchecked", "trusted", "untrusted", "unreachable"]


def max_age(cache_control: str | None) -> float:
    """Seconds a response may be reused without revalidation, per its ``Cache-Control``."""
    if not cache_control:
        return DEFAULT_MAX_AGE_S
    lowered = cache_control.lower()
    if "no-store" in lowered or "no-cache" in lowered:
        return 0.0
    match = _MAX_AGE.search(lowered)
    return float(match.group(1)) if match else DEFAULT_MAX_AGE_S


@dataclass(frozen=True)
class TrustedCard:
    """A card that verified: the bytes as served, their JSON, the kids that verified, and the SDK's card."""

    raw: bytes
    verified: VerifiedCard
    card: AgentCard
    etag: str

    @property
    def json(self) -> dict[str, Any]:
        """The card's JSON, as received."""
        return self.verified.card


class CardSource:
    """The card of one remote agent, fetched and verified under its peer's trust policy."""

    def __init__(self, url: str, policy: TrustPolicy, peer: str, agent: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.policy = policy
        self.peer = peer
        self.agent = agent
        self.trusted: TrustedCard | None = None
        self.health: Health = "unchecked"
        self.problem = ""
        self.version = 0
        self._etag = ""
        self._raw = b""
        self._fresh_until = 0.0
        self._checked_at = float("-inf")
        self._lock: asyncio.Lock | None = None

    @property
    def checked_at(self) -> float | None:
        """When the card was last fetched and checked, as Unix time (None: not yet); the dashboard shows it."""
        if self._checked_at == float("-inf"):
            return None
        return time.time() - (time.monotonic() - self._checked_at)

    def stale(self, now: float | None = None) -> bool:
        """Whether the card must be revalidated before it is used again."""
        moment = time.monotonic() if now is None else now
        if self.health == "untrusted":
            return moment - self._checked_at >= UNTRUSTED_RECHECK_S
        return self.trusted is None or moment >= self._fresh_until

    def usable(self) -> TrustedCard:
        """The verified card to call the agent with; ``PeerUntrustedError`` while it is out of service."""
        if self.health == "untrusted":
            raise PeerUntrustedError(f"{self.agent} is out of service: {self.problem}", peer=self.peer)
        if self.trusted is None:
            raise PeerUnavailableError(f"{self.agent}: no card yet from {self.url}: {self.problem}", peer=self.peer)
        return self.trusted

    def refused_now(self) -> bool:
        """Whether a call is refused from the cache alone: the card did not verify and is not due a recheck."""
        return self.health == "untrusted" and not self.stale()

    async def current(self, http: httpx.AsyncClient) -> TrustedCard:
        """The verified card, revalidated first when stale; raises the ``PeerError`` that keeps it from use."""
        if self.stale():
            await self.refresh(http)
        return self.usable()

    async def refresh(self, http: httpx.AsyncClient) -> bool:
        """Revalidate the card when stale; whether it changed. Failures are recorded, logged and not raised."""
        self._lock = self._lock or asyncio.Lock()
        async with self._lock:
            if not self.stale():
                return False  # a concurrent caller just revalidated it
            try:
                return await self._refresh(http)
            except PeerError as exc:
                self._record_failure(exc)
                return False
            finally:
                self._checked_at = time.monotonic()

    async def _refresh(self, http: httpx.AsyncClient) -> bool:
        headers = {"Accept": "application/json"}
        if self._etag and self.trusted is not None:
            headers["If-None-Match"] = self._etag
        status, body, response_headers = await self._get(http, headers)
        self._fresh_until = time.monotonic() + max_age(response_headers.get("cache-control"))
        if status == 304 and self.trusted is not None:
            return False
        if status != 200:
            raise PeerUnavailableError(f"{self.peer}: GET {self.url} answered HTTP {status}", peer=self.peer)
        if body == self._raw and self.health == "trusted":
            return False
        self._raw = body
        trusted = await self._verify(http, body, response_headers.get("etag", ""))
        self._etag = trusted.etag
        self.trusted, self.health, self.problem = trusted, "trusted", ""
        self.version += 1
        logger.info(
            "%s: card at %s verified (keys %s)", self.agent, self.url, ", ".join(trusted.verified.kids) or "none"
        )
        return True

    async def _get(self, http: httpx.AsyncClient, headers: dict[str, str]) -> tuple[int, bytes, httpx.Headers]:
        try:
            async with (
                asyncio.timeout(self.timeout_s),
                http.stream("GET", self.url, headers=headers, follow_redirects=False) as response,
            ):
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_CARD_BYTES:
                        raise PeerUntrustedError(
                            f"{self.peer}: card at {self.url} is larger than {MAX_CARD_BYTES} bytes", peer=self.peer
                        )
        except (httpx.HTTPError, TimeoutError) as exc:
            raise translate(exc, self.peer, f"GET {self.url}") from exc
        return response.status_code, body, response.headers

    async def _verify(self, http: httpx.AsyncClient, body: bytes, etag: str) -> TrustedCard:
        async def fetch(url: str) -> dict[str, Any]:
            return await fetch_jwks(url, client=http)

        try:
            verified = await verify_card_json(body, self.policy, fetch)
        except CardVerificationError as exc:
            raise PeerUntrustedError(
                f"card at {self.url} failed verification: {exc.code}: {exc.reason}", peer=self.peer
            ) from exc
        try:
            card = parse_agent_card(copy.deepcopy(verified.card))  # it rewrites v0.3 members in place
        except (ParseError, ValueError, TypeError) as exc:
            raise PeerUntrustedError(f"card at {self.url} is not an Agent Card: {exc}", peer=self.peer) from exc
        return TrustedCard(raw=body, verified=verified, card=card, etag=etag)

    def _record_failure(self, exc: PeerError) -> None:
        if isinstance(exc, PeerUntrustedError):
            # A card that stops verifying takes the agent out of service: the old card is not used either.
            first = self.health != "untrusted" or self.problem != exc.message
            self.health, self.problem, self.trusted = "untrusted", exc.message, None
            self._etag = ""
            if first:
                logger.error("%s (peer %s) is out of service: %s", self.agent, self.peer, exc.message)
            return
        self.problem = exc.message
        if self.trusted is None:
            self.health = "unreachable"
        logger.warning("%s (peer %s): card not refreshed: %s", self.agent, self.peer, exc.message)
