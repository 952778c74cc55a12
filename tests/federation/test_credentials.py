"""Outbound credentials: secrets from named env vars only; OAuth tokens cached and refreshed before expiry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gateway.errors import PeerCredentialsError
from gateway.federation.credentials import OAuthClientCredentials, build_credentials
from gateway.spec import A2ARuntime, ApiKeyCredentialsSpec, BearerCredentialsSpec, OAuthCredentialsSpec
from tests.federation.servers import TokenServer
from tests.federation.support import BackgroundLoop


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    yield loop
    loop.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_an_oauth_token_is_cached_and_fetched_again_before_it_expires(background: BackgroundLoop) -> None:
    tokens = TokenServer("org-a", "s3cret", lifetime_s=100)
    url = background.serve(tokens.app()) + "/token"
    spec = OAuthCredentialsSpec(kind="oauth2", token_url=url, client_id="org-a", client_secret_env="PEER_SECRET")
    clock = Clock()
    credentials = OAuthClientCredentials("b", spec, env={"PEER_SECRET": "s3cret"}, clock=clock)
    try:
        first = await credentials.headers()
        clock.now += 50
        cached = await credentials.headers()
        clock.now += 31  # 81 s into a 100 s token: within the last fifth, so it is fetched again
        refreshed = await credentials.headers()
    finally:
        await credentials.aclose()
    assert first == cached == {"Authorization": "Bearer tok-1"}
    assert refreshed == {"Authorization": "Bearer tok-2"}
    assert tokens.issued == ["tok-1", "tok-2"]


async def test_a_refused_client_gets_a_credentials_error_naming_the_token_endpoint(background: BackgroundLoop) -> None:
    url = background.serve(TokenServer("org-a", "right").app()) + "/token"
    spec = OAuthCredentialsSpec(kind="oauth2", token_url=url, client_id="org-a", client_secret_env="PEER_SECRET")
    credentials = OAuthClientCredentials("b", spec, env={"PEER_SECRET": "wrong"})
    try:
        with pytest.raises(PeerCredentialsError, match=r"token endpoint .* (refused|HTTP 401)"):
            await credentials.headers()
    finally:
        await credentials.aclose()


async def test_static_credentials_come_from_the_named_environment_variable() -> None:
    bearer = build_credentials("b", BearerCredentialsSpec(kind="bearer", token_env="B_TOKEN"), env={"B_TOKEN": "t0k"})
    api_key = build_credentials(
        "b", ApiKeyCredentialsSpec(kind="api-key", header="X-Partner-Key", key_env="B_KEY"), env={"B_KEY": "k3y"}
    )
    assert await bearer.headers() == {"Authorization": "Bearer t0k"}
    assert await api_key.headers() == {"X-Partner-Key": "k3y"}


async def test_a_missing_secret_is_an_error_naming_the_variable_not_a_blank_credential() -> None:
    bearer = build_credentials("b", BearerCredentialsSpec(kind="bearer", token_env="B_TOKEN"), env={})
    with pytest.raises(PeerCredentialsError, match=r"B_TOKEN .* is not set"):
        await bearer.headers()


@pytest.mark.parametrize("secret", ["sk-live-1234.abcd", "Bearer eyJhbGciOi", "a b"])
def test_a_secret_cannot_be_written_where_a_variable_name_goes(secret: str) -> None:
    with pytest.raises(ValueError, match="token_env"):
        A2ARuntime.model_validate(
            {
                "kind": "a2a",
                "card_url": "https://peer.example/agents/x/.well-known/agent-card.json",
                "trust": {"allowed_jku_origins": ["https://peer.example"]},
                "credentials": {"kind": "bearer", "token_env": secret},
            }
        )
