"""Card signing, key handling and verification (gateway.cards.keys, gateway.cards.signing)."""

from __future__ import annotations

import json
import socket
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client.card_resolver import parse_agent_card
from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import AgentCapabilities, AgentCard, AgentInterface, AgentSkill
from a2a.utils._jcs import canonicalize
from a2a.utils.signing import create_signature_verifier
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto import jws as jwcrypto_jws
from jwt import PyJWK
from jwt.utils import base64url_decode, base64url_encode
from starlette.responses import JSONResponse

from gateway.cards.keys import KEYS_DIRNAME, KeyConfigError, KeyRing, SigningKey, retire, rotate
from gateway.cards.signing import (
    CardVerificationError,
    JwksFetchError,
    TrustPolicy,
    fetch_jwks,
    fetch_jwks_sync,
    jwks_url,
    sign_card_dict,
    verify_card_json,
)

BASE_URL = "https://gateway.example"
JKU = jwks_url(BASE_URL)
T0 = datetime(2030, 1, 1, tzinfo=UTC)


class RecordingFetch:
    """A JWKS fetcher double that answers from a dict and records every URL asked for."""

    def __init__(self, jwks_by_url: dict[str, dict[str, Any]] | None = None) -> None:
        self.jwks_by_url = jwks_by_url or {}
        self.calls: list[str] = []

    async def __call__(self, url: str) -> dict[str, Any]:
        self.calls.append(url)
        if url not in self.jwks_by_url:
            raise JwksFetchError(f"{url}: HTTP 404")
        return self.jwks_by_url[url]


@pytest.fixture
def card() -> dict[str, Any]:
    """A card as the gateway serves it: the SDK's JSON form, plus a member from a newer spec."""
    proto = AgentCard(
        name="echo",
        description="Répond ☕ en écho 🎉",
        version="1.0.0",
        supported_interfaces=[
            AgentInterface(url=f"{BASE_URL}/agents/echo", protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=AgentCapabilities(streaming=True),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[AgentSkill(id="echo", name="Echo", description="Echoes the input", tags=["demo"])],
    )
    return {**agent_card_to_dict(proto), "xFutureField": {"weight": 0.5, "enabled": True}}


def served(card: dict[str, Any]) -> bytes:
    """The bytes the gateway puts on the wire for ``card``."""
    return bytes(JSONResponse(card).body)


def ring_of(*algs: str) -> KeyRing:
    return KeyRing(tuple(SigningKey.generate(alg) for alg in algs))


def pinned(jwks: dict[str, Any]) -> TrustPolicy:
    return TrustPolicy(jwks=jwks)


def protected_header(signature: dict[str, str]) -> dict[str, Any]:
    header: dict[str, Any] = json.loads(base64url_decode(signature["protected"]))
    return header


def with_header(signature: dict[str, str], **changes: Any) -> dict[str, str]:
    header = {**protected_header(signature), **changes}
    return {**signature, "protected": base64url_encode(json.dumps(header).encode()).decode()}


async def expect_failure(raw: bytes | str, policy: TrustPolicy, fetch: Any = None) -> str:
    with pytest.raises(CardVerificationError) as caught:
        await verify_card_json(raw, policy, fetch)
    return caught.value.code


# 1. An independent JOSE implementation accepts the gateway's signatures.


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_signed_card_verifies_with_jwcrypto_over_rfc8785_of_served_json(card: dict[str, Any], alg: str) -> None:
    ring = ring_of(alg)
    received = json.loads(served(sign_card_dict(card, ring, jku=JKU)))
    unsigned = {name: value for name, value in received.items() if name != "signatures"}
    payload = canonicalize(unsigned).encode()
    # For ASCII keys and these numbers RFC 8785 is sorted, compact, non-escaping JSON: a second opinion.
    assert payload == json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    [signature] = received["signatures"]
    assert set(signature) == {"protected", "signature"}
    key = jwcrypto_jwk.JWK(**ring.jwks()["keys"][0])
    token = jwcrypto_jws.JWS()
    token.deserialize(f"{signature['protected']}..{signature['signature']}")
    token.verify(key, detached_payload=payload)

    assert token.jose_header == {"alg": alg, "kid": ring.keys[0].kid, "typ": "JOSE", "jku": JKU}
    assert ring.keys[0].kid == key.thumbprint()  # the kid is the RFC 7638 thumbprint


async def test_signed_card_verifies_under_pinned_jwks(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    verified = await verify_card_json(served(sign_card_dict(card, ring, jku=JKU)), pinned(ring.jwks()))
    assert verified.kids == (ring.keys[0].kid,)
    assert verified.card["xFutureField"] == {"weight": 0.5, "enabled": True}
    assert verified.signed


def test_signing_copies_the_card_and_replaces_old_signatures(card: dict[str, Any]) -> None:
    ring = ring_of("EdDSA")
    stale = {**card, "signatures": [{"protected": "e30", "signature": "AA"}]}
    signed = sign_card_dict(stale, ring)
    assert len(signed["signatures"]) == 1 and signed["signatures"][0]["protected"] != "e30"
    assert stale["signatures"] == [{"protected": "e30", "signature": "AA"}]
    assert "jku" not in protected_header(signed["signatures"][0])


# 2. Every way a card can be wrong has its own stable code.


async def test_one_changed_byte_is_bad_signature(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    body = served(sign_card_dict(card, ring, jku=JKU))
    tampered = body.replace(b"Echoes the input", b"Echoes the inpuT", 1)
    assert tampered != body
    assert await expect_failure(tampered, pinned(ring.jwks())) == "bad-signature"


V03_MEMBERS = {
    "url": f"{BASE_URL}/agents/echo",
    "preferredTransport": "JSONRPC",
    "additionalInterfaces": [{"url": "gateway.example:50051", "transport": "GRPC"}],
    "protocolVersion": "0.3.0",
}
"""v0.3 members a card may carry beside the v1.0 ones (clients of either version read the card)."""
EVIL = "https://evil.example/a"


def dual_card(card: dict[str, Any]) -> dict[str, Any]:
    """The fixture card with the v0.3 members too: every top-level member of both versions."""
    return {**card, **V03_MEMBERS}


def changed(value: Any) -> Any:
    """A different value of the same JSON type, for any member (a different type would do too; this is subtler)."""
    if isinstance(value, str):
        return EVIL
    if isinstance(value, list):
        return [*value, value[0]] if value else [EVIL]
    if isinstance(value, dict):
        return {**value, "x": EVIL}
    return not value if isinstance(value, bool) else value + 1


MEMBERS = sorted(
    {
        *V03_MEMBERS,
        "name",
        "description",
        "version",
        "supportedInterfaces",
        "capabilities",
        "defaultInputModes",
        "defaultOutputModes",
        "skills",
        "xFutureField",
    }
)


@pytest.mark.parametrize("member", MEMBERS)
async def test_changing_any_top_level_member_is_bad_signature(card: dict[str, Any], member: str) -> None:
    ring = ring_of("ES256")
    signed = sign_card_dict(dual_card(card), ring)
    assert set(signed) - {"signatures"} == set(MEMBERS), "every top-level member of the fixture is tried"
    assert await verify_card_json(served(signed), pinned(ring.jwks()))
    assert await expect_failure(served({**signed, member: changed(signed[member])}), pinned(ring.jwks())) == (
        "bad-signature"
    )
    without = {name: value for name, value in signed.items() if name != member}
    assert await expect_failure(served(without), pinned(ring.jwks())) == "bad-signature"


@pytest.mark.parametrize("member", MEMBERS)
async def test_adding_any_top_level_member_is_bad_signature(card: dict[str, Any], member: str) -> None:
    # e.g. a v1.0 card signed without "url", served with "url": "https://evil.example/a" added.
    ring = ring_of("ES256")
    full = dual_card(card)
    signed = sign_card_dict({name: value for name, value in full.items() if name != member}, ring)
    assert await verify_card_json(served(signed), pinned(ring.jwks()))
    added = {**signed, member: EVIL if member == "url" else full[member]}
    assert await expect_failure(served(added), pinned(ring.jwks())) == "bad-signature"


async def test_a_different_key_is_unknown_key_because_kid_is_its_thumbprint(card: dict[str, Any]) -> None:
    # The kid is the key's thumbprint, so another key can only ever be listed under another kid.
    body = served(sign_card_dict(card, ring_of("ES256"), jku=JKU))
    assert await expect_failure(body, pinned(ring_of("ES256").jwks())) == "unknown-key"


async def test_a_different_key_under_the_same_kid_is_bad_signature(card: dict[str, Any]) -> None:
    # A JWKS that lists a substitute key under the signer's kid: the key is found, the maths fails.
    ring = ring_of("ES256")
    substitute = {**ring_of("ES256").jwks()["keys"][0], "kid": ring.keys[0].kid}
    body = served(sign_card_dict(card, ring, jku=JKU))
    assert await expect_failure(body, pinned({"keys": [substitute]})) == "bad-signature"


@pytest.mark.parametrize("alg", ["HS256", "none", "RS256", None])
async def test_relabelled_algorithm_is_bad_algorithm(card: dict[str, Any], alg: str | None) -> None:
    ring = ring_of("ES256")
    signed = sign_card_dict(card, ring, jku=JKU)
    signed["signatures"] = [with_header(signed["signatures"][0], alg=alg)]
    if alg == "none":
        signed["signatures"][0]["signature"] = ""
    fetch = RecordingFetch({JKU: ring.jwks()})
    assert await expect_failure(served(signed), pinned(ring.jwks()), fetch) == "bad-algorithm"
    assert fetch.calls == []


async def test_algorithm_that_does_not_fit_the_key_is_bad_algorithm(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    signed = sign_card_dict(card, ring)
    signed["signatures"] = [with_header(signed["signatures"][0], alg="EdDSA")]
    assert await expect_failure(served(signed), pinned(ring.jwks())) == "bad-algorithm"


@pytest.mark.parametrize("alg", ["HS256", "none", "RS1"])
def test_policy_cannot_pin_symmetric_or_unknown_algorithms(alg: str) -> None:
    with pytest.raises(ValueError, match="cannot pin"):
        TrustPolicy(algorithms=("ES256", alg))


@pytest.mark.parametrize("origin", ["gateway.example", "ftp://gateway.example", "https://gateway.example/jwks"])
def test_policy_refuses_allowed_origins_that_are_not_origins(origin: str) -> None:
    with pytest.raises(ValueError, match="origins"):
        TrustPolicy(allowed_jku_origins=(origin,))


@pytest.mark.parametrize(
    "jku",
    [
        "https://evil.example/.well-known/jwks.json",
        "https://gateway.example@evil.example/.well-known/jwks.json",
        "https://gateway.example:8443/.well-known/jwks.json",
        "http://gateway.example/.well-known/jwks.json",
        "file:///etc/jwks.json",
    ],
)
async def test_jku_off_the_allow_list_is_untrusted_and_never_fetched(card: dict[str, Any], jku: str) -> None:
    ring = ring_of("ES256")
    fetch = RecordingFetch({jku: ring.jwks()})
    policy = TrustPolicy(allowed_jku_origins=("https://gateway.example",))
    body = served(sign_card_dict(card, ring, jku=jku))
    assert await expect_failure(body, policy, fetch) == "untrusted-jku"
    assert fetch.calls == []


async def test_jku_on_an_allowed_origin_is_fetched_once_for_all_signatures(card: dict[str, Any]) -> None:
    ring = ring_of("ES256", "EdDSA")
    fetch = RecordingFetch({JKU: ring.jwks()})
    policy = TrustPolicy(allowed_jku_origins=("HTTPS://Gateway.Example:443",))
    verified = await verify_card_json(served(sign_card_dict(card, ring, jku=JKU)), policy, fetch)
    assert verified.kids == tuple(key.kid for key in ring.keys)
    assert fetch.calls == [JKU]


async def test_pinned_jwks_means_the_cards_jku_is_never_fetched(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    fetch = RecordingFetch()
    body = served(sign_card_dict(card, ring, jku="https://evil.example/jwks.json"))
    assert (await verify_card_json(body, pinned(ring.jwks()), fetch)).kids == (ring.keys[0].kid,)
    assert fetch.calls == []


async def test_kid_missing_from_the_pin_falls_back_only_to_an_allowed_jku(card: dict[str, Any]) -> None:
    ring, other = ring_of("ES256"), ring_of("ES256")
    fetch = RecordingFetch({JKU: ring.jwks()})
    body = served(sign_card_dict(card, ring, jku=JKU))
    assert await expect_failure(body, pinned(other.jwks()), fetch) == "unknown-key"
    assert fetch.calls == []
    both = TrustPolicy(jwks=other.jwks(), allowed_jku_origins=(BASE_URL,))
    assert (await verify_card_json(body, both, fetch)).kids == (ring.keys[0].kid,)
    assert fetch.calls == [JKU]


@pytest.mark.parametrize(
    "raw",
    [
        b"{not json",
        b"",
        b"\xff\xfe garbage",
        b"[1, 2]",
        b'{"name": "a", "name": "b"}',
        b'{"weight": NaN}',
        b'{"big": 123456789012345678901234567890}',
        '{"a":' * 10_000 + "1" + "}" * 10_000,  # deeper than the parser goes
        '{"a":' * 200 + "1" + "}" * 200,  # parses, but deeper than RFC 8785 canonicalisation goes
    ],
)
async def test_garbage_is_malformed_json(raw: bytes | str) -> None:
    fetch = RecordingFetch()
    assert await expect_failure(raw, TrustPolicy(jwks={"keys": []}), fetch) == "malformed-json"


@pytest.mark.parametrize(
    "signatures",
    [
        ["eyJhbGciOiJFUzI1NiJ9..c2ln"],
        [{"protected": "not base64!", "signature": "AA"}],
        [{"protected": base64url_encode(b"not json").decode(), "signature": "AA"}],
        [{"protected": base64url_encode(b'["ES256"]').decode(), "signature": "AA"}],
        [{"signature": "AA"}],
        {"protected": "e30", "signature": "AA"},
    ],
)
async def test_signature_that_is_not_a_jws_is_not_a_jws(card: dict[str, Any], signatures: Any) -> None:
    body = served({**card, "signatures": signatures})
    assert await expect_failure(body, TrustPolicy(jwks={"keys": []})) == "not-a-jws"


async def test_unsupported_critical_extension_is_not_a_jws(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    signed = sign_card_dict(card, ring)
    signed["signatures"] = [with_header(signed["signatures"][0], crit=["exp"], exp=1)]
    assert await expect_failure(served(signed), pinned(ring.jwks())) == "not-a-jws"


def closed_origin() -> str:
    """An origin on a port that was free a moment ago: nothing listens there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


async def test_jwks_url_that_does_not_answer_is_jwks_unavailable(card: dict[str, Any]) -> None:
    origin = closed_origin()
    body = served(sign_card_dict(card, ring_of("ES256"), jku=jwks_url(origin)))
    assert await expect_failure(body, TrustPolicy(allowed_jku_origins=(origin,))) == "jwks-unavailable"


def test_sync_fetch_of_a_jwks_url_that_does_not_answer_says_so() -> None:
    with pytest.raises(JwksFetchError, match="ConnectError"):
        fetch_jwks_sync(jwks_url(closed_origin()))


async def test_fetch_jwks_returns_the_served_jwks() -> None:
    jwks = ring_of("ES256").jwks()
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=jwks)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        assert await fetch_jwks(JKU, client=client) == jwks
    assert [str(request.url) for request in seen] == [JKU]


async def test_jwks_url_that_answers_with_html_is_jwks_unavailable(card: dict[str, Any]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>hello</html>"))
    async with httpx.AsyncClient(transport=transport) as client:

        async def fetch(url: str) -> dict[str, Any]:
            return await fetch_jwks(url, client=client)

        body = served(sign_card_dict(card, ring_of("ES256"), jku=JKU))
        policy = TrustPolicy(allowed_jku_origins=(BASE_URL,))
        assert await expect_failure(body, policy, fetch) == "jwks-unavailable"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(404), "HTTP 404"),
        (httpx.Response(302, headers={"Location": "https://evil.example/jwks.json"}), "HTTP 302"),
        (httpx.Response(200, json=["not", "a", "jwks"]), "not a JWKS"),
        (httpx.Response(200, content=b"x" * 300_000), "larger than"),
    ],
)
async def test_fetch_jwks_reports_what_was_wrong(response: httpx.Response, message: str) -> None:
    transport = httpx.MockTransport(lambda request: response)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(JwksFetchError, match=message):
            await fetch_jwks(JKU, client=client)


async def test_card_without_signatures_is_no_signature(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    for unsigned in (card, {**card, "signatures": []}):
        assert await expect_failure(served(unsigned), pinned(ring.jwks())) == "no-signature"


async def test_lenient_policy_accepts_unsigned_but_never_badly_signed_cards(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    lenient = TrustPolicy(jwks=ring.jwks(), require_signature=False)
    assert not (await verify_card_json(served(card), lenient)).signed
    tampered = {**sign_card_dict(card, ring), "description": "changed"}
    assert await expect_failure(served(tampered), lenient) == "bad-signature"


async def test_one_good_signature_is_enough_and_reported(card: dict[str, Any]) -> None:
    ring = ring_of("ES256")
    signed = sign_card_dict(card, ring)
    forged = with_header(signed["signatures"][0], alg="HS256")
    signed["signatures"] = [forged, *signed["signatures"]]
    assert (await verify_card_json(served(signed), pinned(ring.jwks()))).kids == (ring.keys[0].kid,)


def test_sdk_verifier_accepts_our_signature_on_a_v1_card(card: dict[str, Any]) -> None:
    # Holds only while the served JSON equals the SDK's protobuf view of it: no v0.3 compatibility
    # members, no empty values, no members the SDK does not know.
    ring = ring_of("ES256")
    v1_only = {name: value for name, value in card.items() if name != "xFutureField"}
    received = json.loads(served(sign_card_dict(v1_only, ring, jku=JKU)))
    verify = create_signature_verifier(lambda kid, jku: PyJWK(ring.jwks()["keys"][0]), ["ES256"])
    verify(parse_agent_card(received))


# 3. Rotation.


async def test_rotation_signs_with_both_keys_then_only_the_new_one(tmp_path: Path, card: dict[str, Any]) -> None:
    old = KeyRing.load_or_create(tmp_path).keys[0]
    both = rotate(tmp_path, alg="EdDSA")
    new = next(key for key in both.keys if key.kid != old.kid)
    assert [key.kid for key in both.signing_keys()] == [old.kid, new.kid]

    signed = sign_card_dict(card, both, jku=JKU)
    assert [protected_header(s)["kid"] for s in signed["signatures"]] == [old.kid, new.kid]
    assert (await verify_card_json(served(signed), pinned(both.jwks()))).kids == (old.kid, new.kid)
    for signature in signed["signatures"]:  # each verifies on its own
        alone = served({**signed, "signatures": [signature]})
        assert (await verify_card_json(alone, pinned(both.jwks()))).kids == (protected_header(signature)["kid"],)

    after = retire(tmp_path, old.kid, keep_for=timedelta(days=7), now=T0)
    assert [key.kid for key in after.signing_keys(T0)] == [new.kid]
    assert KeyRing.load_or_create(tmp_path).signing_keys(T0) == after.signing_keys(T0)  # persisted
    resigned = sign_card_dict(card, after, jku=JKU, now=T0)
    assert (await verify_card_json(served(resigned), pinned(after.jwks(T0)))).kids == (new.kid,)

    # The retired key stays published until it expires, so cards signed before still verify...
    old_only = served(sign_card_dict(card, KeyRing((old,)), jku=JKU))
    assert [jwk["kid"] for jwk in after.jwks(T0 + timedelta(days=6))["keys"]] == [old.kid, new.kid]
    assert (await verify_card_json(old_only, pinned(after.jwks(T0 + timedelta(days=6))))).kids == (old.kid,)
    # ...and once it is gone from the JWKS they do not.
    expired_jwks = after.jwks(T0 + timedelta(days=7))
    assert [jwk["kid"] for jwk in expired_jwks["keys"]] == [new.kid]
    assert await expect_failure(old_only, pinned(expired_jwks)) == "unknown-key"


def test_in_memory_ring_add_and_retire(card: dict[str, Any]) -> None:
    first = SigningKey.generate("ES256")
    ring = KeyRing((first,)).add(SigningKey.generate("ES256"))
    assert len(sign_card_dict(card, ring)["signatures"]) == 2
    retired = ring.retire(first.kid, now=T0)
    assert len(sign_card_dict(card, retired, now=T0)["signatures"]) == 1
    assert retired.get(first.kid).retired and not ring.get(first.kid).retired  # rings are immutable
    with pytest.raises(KeyError):
        ring.retire("no-such-kid")
    with pytest.raises(KeyConfigError, match="duplicate kid"):
        ring.add(first)


def test_load_or_create_replaces_a_ring_with_no_signing_key(tmp_path: Path) -> None:
    old = KeyRing.load_or_create(tmp_path).keys[0]
    retire(tmp_path, old.kid, keep_for=timedelta(0))
    ring = KeyRing.load_or_create(tmp_path)
    assert [key.kid for key in ring.signing_keys()] != [old.kid]
    assert len(ring.signing_keys()) == 1


# 4. Key files and key sources.


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
async def test_key_is_created_private_and_reused(tmp_path: Path, card: dict[str, Any], alg: str) -> None:
    ring = KeyRing.load_or_create(tmp_path / "data", alg)
    [key] = ring.keys
    keys_dir = tmp_path / "data" / KEYS_DIRNAME
    [pem] = keys_dir.glob("*.pem")
    assert pem.name == f"{key.kid}.pem" and key.alg == alg
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600

    again = KeyRing.load_or_create(tmp_path / "data", alg)
    assert [k.kid for k in again.keys] == [key.kid]
    body = served(sign_card_dict(card, again, jku=JKU))
    assert (await verify_card_json(body, pinned(ring.jwks()))).kids == (key.kid,)


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
async def test_keys_load_from_pem_and_jwk_text_and_files(tmp_path: Path, card: dict[str, Any], alg: str) -> None:
    original = SigningKey.generate(alg)
    pem = original.private_pem().decode()
    private_jwk = json.dumps({**original.public_jwk(), "d": _private_d(original)})
    pem_file = tmp_path / "key.pem"
    pem_file.write_text(pem)
    sources: list[dict[str, Any]] = [
        {"key_texts": [pem]},
        {"key_texts": [pem.replace("\n", "\\n")]},  # as pasted into a one-line env value
        {"key_texts": [private_jwk]},
        {"key_texts": [json.dumps({"keys": [json.loads(private_jwk)]})]},
        {"key_files": [pem_file], "data_dir": tmp_path / "unused"},
    ]
    for source in sources:
        ring = KeyRing.from_sources(**source)
        assert [(key.kid, key.alg) for key in ring.keys] == [(original.kid, alg)], source
        body = served(sign_card_dict(card, ring, jku=JKU))
        assert (await verify_card_json(body, pinned(KeyRing((original,)).jwks()))).kids == (original.kid,)
    assert not (tmp_path / "unused").exists()  # explicit keys win; nothing generated


def test_from_sources_keeps_a_jwks_own_kid_and_falls_back_to_data_dir(tmp_path: Path) -> None:
    original = SigningKey.generate("ES256")
    jwk = {**original.public_jwk(), "d": _private_d(original), "kid": "2030-01"}
    assert KeyRing.from_sources(key_texts=[json.dumps(jwk)]).keys[0].kid == "2030-01"
    assert len(KeyRing.from_sources(data_dir=tmp_path).keys) == 1
    with pytest.raises(KeyConfigError, match="no signing key"):
        KeyRing.from_sources()


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: KeyRing.load_or_create(tmp, alg="HS256"),
        lambda tmp: rotate(tmp, alg="none"),
        lambda tmp: SigningKey.generate("HS256"),
        lambda tmp: KeyRing.from_sources(key_texts=['{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}']),
        lambda tmp: KeyRing.from_sources(key_texts=[json.dumps(SigningKey.generate("ES256").public_jwk())]),
        lambda tmp: KeyRing.from_sources(key_texts=["hunter2"]),
    ],
    ids=["hs256-generate", "none-rotate", "hs256-key", "oct-jwk", "public-jwk", "not-a-key"],
)
def test_symmetric_public_or_garbage_keys_are_refused(tmp_path: Path, make: Any) -> None:
    with pytest.raises(KeyConfigError):
        make(tmp_path)
    assert not (tmp_path / KEYS_DIRNAME).exists()


# 5. The JWKS is public.


@pytest.mark.parametrize("alg", ["ES256", "EdDSA"])
def test_jwks_has_no_private_members(alg: str) -> None:
    original = SigningKey.generate(alg)
    loaded = KeyRing.from_sources(key_texts=[json.dumps({**original.public_jwk(), "d": _private_d(original)})])
    for ring in (KeyRing((original,)), loaded):
        [jwk] = ring.jwks()["keys"]
        assert not {"d", "p", "q", "dp", "dq", "qi", "oth", "k"} & set(jwk)
        assert jwk["use"] == "sig" and jwk["alg"] == alg
        assert not jwcrypto_jwk.JWK(**jwk).has_private


def _private_d(key: SigningKey) -> str:
    """The private scalar of ``key`` as a JWK ``d``, via jwcrypto (an independent encoder)."""
    exported = jwcrypto_jwk.JWK.from_pem(key.private_pem()).export_private(as_dict=True)
    return str(exported["d"])
