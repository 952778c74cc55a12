"""Agent Card signatures: sign the card JSON the gateway serves, verify the card JSON a peer served.

A signature is a JWS with detached payload (RFC 7515 appendix F): the payload is the RFC 8785
canonical form of the card *as JSON*, without its ``signatures`` member. Both directions work on
JSON rather than on the SDK's protobuf ``AgentCard``: the SDK re-serialises the protobuf (dropping
members it does not know, such as the v0.3 compatibility fields it adds to every served card, and
any field from a newer spec), so its payload is not the card that was served or received.

Trust is decided only from the protected header (``alg``, ``kid``, ``jku``) against a
``TrustPolicy``; the unprotected ``header`` is never consulted. Algorithms are pinned per policy
and symmetric algorithms and ``none`` can never be pinned.
"""

from __future__ import annotations

import asyncio
import binascii
import copy
import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import jwt
from a2a.utils._jcs import CanonicalizationError, canonicalize
from jwt import api_jws
from jwt.utils import base64url_decode, base64url_encode

from gateway.cards.keys import KeyRing

JWKS_PATH = "/.well-known/jwks.json"
DEFAULT_ALGORITHMS = ("ES256", "EdDSA")
JWKS_FETCH_TIMEOUT = 5.0
MAX_JWKS_BYTES = 256 * 1024
MAX_CARD_BYTES = 1024 * 1024
"""The most of a card any fetch reads (a peer card, or a card checked by switchboard card verify) before refusing it."""

VerificationCode = Literal[
    "malformed-json",
    "no-signature",
    "not-a-jws",
    "bad-algorithm",
    "unknown-key",
    "untrusted-jku",
    "jwks-unavailable",
    "bad-signature",
]
JwksFetcher = Callable[[str], Awaitable[Mapping[str, Any]]]

# The key type (and curve) each algorithm a policy may pin must be verified with.
_KEY_TYPES: dict[str, tuple[str, str | None]] = {
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", "Ed25519"),
    "RS256": ("RSA", None),
    "PS256": ("RSA", None),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_JWKS_ACCEPT = {"Accept": "application/jwk-set+json, application/json"}


def jwks_url(public_base_url: str) -> str:
    """The gateway's JWKS URL, the ``jku`` of every signature it makes."""
    return public_base_url.rstrip("/") + JWKS_PATH


def canonical_card(card: Mapping[str, Any]) -> bytes:
    """The signed payload: RFC 8785 canonical JSON of ``card`` without ``signatures``, UTF-8."""
    return canonicalize({name: value for name, value in card.items() if name != "signatures"}).encode()


def sign_card_dict(
    card: Mapping[str, Any], keyring: KeyRing, *, jku: str | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Return a copy of ``card`` whose ``signatures`` hold one signature per active key in ``keyring``.

    ``card`` is the JSON object exactly as it will be served; any ``signatures`` it has are
    replaced. ``jku`` (use ``jwks_url(public_base_url)``) goes into every protected header.
    Raises ``CanonicalizationError`` for a value JSON cannot carry exactly (NaN, integers past
    2**53) and ``ValueError`` when the ring has no active key.
    """
    signing_keys = keyring.signing_keys(now)
    if not signing_keys:
        raise ValueError("the key ring has no active signing key")
    payload = canonical_card(card)
    signatures = []
    for key in signing_keys:
        header: dict[str, Any] = {"alg": key.alg, "kid": key.kid, "typ": "JOSE"}
        if jku:
            header["jku"] = jku
        token = api_jws.encode(payload, key.private_key, algorithm=key.alg, headers=header)
        protected, _, signature = token.split(".")
        signatures.append({"protected": protected, "signature": signature})
    signed = copy.deepcopy({name: value for name, value in card.items() if name != "signatures"})
    signed["signatures"] = signatures
    return signed


class CardVerificationError(Exception):
    """A card failed verification; ``code`` is stable and machine-readable, ``reason`` is for people."""

    def __init__(self, reason: str, code: VerificationCode) -> None:
        super().__init__(f"{code}: {reason}")
        self.reason = reason
        self.code: VerificationCode = code


class JwksFetchError(Exception):
    """A JWKS URL did not answer with a JWKS."""


def _origin(url: str) -> str | None:
    """``scheme://host:port`` of an http(s) URL, ports made explicit; ``None`` for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port or _DEFAULT_PORTS[scheme]}"


@dataclass(frozen=True)
class TrustPolicy:
    """What a card must satisfy: where its keys may come from, which algorithms, whether signed.

    Keys are looked up by ``kid`` in the pinned ``jwks`` first. A card's own ``jku`` is fetched
    only when its origin (``scheme://host:port``) is in ``allowed_jku_origins``, so with a pin and
    no allowed origins nothing is ever fetched. ``require_signature=False`` accepts an unsigned
    card, never a card with a bad signature.
    """

    jwks: Mapping[str, Any] | None = None
    allowed_jku_origins: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    require_signature: bool = True
    _origins: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_jku_origins", tuple(self.allowed_jku_origins))
        object.__setattr__(self, "algorithms", tuple(self.algorithms))
        unsupported = [alg for alg in self.algorithms if alg not in _KEY_TYPES]
        if unsupported or not self.algorithms:
            raise ValueError(f"cannot pin {unsupported or 'no algorithms'}; choose from {sorted(_KEY_TYPES)}")
        if self.jwks is not None and not isinstance(self.jwks.get("keys"), list):
            raise ValueError("a pinned JWKS must be an object with a 'keys' list")
        origins = {_origin(origin) for origin in self.allowed_jku_origins}
        if None in origins or any(urlsplit(origin).path not in ("", "/") for origin in self.allowed_jku_origins):
            raise ValueError(f"allowed_jku_origins must be http(s) origins: {self.allowed_jku_origins}")
        object.__setattr__(self, "_origins", frozenset(origin for origin in origins if origin))

    def allows_jku(self, jku: str) -> bool:
        """Whether a key set at ``jku`` may be fetched under this policy."""
        return _origin(jku) in self._origins


@dataclass(frozen=True)
class VerifiedCard:
    """A card that passed its policy: the JSON as received, the kids that verified, the signed bytes."""

    card: dict[str, Any]
    kids: tuple[str, ...]
    canonical: bytes

    @property
    def signed(self) -> bool:
        """False only for an unsigned card accepted by a policy that does not require signatures."""
        return bool(self.kids)


async def verify_card_json(raw: bytes | str, policy: TrustPolicy, fetch: JwksFetcher | None = None) -> VerifiedCard:
    """Verify the card JSON ``raw`` as received; raise ``CardVerificationError`` unless it passes.

    It passes when at least one signature verifies under ``policy``. The payload is canonicalised
    from the received JSON itself, so members this gateway does not know are still covered.
    ``fetch`` loads a JWKS by URL (default ``fetch_jwks``) and is called only for allowed origins.
    """
    card = _parse_card(raw)
    try:
        canonical = canonical_card(card)
    except CanonicalizationError as exc:
        raise CardVerificationError(f"card has no RFC 8785 canonical form: {exc}", "malformed-json") from exc
    entries = card.get("signatures")
    if entries is None or entries == []:
        if policy.require_signature:
            raise CardVerificationError("card has no signatures", "no-signature")
        return VerifiedCard(card=card, kids=(), canonical=canonical)
    if not isinstance(entries, list):
        raise CardVerificationError("'signatures' is not a list", "not-a-jws")
    keys = _KeySource(policy, fetch or fetch_jwks)
    payload = base64url_encode(canonical).decode()
    kids: list[str] = []
    failures: list[CardVerificationError] = []
    for entry in entries:
        try:
            kids.append(await _verify_signature(entry, payload, policy, keys))
        except CardVerificationError as exc:
            failures.append(exc)
    if kids:
        return VerifiedCard(card=card, kids=tuple(kids), canonical=canonical)
    raise _summarise(failures)


def _parse_card(raw: bytes | str) -> dict[str, Any]:
    try:
        card = json.loads(raw, object_pairs_hook=_unique_members, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CardVerificationError(f"card is not valid JSON: {exc}", "malformed-json") from exc
    if not isinstance(card, dict):
        raise CardVerificationError("card JSON is not an object", "malformed-json")
    return card


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Duplicate members would let the signer and a consumer read different cards from one text.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate object member")
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _summarise(failures: list[CardVerificationError]) -> CardVerificationError:
    first = failures[0]
    if len(failures) == 1:
        return first
    others = ", ".join(failure.code for failure in failures[1:])
    return CardVerificationError(f"{first.reason} (other signatures: {others})", first.code)


def _decode_protected(entry: Any) -> tuple[str, str, dict[str, Any]]:
    """``(protected, signature, header)`` of one ``signatures`` entry, or ``not-a-jws``."""
    if not isinstance(entry, dict):
        raise CardVerificationError("signature entry is not an object", "not-a-jws")
    protected, signature = entry.get("protected"), entry.get("signature")
    if not (isinstance(protected, str) and isinstance(signature, str)):
        raise CardVerificationError("signature entry lacks 'protected' or 'signature' strings", "not-a-jws")
    if not (_B64URL.fullmatch(protected) and _B64URL.fullmatch(signature)):
        raise CardVerificationError("'protected' or 'signature' is not base64url", "not-a-jws")
    try:
        header = json.loads(base64url_decode(protected), object_pairs_hook=_unique_members)
    except (ValueError, binascii.Error, RecursionError) as exc:
        raise CardVerificationError("protected header is not base64url JSON", "not-a-jws") from exc
    if not isinstance(header, dict):
        raise CardVerificationError("protected header is not a JSON object", "not-a-jws")
    if "crit" in header or "b64" in header:
        raise CardVerificationError("protected header uses an unsupported JWS extension", "not-a-jws")
    return protected, signature, header


async def _verify_signature(entry: Any, payload: str, policy: TrustPolicy, keys: _KeySource) -> str:
    """Verify one signature; return its ``kid``."""
    protected, signature, header = _decode_protected(entry)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in policy.algorithms:
        raise CardVerificationError(f"algorithm {alg!r} is not one of {list(policy.algorithms)}", "bad-algorithm")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise CardVerificationError("protected header has no kid", "unknown-key")
    jku = header.get("jku")
    key = _usable_key(await keys.find(kid, jku if isinstance(jku, str) else None), alg)
    try:
        jwt.PyJWS().decode_complete(f"{protected}.{payload}.{signature}", key=key, algorithms=[alg])
    except jwt.InvalidSignatureError as exc:
        raise CardVerificationError(f"signature by {kid!r} does not match the card", "bad-signature") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise CardVerificationError(f"algorithm {alg!r} does not fit key {kid!r}", "bad-algorithm") from exc
    except jwt.PyJWTError as exc:
        raise CardVerificationError(f"signature by {kid!r} is not a valid JWS: {exc}", "not-a-jws") from exc
    return kid


def _usable_key(jwk: Mapping[str, Any], alg: str) -> jwt.PyJWK:
    """The JWK as a PyJWK bound to ``alg``, refusing a key of another type or purpose."""
    kty, crv = _KEY_TYPES[alg]
    if jwk.get("kty") != kty or (crv and jwk.get("crv") != crv) or jwk.get("alg", alg) != alg:
        raise CardVerificationError(f"key {jwk.get('kid')!r} is not a {alg} key", "bad-algorithm")
    if jwk.get("use", "sig") != "sig":
        raise CardVerificationError(f"key {jwk.get('kid')!r} is not for signatures", "unknown-key")
    try:
        return jwt.PyJWK(dict(jwk), algorithm=alg)
    except jwt.PyJWTError as exc:
        raise CardVerificationError(f"key {jwk.get('kid')!r} is unusable: {exc}", "unknown-key") from exc


class _KeySource:
    """Finds a verification JWK by kid under a policy, fetching each allowed JWKS URL at most once."""

    def __init__(self, policy: TrustPolicy, fetch: JwksFetcher) -> None:
        self._policy = policy
        self._fetch = fetch
        self._fetched: dict[str, Mapping[str, Any] | CardVerificationError] = {}

    async def find(self, kid: str, jku: str | None) -> Mapping[str, Any]:
        """The JWK for ``kid``: from the pinned JWKS, else from ``jku`` on an allowed origin."""
        if self._policy.jwks is not None:
            jwk = _jwk_by_kid(self._policy.jwks, kid)
            if jwk is not None:
                return jwk
            if not (jku and self._policy.allows_jku(jku)):
                raise CardVerificationError(f"kid {kid!r} is not in the pinned JWKS", "unknown-key")
        if not jku:
            raise CardVerificationError(f"no pinned JWKS and no jku to find kid {kid!r}", "unknown-key")
        if not self._policy.allows_jku(jku):
            raise CardVerificationError(f"jku {jku!r} is not on an allowed origin", "untrusted-jku")
        jwk = _jwk_by_kid(await self._jwks(jku), kid)
        if jwk is None:
            raise CardVerificationError(f"kid {kid!r} is not in the JWKS at {jku}", "unknown-key")
        return jwk

    async def _jwks(self, url: str) -> Mapping[str, Any]:
        if url not in self._fetched:
            try:
                jwks = await self._fetch(url)
                if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
                    raise JwksFetchError(f"{url} did not return a JWKS object")
                self._fetched[url] = jwks
            except (JwksFetchError, httpx.HTTPError, OSError, TimeoutError, ValueError) as exc:
                self._fetched[url] = CardVerificationError(f"JWKS at {url} is unavailable: {exc}", "jwks-unavailable")
        result = self._fetched[url]
        if isinstance(result, CardVerificationError):
            raise result
        return result


def _jwk_by_kid(jwks: Mapping[str, Any], kid: str) -> Mapping[str, Any] | None:
    return next((jwk for jwk in jwks.get("keys", []) if isinstance(jwk, dict) and jwk.get("kid") == kid), None)


async def fetch_jwks(url: str, *, client: httpx.AsyncClient | None = None) -> dict[str, Any]:
    """GET a JWKS; raise ``JwksFetchError`` for no answer, a non-200, a redirect, non-JSON or an oversized body.

    The whole exchange must finish within ``JWKS_FETCH_TIMEOUT`` seconds (wrap the call in
    ``asyncio.timeout`` for a shorter limit). Redirects are not followed: the allow-list applies
    to the URL in the signature, not to wherever it would redirect.
    """
    try:
        async with asyncio.timeout(JWKS_FETCH_TIMEOUT):
            if client is not None:
                return await _get_jwks(client, url)
            async with httpx.AsyncClient(follow_redirects=False, timeout=JWKS_FETCH_TIMEOUT) as own:
                return await _get_jwks(own, url)
    except TimeoutError as exc:
        raise JwksFetchError(f"{url}: no answer within {JWKS_FETCH_TIMEOUT} s") from exc
    except httpx.HTTPError as exc:
        raise JwksFetchError(f"{url}: {type(exc).__name__}: {exc}") from exc


async def _get_jwks(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    async with client.stream("GET", url, headers=_JWKS_ACCEPT, follow_redirects=False) as response:
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_JWKS_BYTES:
                raise JwksFetchError(f"{url}: JWKS larger than {MAX_JWKS_BYTES} bytes")
    return _jwks_from_response(url, response.status_code, body)


def fetch_jwks_sync(url: str, *, timeout: float = JWKS_FETCH_TIMEOUT) -> dict[str, Any]:
    """Blocking ``fetch_jwks`` for the CLI: the same checks and errors, ``timeout`` per network step."""
    try:
        with (
            httpx.Client(follow_redirects=False) as client,
            client.stream("GET", url, headers=_JWKS_ACCEPT, timeout=timeout) as response,
        ):
            body = b""
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksFetchError(f"{url}: JWKS larger than {MAX_JWKS_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise JwksFetchError(f"{url}: {type(exc).__name__}: {exc}") from exc
    return _jwks_from_response(url, response.status_code, body)


def _jwks_from_response(url: str, status: int, body: bytes) -> dict[str, Any]:
    if status != 200:
        raise JwksFetchError(f"{url}: HTTP {status}")
    try:
        jwks = json.loads(body)
    except ValueError as exc:
        raise JwksFetchError(f"{url}: response is not JSON") from exc
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise JwksFetchError(f"{url}: response is not a JWKS object")
    return jwks
