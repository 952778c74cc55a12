"""Outbound credentials: what this gateway presents to a peer, and nothing else.

A peer call carries only the credential configured for that peer; the caller's own token is
never forwarded. Secrets are read from environment variables named in the configuration (at call
time, so a rotated secret is picked up without a restart), never written in a file.

OAuth 2.0 client credentials go through authlib's httpx integration: a token is fetched on first
use, cached, and fetched again shortly before it expires (a fifth of its lifetime, at most a
minute, ahead), one fetch at a time however many calls wait for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from authlib.integrations.base_client import OAuthError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.httpx_client._compat import httpx2

from gateway.errors import PeerCredentialsError, PeerTimeoutError, PeerUnavailableError
from gateway.spec import (
    ApiKeyCredentialsSpec,
    BearerCredentialsSpec,
    CredentialsSpec,
    NoCredentialsSpec,
    OAuthCredentialsSpec,
)

logger = logging.getLogger(__name__)

MAX_REFRESH_AHEAD_S = 60.0
TOKEN_TIMEOUT_S = 10.0


class Credentials(Protocol):
    """Headers that authenticate this gateway to one peer."""

    async def headers(self) -> dict[str, str]:
        """The headers for the next call; ``PeerCredentialsError`` when there is no usable credential."""
        ...

    async def aclose(self) -> None:
        """Release what the credential holds (an HTTP client)."""
        ...


class NoCredentials:
    """Calls go out unauthenticated."""

    async def headers(self) -> dict[str, str]:
        """None."""
        return {}

    async def aclose(self) -> None:
        """Nothing to release."""


def _secret(env: Mapping[str, str], name: str, peer: str) -> str:
    value = env.get(name, "")
    if not value:
        raise PeerCredentialsError(f"{peer}: the environment variable {name} holding its credential is not set")
    return value


class StaticCredentials:
    """A header whose value is a secret from the environment (a bearer token or an API key)."""

    def __init__(self, peer: str, header: str, env_name: str, prefix: str = "", env: Mapping[str, str] | None = None):
        self._peer = peer
        self._header = header
        self._env_name = env_name
        self._prefix = prefix
        self._env = env if env is not None else os.environ

    async def headers(self) -> dict[str, str]:
        """The header, with the secret as the environment holds it now."""
        return {self._header: self._prefix + _secret(self._env, self._env_name, self._peer)}

    async def aclose(self) -> None:
        """Nothing to release."""


class OAuthClientCredentials:
    """OAuth 2.0 client credentials: a cached access token, fetched again before it expires."""

    def __init__(
        self,
        peer: str,
        spec: OAuthCredentialsSpec,
        env: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._peer = peer
        self._spec = spec
        self._env = env if env is not None else os.environ
        self._clock = clock
        self._client: AsyncOAuth2Client | None = None
        self._token: dict[str, Any] | None = None
        self._refresh_at = 0.0
        self._lock: asyncio.Lock | None = None
        self.fetches = 0

    async def headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>``, from the cache while it is fresh."""
        if self._token is None or self._clock() >= self._refresh_at:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._token is None or self._clock() >= self._refresh_at:
                    await self._fetch()
        assert self._token is not None
        return {"Authorization": f"Bearer {self._token['access_token']}"}

    async def _fetch(self) -> None:
        spec = self._spec
        if self._client is None:
            self._client = AsyncOAuth2Client(
                client_id=spec.client_id,
                client_secret=_secret(self._env, spec.client_secret_env, self._peer),
                scope=spec.scope or None,
                token_endpoint_auth_method=spec.auth_method,
                timeout=TOKEN_TIMEOUT_S,
            )
        extra = {"audience": spec.audience} if spec.audience else {}
        where = f"{self._peer}: token endpoint {spec.token_url}"
        try:
            token = await self._client.fetch_token(spec.token_url, grant_type="client_credentials", **extra)
        except httpx2.TimeoutException as exc:
            raise PeerTimeoutError(f"{where}: no answer in time", peer=self._peer) from exc
        except httpx2.HTTPStatusError as exc:
            status = exc.response.status_code
            error_type = PeerUnavailableError if status >= 500 else PeerCredentialsError
            raise error_type(f"{where}: HTTP {status}", peer=self._peer) from exc
        except httpx2.TransportError as exc:
            raise PeerUnavailableError(f"{where}: {type(exc).__name__}: {exc}", peer=self._peer) from exc
        except (OAuthError, ValueError) as exc:
            raise PeerCredentialsError(f"{where} refused: {exc}", peer=self._peer) from exc
        if not isinstance(token.get("access_token"), str):
            raise PeerCredentialsError(f"{where} answered without an access_token", peer=self._peer)
        self.fetches += 1
        lifetime = _lifetime(token)
        self._refresh_at = self._clock() + lifetime - min(MAX_REFRESH_AHEAD_S, lifetime / 5)
        self._token = dict(token)
        logger.info("%s: fetched an access token, valid for %.0f s", self._peer, lifetime)

    async def aclose(self) -> None:
        """Close the token client."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _lifetime(token: Mapping[str, Any]) -> float:
    """Seconds the token is valid for: its ``expires_in``, else until its ``expires_at``, else an hour."""
    try:
        if token.get("expires_in") is not None:
            return max(float(token["expires_in"]), 0.0)
        if token.get("expires_at") is not None:
            return max(float(token["expires_at"]) - time.time(), 0.0)
    except (TypeError, ValueError):
        return 0.0  # a lifetime it cannot read: fetched again on the next call
    return 3600.0


def build_credentials(peer: str, spec: CredentialsSpec | None, env: Mapping[str, str] | None = None) -> Credentials:
    """The credentials ``spec`` describes (none when it is absent)."""
    if spec is None or isinstance(spec, NoCredentialsSpec):
        return NoCredentials()
    if isinstance(spec, BearerCredentialsSpec):
        return StaticCredentials(peer, "Authorization", spec.token_env, "Bearer ", env)
    if isinstance(spec, ApiKeyCredentialsSpec):
        return StaticCredentials(peer, spec.header, spec.key_env, "", env)
    return OAuthClientCredentials(peer, spec, env)
