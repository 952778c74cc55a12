"""Helper servers: a card forger (variants of a real peer card) and an OAuth 2.0 token endpoint."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from jwt import api_jws
from jwt.utils import base64url_encode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gateway.cards.keys import KeyRing, SigningKey
from gateway.cards.signing import canonical_card, sign_card_dict

HMAC_SECRET = "a-shared-secret-that-is-long-enough-for-hs256!"
VARIANTS = ("genuine", "forged-byte", "untrusted-key", "hs256", "alg-none", "foreign-jku", "unsigned", "flip")


def flip_one_byte(raw: bytes) -> bytes:
    """The card with one byte of its description changed (a letter's case), still valid JSON."""
    start = raw.index(b'"description":"') + len(b'"description":"')
    index = next(i for i in range(start, len(raw)) if chr(raw[i]).isalpha())
    return raw[:index] + bytes([raw[index] ^ 0x20]) + raw[index + 1 :]


def _entry(card: dict[str, Any], header: dict[str, Any], signature: str) -> dict[str, Any]:
    protected = base64url_encode(json.dumps(header, separators=(",", ":")).encode()).decode()
    unsigned = {k: v for k, v in card.items() if k != "signatures"}
    return {**unsigned, "signatures": [{"protected": protected, "signature": signature}]}


def hs256_signed(card: dict[str, Any], kid: str) -> dict[str, Any]:
    """The card signed with HMAC (a symmetric key anyone holding it could forge with)."""
    token = api_jws.encode(canonical_card(card), HMAC_SECRET, algorithm="HS256", headers={"kid": kid, "typ": "JOSE"})
    protected, _, signature = token.split(".")
    unsigned = {k: v for k, v in card.items() if k != "signatures"}
    return {**unsigned, "signatures": [{"protected": protected, "signature": signature}]}


class CardForger:
    """Serves ``/cards/<variant>/agent-card.json``: a real card of the peer, as is or tampered with."""

    def __init__(self, genuine_url: str, flip_url: str, peer_jwks_url: str) -> None:
        self.genuine_url = genuine_url
        self.flip_url = flip_url
        self.peer_jwks_url = peer_jwks_url
        self.key = SigningKey.generate("ES256")
        self.flip_bad = False
        self.url = ""
        self.requests: dict[str, int] = {}

    def app(self) -> Starlette:
        """The forger's routes."""
        return Starlette(
            routes=[
                Route("/cards/{variant}/agent-card.json", self._card),
                Route("/jwks.json", self._jwks),
            ]
        )

    async def _jwks(self, request: Request) -> Response:
        return JSONResponse(KeyRing((self.key,)).jwks())

    async def _card(self, request: Request) -> Response:
        variant = request.path_params["variant"]
        self.requests[variant] = self.requests.get(variant, 0) + 1
        async with httpx.AsyncClient(timeout=5) as http:
            raw = (await http.get(self.flip_url if variant == "flip" else self.genuine_url)).content
        body = self._tamper(variant, raw)
        return Response(body, media_type="application/json", headers={"Cache-Control": "no-cache"})

    def _tamper(self, variant: str, raw: bytes) -> bytes:
        card = json.loads(raw)
        kid = json.loads(base64.urlsafe_b64decode(card["signatures"][0]["protected"] + "=="))["kid"]
        ring = KeyRing((self.key,))
        if variant == "genuine" or (variant == "flip" and not self.flip_bad):
            return raw
        if variant in ("forged-byte", "flip"):
            return flip_one_byte(raw)
        if variant == "untrusted-key":
            return json.dumps(sign_card_dict(card, ring, jku=self.peer_jwks_url)).encode()
        if variant == "foreign-jku":
            return json.dumps(sign_card_dict(card, ring, jku=f"{self.url}/jwks.json")).encode()
        if variant == "hs256":
            return json.dumps(hs256_signed(card, kid)).encode()
        if variant == "alg-none":
            return json.dumps(_entry(card, {"alg": "none", "kid": kid}, "")).encode()
        if variant == "unsigned":
            return json.dumps({k: v for k, v in card.items() if k != "signatures"}).encode()
        raise ValueError(variant)


class TokenServer:
    """An OAuth 2.0 token endpoint for the client-credentials grant (``client_secret_basic``)."""

    def __init__(self, client_id: str, secret: str, lifetime_s: int = 3600) -> None:
        self.client_id = client_id
        self.secret = secret
        self.lifetime_s = lifetime_s
        self.issued: list[str] = []

    def app(self) -> Starlette:
        """The token route."""
        return Starlette(routes=[Route("/token", self._token, methods=["POST"])])

    async def _token(self, request: Request) -> Response:
        expected = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        form = await request.form()
        if (
            request.headers.get("authorization") != f"Basic {expected}"
            or form.get("grant_type") != "client_credentials"
        ):
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": self.lifetime_s})
