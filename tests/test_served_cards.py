"""The cards a running gateway serves: signed, verifiable by an independent JOSE library, cached."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import rfc8785
from jwcrypto import jwk, jws

from gateway.cards.keys import retire, rotate
from gateway.cards.signing import TrustPolicy, verify_card_json
from gateway.testing import running_gateway
from tests.conftest import make_settings

CARD = "/agents/echo/.well-known/agent-card.json"


def independently_verified_kids(card_bytes: bytes, jwks: dict[str, object]) -> set[str]:
    """The kids whose signature jwcrypto accepts over the RFC 8785 form of the served JSON."""
    card = json.loads(card_bytes)
    payload = rfc8785.dumps({k: v for k, v in card.items() if k != "signatures"})
    keys = jwk.JWKSet.from_json(json.dumps(jwks))
    verified = set()
    for entry in card["signatures"]:
        token = jws.JWS()
        token.deserialize(f"{entry['protected']}..{entry['signature']}")
        kid = token.jose_header["kid"]
        token.verify(keys.get_key(kid), detached_payload=payload)
        assert token.jose_header["alg"] in ("ES256", "EdDSA")
        verified.add(kid)
    return verified


async def test_served_card_verifies_with_an_independent_jose_library(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        card = await http.get(CARD)
        jwks = (await http.get("/.well-known/jwks.json")).json()
    assert card.status_code == 200
    kids = independently_verified_kids(card.content, jwks)
    assert kids == {k["kid"] for k in jwks["keys"]} and len(kids) == 1
    header = json.loads(jws.base64url_decode(card.json()["signatures"][0]["protected"]))
    assert header["jku"] == f"{gw.url}/.well-known/jwks.json"
    verified = await verify_card_json(card.content, TrustPolicy(jwks=jwks))
    assert verified.kids == tuple(kids)


async def test_card_is_cached_with_validators(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path)) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        first = await http.get(CARD)
        by_etag = await http.get(CARD, headers={"If-None-Match": first.headers["etag"]})
        by_date = await http.get(CARD, headers={"If-Modified-Since": first.headers["last-modified"]})
        again = await http.get(CARD)
    assert first.headers["last-modified"] and first.headers["cache-control"].startswith("public")
    assert by_etag.status_code == 304 and by_date.status_code == 304
    assert again.content == first.content, "a card is signed once per change, not per request"


async def test_rotation_serves_both_signatures_then_only_the_new_key(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        old_kid = json.loads(
            jws.base64url_decode(json.loads((await http.get(CARD)).content)["signatures"][0]["protected"])
        )["kid"]
    new_kid = next(k.kid for k in rotate(settings.data_dir).keys if k.kid != old_kid)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        both = await http.get(CARD)
        jwks = (await http.get("/.well-known/jwks.json")).json()
    assert independently_verified_kids(both.content, jwks) == {old_kid, new_kid}
    retire(settings.data_dir, old_kid)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        after = await http.get(CARD)
        jwks = (await http.get("/.well-known/jwks.json")).json()
    assert independently_verified_kids(after.content, jwks) == {new_kid}
    assert after.headers["etag"] != both.headers["etag"]
    assert old_kid in {k["kid"] for k in jwks["keys"]}, "a retired key stays published until it expires"


async def test_signing_can_be_turned_off(tmp_path: Path) -> None:
    async with (
        running_gateway(make_settings(tmp_path, sign_cards=False)) as gw,
        httpx.AsyncClient(base_url=gw.url) as http,
    ):
        card = (await http.get(CARD)).json()
        jwks = (await http.get("/.well-known/jwks.json")).json()
    assert "signatures" not in card and jwks == {"keys": []}
