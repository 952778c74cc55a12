"""Issuer keys: the JWKS is fetched once and cached, fetched again for an unknown key id (a rotation), at
most once per refetch interval, and again after its TTL; inline JWKS need no fetch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.auth.jwt import JwksCache, JwtVerifier
from gateway.errors import AuthenticationError
from gateway.settings import IssuerSettings
from gateway.testing import running_gateway
from tests.auth.conftest import AUDIENCE, ISSUER, ApiKeys, JwksServer, Keys, auth_settings, mint


async def status(http: httpx.AsyncClient, token: str) -> int:
    answer = await http.get(
        "/agents/notes/tasks/none", headers={"Authorization": f"Bearer {token}", "A2A-Version": "1.0"}
    )
    return answer.status_code


@pytest.fixture
async def plain_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


async def test_jwks_is_cached_and_refetched_once_for_a_rotated_key(
    keys: Keys, jwks: JwksServer, http: httpx.AsyncClient
) -> None:
    scoped = ["notes:use"]
    assert await status(http, mint(keys.rsa, scopes=scoped)) == 404
    assert await status(http, mint(keys.ec, scopes=scoped)) == 404
    assert jwks.fetches == 1
    jwks.published = [keys.rotated]  # the issuer rotates: ec-2 replaces every earlier key
    assert await status(http, mint(keys.rotated, scopes=scoped)) == 404
    assert jwks.fetches == 2
    assert await status(http, mint(keys.rotated, scopes=scoped)) == 404
    assert jwks.fetches == 2
    assert await status(http, mint(keys.rsa, scopes=scoped)) == 401  # retired at the issuer: refused


async def test_unknown_key_ids_refetch_at_most_once_per_interval(
    tmp_path: Path, keys: Keys, jwks: JwksServer, api_keys: ApiKeys
) -> None:
    settings = auth_settings(tmp_path, jwks.url, api_keys, auth_jwks_refetch_s=3600.0)
    async with running_gateway(settings) as gateway, httpx.AsyncClient(base_url=gateway.url) as http:
        assert await status(http, mint(keys.rsa, scopes=["notes:use"])) == 404
        jwks.published = [keys.rotated]
        for _ in range(3):  # a flood of made-up kids costs the issuer nothing
            answer = await http.get(
                "/agents/notes/tasks/none", headers={"Authorization": f"Bearer {mint(keys.rotated)}"}
            )
            assert answer.status_code == 401 and "no ES256 key 'ec-2'" in answer.json()["error"]["message"]
        assert jwks.fetches == 1


async def test_jwks_is_fetched_again_after_its_ttl(keys: Keys, jwks: JwksServer, plain_http: httpx.AsyncClient) -> None:
    now = [1000.0]
    cache = JwksCache(jwks.url, plain_http, ttl_s=300, refetch_s=3600, clock=lambda: now[0])
    assert [k.kid for k in await cache.keys("rsa-1")] == ["rsa-1"]
    now[0] += 299
    await cache.keys("rsa-1")
    assert jwks.fetches == 1
    jwks.published = [keys.rotated]
    now[0] += 2
    assert await cache.keys("rsa-1") == []
    assert [k.kid for k in await cache.keys("ec-2")] == ["ec-2"]
    assert jwks.fetches == 2


async def test_inline_jwks_needs_no_fetch(keys: Keys, plain_http: httpx.AsyncClient) -> None:
    issuer = IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks={"keys": [keys.ed.export_public(as_dict=True)]})
    verifier = JwtVerifier.build([issuer], plain_http, ttl_s=300, refetch_s=10)
    assert await verifier.verify(mint(keys.ed, sub="erin", scopes=["a", "b"])) == (ISSUER, "erin", frozenset("ab"))
    with pytest.raises(AuthenticationError, match="no RS256 key 'rsa-1'"):
        await verifier.verify(mint(keys.rsa))


async def test_an_unreachable_jwks_refuses_tokens_without_crashing(keys: Keys, plain_http: httpx.AsyncClient) -> None:
    async with JwksServer([]) as gone:
        url = gone.url  # the port is closed once the block ends
    issuer = IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_uri=url)
    verifier = JwtVerifier.build([issuer], plain_http, ttl_s=300, refetch_s=10)
    with pytest.raises(AuthenticationError, match="signing keys cannot be fetched"):
        await verifier.verify(mint(keys.rsa))


def test_symmetric_and_none_algorithms_cannot_be_configured() -> None:
    for alg in ("HS256", "none"):
        with pytest.raises(ValueError, match=f"{alg} not accepted"):
            IssuerSettings(issuer=ISSUER, audience=AUDIENCE, jwks_uri="https://id.example.test/jwks", algorithms=[alg])
    with pytest.raises(ValueError, match="exactly one of jwks_uri and jwks"):
        IssuerSettings(issuer=ISSUER, audience=AUDIENCE)
