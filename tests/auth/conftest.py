"""Auth fixtures: signing keys generated here, tokens minted here (jwcrypto, not the validator's library),
a JWKS served on loopback, and a real gateway with API keys and an issuer configured.

Agents: ``echo`` (open), ``notes`` (needs ``notes:use``) and ``vault`` (needs ``vault:use``; its
``reveal`` skill also needs ``vault:reveal``), all run by the echo executor.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from a2a.client import Client, ClientCallContext, ClientConfig, ClientFactory
from a2a.client.auth import AuthInterceptor, CredentialService
from a2a.types import a2a_pb2_grpc
from a2a.utils.constants import TransportProtocol
from jwcrypto import jwk
from jwcrypto import jwt as jwcrypto_jwt

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.settings import IssuerSettings, Settings
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import Binding
from tests.conftest import make_settings

ISSUER = "https://id.example.test"
AUDIENCE = "switchboard-tests"
WAIT_S = 20.0
V1 = ("a2a-version", "1.0")

AGENT_FILES = {
    "echo.yaml": """
format: 1
name: echo
description: Echoes, open to everyone.
security: none
skills: [{id: echo, name: Echo, description: Repeats the text., tags: [echo]}]
runtime: {kind: python, entrypoint: "gateway.agents.echo:EchoExecutor"}
""",
    "notes.yaml": """
format: 1
name: notes
description: Echoes, for callers holding notes:use.
scopes: ["notes:use"]
skills: [{id: echo, name: Echo, description: Repeats the text., tags: [echo]}]
runtime: {kind: python, entrypoint: "gateway.agents.echo:EchoExecutor"}
""",
    "vault.yaml": """
format: 1
name: vault
description: Echoes; its reveal skill needs vault:reveal on top of vault:use.
scopes: ["vault:use"]
skills:
  - {id: read, name: Read, description: Reads., tags: [read]}
  - {id: reveal, name: Reveal, description: Reveals., tags: [reveal], scopes: ["vault:reveal"]}
runtime: {kind: python, entrypoint: "gateway.agents.echo:EchoExecutor"}
""",
}


@dataclass(frozen=True)
class Keys:
    """The issuer's signing keys, generated for the test session."""

    rsa: jwk.JWK
    ec: jwk.JWK
    ed: jwk.JWK
    rotated: jwk.JWK  # published only once a test rotates the issuer's keys
    stranger: jwk.JWK  # the same kid as ``rsa``, never published: a forged signature


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(
        rsa=jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-1"),
        ec=jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-1"),
        ed=jwk.JWK.generate(kty="OKP", crv="Ed25519", kid="ed-1"),
        rotated=jwk.JWK.generate(kty="EC", crv="P-256", kid="ec-2"),
        stranger=jwk.JWK.generate(kty="RSA", size=2048, kid="rsa-1"),
    )


def mint(
    key: jwk.JWK,
    *,
    sub: str = "alice",
    scopes: Sequence[str] = (),
    alg: str = "",
    iss: str = ISSUER,
    aud: str | list[str] = AUDIENCE,
    expires_in: int = 300,
    not_before_in: int | None = None,
    scope_claim: str = "scope",
) -> str:
    """A JWT signed with ``key`` (``alg`` defaults to the key type's usual one)."""
    alg = alg or {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[key["kty"]]
    now = int(time.time())
    claims: dict[str, Any] = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + expires_in}
    if not_before_in is not None:
        claims["nbf"] = now + not_before_in
    if scopes:
        claims[scope_claim] = " ".join(scopes) if scope_claim == "scope" else list(scopes)
    token = jwcrypto_jwt.JWT(header={"alg": alg, "kid": key["kid"], "typ": "JWT"}, claims=claims)
    token.make_signed_token(key)
    return str(token.serialize())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_relabelled(public_key: jwk.JWK, *, scopes: Sequence[str] = ()) -> str:
    """The classic forgery: HS256 "signed" with the issuer's public key (PEM) as the HMAC secret."""
    now = int(time.time())
    header = {"alg": "HS256", "kid": public_key["kid"], "typ": "JWT"}
    claims = {"iss": ISSUER, "sub": "mallory", "aud": AUDIENCE, "exp": now + 300, "scope": " ".join(scopes)}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    secret = public_key.export_to_pem()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


class JwksServer:
    """The issuer's JWKS on a loopback port, counting fetches; ``published`` may change (a rotation)."""

    def __init__(self, published: Sequence[jwk.JWK]) -> None:
        self.published = list(published)
        self.fetches = 0
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        self.fetches += 1
        body = json.dumps({"keys": [k.export_public(as_dict=True) for k in self.published]}).encode()
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def __aenter__(self) -> JwksServer:
        self._server = await asyncio.start_server(self._answer, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/jwks.json"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@dataclass(frozen=True)
class ApiKeys:
    """API keys generated for the test: ``ci`` holds notes:use and vault:use, ``bare`` holds nothing."""

    ci: str = field(default_factory=new_api_key)
    bare: str = field(default_factory=new_api_key)

    def lines(self) -> list[str]:
        return [api_key_line("ci", self.ci, ["notes:use", "vault:use"]), api_key_line("bare", self.bare)]


@pytest.fixture
def api_keys() -> ApiKeys:
    return ApiKeys()


def write_agents(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in AGENT_FILES.items():
        (folder / name).write_text(text.lstrip(), encoding="utf-8")
    return folder


def auth_settings(tmp_path: Path, jwks_url: str, api_keys: ApiKeys, **overrides: object) -> Settings:
    """A gateway on loopback with the test agents, the ``ci``/``bare`` API keys and the test issuer."""
    issuer = IssuerSettings(
        issuer=ISSUER, audience=[AUDIENCE], jwks_uri=jwks_url, algorithms=["RS256", "ES256", "EdDSA"]
    )
    values: dict[str, object] = {
        "agents": write_agents(tmp_path / "agents"),
        "auth_api_keys": api_keys.lines(),
        "auth_issuers": [issuer],
        "auth_jwks_refetch_s": 0.0,
        "mcp_tools": ["*"],
        "root_agent": "echo",
    }
    values.update(overrides)
    return make_settings(tmp_path, **values)


@pytest.fixture
async def jwks(keys: Keys) -> AsyncIterator[JwksServer]:
    async with JwksServer([keys.rsa, keys.ec, keys.ed]) as server:
        yield server


@pytest.fixture
async def gateway(tmp_path: Path, jwks: JwksServer, api_keys: ApiKeys) -> AsyncIterator[RunningGateway]:
    """A gateway with auth configured (this overrides the suite's open gateway for tests/auth)."""
    async with running_gateway(auth_settings(tmp_path, jwks.url, api_keys)) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=WAIT_S) as client:
        yield client


# --- protocol clients with credentials ---------------------------------------------------------


class StaticCredentials(CredentialService):
    """One credential per security scheme name of the card."""

    def __init__(self, by_scheme: Mapping[str, str]) -> None:
        self.by_scheme = dict(by_scheme)

    async def get_credentials(self, security_scheme_name: str, context: ClientCallContext | None) -> str | None:
        return self.by_scheme.get(security_scheme_name)


def bearer(token: str) -> dict[str, str]:
    """Credentials for the card's OAuth scheme."""
    return {"oauth2": token}


def api_key(key: str) -> dict[str, str]:
    """Credentials for the card's API key scheme."""
    return {"apiKey": key}


@asynccontextmanager
async def authed_client(agent_url: str, binding: Binding, credentials: Mapping[str, str]) -> AsyncIterator[Client]:
    """a2a-sdk's client pinned to ``binding``, its ``AuthInterceptor`` sending ``credentials`` as the card asks."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(WAIT_S)) as http:
        config = ClientConfig(
            streaming=binding.streaming,
            httpx_client=http,
            supported_protocol_bindings=[binding.protocol],
            use_client_preference=True,
            grpc_channel_factory=grpc.aio.insecure_channel,
        )
        interceptor = AuthInterceptor(StaticCredentials(credentials))
        client = await ClientFactory(config).create_from_url(agent_url, interceptors=[interceptor])
        try:
            yield client
        finally:
            await client.close()


def grpc_target(gateway: RunningGateway, agent: str) -> str:
    """The ``host:port`` the agent's card gives for gRPC."""
    card = gateway.app.state.gateway.agents[agent].card.card
    return next(i.url for i in card.supported_interfaces if i.protocol_binding == TransportProtocol.GRPC.value)


@asynccontextmanager
async def grpc_stub(gateway: RunningGateway, agent: str) -> AsyncIterator[a2a_pb2_grpc.A2AServiceStub]:
    async with grpc.aio.insecure_channel(grpc_target(gateway, agent)) as channel:
        yield a2a_pb2_grpc.A2AServiceStub(channel)
