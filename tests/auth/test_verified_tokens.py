"""A bearer token that verified is admitted again without re-verifying, until its ``exp`` (bounded)."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from gateway.auth.api_keys import ApiKeyTable
from gateway.auth.jwt import JwtVerifier, StaticKeys, TrustedIssuer
from gateway.auth.policy import AuthPolicy, Identity, VerifiedTokens
from gateway.errors import AuthenticationError
from gateway.settings import IssuerSettings
from tests.auth.conftest import AUDIENCE, ISSUER, JwksServer, Keys, mint


class CountingVerifier(JwtVerifier):
    """The real verifier, counting the tokens it verifies."""

    calls = 0

    async def verify(self, token: str) -> tuple[str, str, frozenset[str]]:
        self.calls += 1
        return await super().verify(token)


@pytest.fixture
def policy(keys: Keys) -> AuthPolicy:
    jwks = {"keys": [json.loads(keys.ec.export_public())]}
    issuer = IssuerSettings(issuer=ISSUER, audience=[AUDIENCE], jwks=jwks)
    return AuthPolicy(ApiKeyTable([]), CountingVerifier([TrustedIssuer(issuer, StaticKeys(jwks))]), [issuer])


async def test_a_repeated_token_is_verified_once(policy: AuthPolicy, keys: Keys) -> None:
    token = mint(keys.ec, scopes=["notes:use"])
    first = await policy.authenticate(f"Bearer {token}", None)
    again = await policy.authenticate(f"Bearer {token}", None)
    assert first == again and first.name == f"{ISSUER}|alice" and first.scopes == {"notes:use"}
    assert isinstance(policy.tokens, CountingVerifier) and policy.tokens.calls == 1


async def test_a_token_that_failed_is_verified_every_time(policy: AuthPolicy, keys: Keys) -> None:
    forged = mint(keys.rotated)  # a key the issuer never published
    for _ in range(2):
        with pytest.raises(AuthenticationError):
            await policy.authenticate(f"Bearer {forged}", None)
    assert isinstance(policy.tokens, CountingVerifier) and policy.tokens.calls == 2


def test_a_remembered_token_lapses_at_its_exp_or_the_ttl(keys: Keys) -> None:
    now = [time.time()]
    tokens = VerifiedTokens(ttl_s=60.0, clock=lambda: now[0])
    alice, bob = Identity("alice", frozenset()), Identity("bob", frozenset())
    short, long = mint(keys.ec, expires_in=10), mint(keys.ec, sub="bob", expires_in=3600)
    tokens.put(short, alice)
    tokens.put(long, bob)
    assert tokens.get(short) == alice and tokens.get(long) == bob
    now[0] += 11
    assert tokens.get(short) is None, "past its exp"
    assert tokens.get(long) == bob
    now[0] += 50
    assert tokens.get(long) is None, "past the cache's bound"


def test_the_cache_is_bounded(keys: Keys) -> None:
    tokens = VerifiedTokens(max_entries=2)
    minted = [mint(keys.ec, sub=name) for name in ("a", "b", "c")]
    for token, name in zip(minted, "abc", strict=True):
        tokens.put(token, Identity(name, frozenset()))
    assert tokens.get(minted[0]) is None, "the oldest made room"
    assert [tokens.get(t) is not None for t in minted[1:]] == [True, True]


async def test_a_remembered_token_is_verified_again_once_its_issuer_rotated(keys: Keys, jwks: JwksServer) -> None:
    issuer = IssuerSettings(issuer=ISSUER, audience=[AUDIENCE], jwks_uri=jwks.url)
    async with httpx.AsyncClient(timeout=10.0) as http:
        policy = AuthPolicy(ApiKeyTable([]), JwtVerifier.build([issuer], http, ttl_s=300.0, refetch_s=0.0), [issuer])
        retired = mint(keys.rsa)
        await policy.authenticate(f"Bearer {retired}", None)
        await policy.authenticate(f"Bearer {retired}", None)
        assert jwks.fetches == 1
        jwks.published = [keys.rotated]  # the issuer rotates: rsa-1 is retired
        await policy.authenticate(f"Bearer {mint(keys.rotated)}", None)  # a new key id: its keys are fetched again
        with pytest.raises(AuthenticationError, match="no RS256 key"):
            await policy.authenticate(f"Bearer {retired}", None)  # the very same token, remembered before
