"""Bearer JWTs from the configured OAuth 2.0 issuers: signature, ``iss``, ``aud``, ``exp``/``nbf``, scopes.

Validation uses joserfc, the JOSE library authlib is built on (authlib's own ``authlib.jose``
is deprecated in its favour). Only public-key algorithms are accepted, and only those the
issuer's settings list, checked before any key is looked up, so an ``HS256`` token signed with
a public key as its HMAC secret never reaches a verifier. An issuer's JWKS is fetched with
httpx, kept for a TTL, and fetched again (at most once per ``refetch_s``) when a token names a
key id it does not hold: a rotation at the issuer is picked up without waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError, MissingClaimError, SecurityWarning
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry

from gateway.errors import AuthenticationError
from gateway.settings import IssuerSettings

logger = logging.getLogger(__name__)

Clock = Callable[[], float]
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


def _kty_for(alg: str) -> str:
    return _KEY_TYPES.get(alg[:2], "")


def _segment(part: str) -> dict[str, Any]:
    data = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


def peek(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The header and claims of a compact JWS, unverified: only to pick the issuer, algorithm and key."""
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthenticationError("the bearer token is not a JWT (header.payload.signature)")
    try:
        return _segment(parts[0]), _segment(parts[1])
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise AuthenticationError("the bearer token is not a JWT: its header or payload is not base64url JSON") from exc


def import_keys(jwks: Mapping[str, Any]) -> list[Key]:
    """The signature-verification keys of a JWKS; symmetric, encryption-only and unreadable keys are skipped."""
    keys: list[Key] = []
    for data in jwks.get("keys", []) if isinstance(jwks.get("keys"), list) else []:
        if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC", "OKP") or data.get("use") == "enc":
            continue
        try:
            keys.append(JWKRegistry.import_key(data))
        except (JoseError, ValueError, TypeError):
            logger.warning("skipped an unreadable key (kid %r) in a JWKS", data.get("kid"))
    return keys


class JwksCache:
    """One issuer's JWKS, fetched with httpx, kept for ``ttl_s``, refetched once for an unknown key id."""

    def __init__(
        self, uri: str, http: httpx.AsyncClient, *, ttl_s: float, refetch_s: float, clock: Clock = time.monotonic
    ) -> None:
        self.uri = uri
        self._http = http
        self._ttl_s = ttl_s
        self._refetch_s = refetch_s
        self._clock = clock
        self._keys: list[Key] = []
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0
        self.version = 0
        """Bumped on every fetch: what verified under one version is checked again under the next."""

    def current(self, version: int) -> bool:
        """Whether the keys are still those of ``version`` and within their TTL (no fetch is due)."""
        return (
            version == self.version and self._fetched_at is not None and self._clock() - self._fetched_at < self._ttl_s
        )

    async def keys(self, kid: str) -> list[Key]:
        """The keys that may have signed a token naming ``kid`` (every key when it names none)."""
        now = self._clock()
        if self._fetched_at is None or now - self._fetched_at >= self._ttl_s:
            await self._fetch(self._fetched_at)
        found = _matching(self._keys, kid)
        if not found and kid and self._fetched_at is not None and self._clock() - self._fetched_at >= self._refetch_s:
            await self._fetch(self._fetched_at)  # a key id we have not seen: the issuer may have rotated
            found = _matching(self._keys, kid)
        return found

    async def _fetch(self, seen: float | None) -> None:
        async with self._lock:
            if self._fetched_at != seen:
                return  # another request fetched it while this one waited
            try:
                response = await self._http.get(self.uri, headers={"Accept": "application/json"})
                response.raise_for_status()
                keys = import_keys(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("cannot fetch the JWKS at %s: %s", self.uri, exc)
                if self._fetched_at is None:
                    raise AuthenticationError("the token issuer's signing keys cannot be fetched right now") from exc
                return  # keep the keys we have
            self.fetches += 1
            self.version += 1
            self._keys, self._fetched_at = keys, self._clock()


def _matching(keys: Sequence[Key], kid: str) -> list[Key]:
    return [k for k in keys if k.kid == kid] if kid else list(keys)


class StaticKeys:
    """An issuer's JWKS given inline in the settings."""

    version = 0

    def __init__(self, jwks: Mapping[str, Any]) -> None:
        self._keys = import_keys(jwks)

    def current(self, version: int) -> bool:
        """Always: inline keys do not change."""
        return True

    async def keys(self, kid: str) -> list[Key]:
        """The keys that may have signed a token naming ``kid``."""
        return _matching(self._keys, kid)


class TrustedIssuer:
    """One configured issuer: its settings and where its keys come from."""

    def __init__(self, settings: IssuerSettings, keys: JwksCache | StaticKeys) -> None:
        self.settings = settings
        self.key_source = keys
        self.registry = JWSRegistry(algorithms=list(settings.algorithms), strict_check_header=False)


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """The scopes a token grants: its ``scope`` (space-separated) and ``scp`` (a list or a string)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(v for v in value if isinstance(v, str))
    return frozenset(found)


class JwtVerifier:
    """Validates bearer JWTs against the configured issuers."""

    def __init__(self, issuers: Sequence[TrustedIssuer], clock: Clock = time.time) -> None:
        self._issuers = {i.settings.issuer: i for i in issuers}
        self._clock = clock

    @classmethod
    def build(
        cls, issuers: Sequence[IssuerSettings], http: httpx.AsyncClient, *, ttl_s: float, refetch_s: float
    ) -> JwtVerifier:
        """A verifier over ``issuers``, fetching their JWKS with ``http``."""
        trusted = [
            TrustedIssuer(
                i,
                StaticKeys(i.jwks)
                if i.jwks is not None
                else JwksCache(i.jwks_uri, http, ttl_s=ttl_s, refetch_s=refetch_s),
            )
            for i in issuers
        ]
        return cls(trusted)

    def keys_version(self, issuer: str) -> int:
        """The version of ``issuer``'s keys now (see ``keys_current``)."""
        trusted = self._issuers.get(issuer)
        return trusted.key_source.version if trusted is not None else -1

    def keys_current(self, issuer: str, version: int) -> bool:
        """Whether ``issuer``'s keys are still those of ``version`` and due no fetch (a rotation, a TTL)."""
        trusted = self._issuers.get(issuer)
        return trusted is not None and trusted.key_source.current(version)

    async def verify(self, token: str) -> tuple[str, str, frozenset[str]]:
        """``(issuer, subject, scopes)`` of a valid token; ``AuthenticationError`` saying what is wrong otherwise."""
        header, unverified = peek(token)
        iss = unverified.get("iss")
        issuer = self._issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthenticationError(f"tokens from issuer {str(iss)[:200]!r} are not accepted here")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in issuer.settings.algorithms:
            allowed = ", ".join(issuer.settings.algorithms)
            raise AuthenticationError(f"token algorithm {str(alg)[:20]!r} is not accepted (accepted: {allowed})")
        candidates = [
            k for k in await issuer.key_source.keys(kid if isinstance(kid, str) else "") if k.key_type == _kty_for(alg)
        ]
        if not candidates:
            raise AuthenticationError(f"the issuer has no {alg} key {kid!r} to verify this token with")
        claims = self._verified_claims(token, alg, issuer, candidates)
        self._check_claims(claims, issuer.settings)
        return issuer.settings.issuer, claims["sub"], scopes_of(claims)

    @staticmethod
    def _verified_claims(token: str, alg: str, issuer: TrustedIssuer, candidates: Sequence[Key]) -> dict[str, Any]:
        for key in candidates:
            try:
                with warnings.catch_warnings():
                    # joserfc flags EdDSA as superseded by Ed25519 (RFC 9864); both are accepted here.
                    warnings.simplefilter("ignore", SecurityWarning)
                    return jwt.decode(token, key, algorithms=[alg], registry=issuer.registry).claims
            except JoseError:
                continue
        raise AuthenticationError("the token's signature does not verify with the issuer's keys")

    def _check_claims(self, claims: dict[str, Any], settings: IssuerSettings) -> None:
        registry = jwt.JWTClaimsRegistry(
            now=int(self._clock()),
            leeway=settings.leeway_s,
            iss={"essential": True, "value": settings.issuer},
            aud={"essential": True, "values": list(settings.audience)},
            sub={"essential": True},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError as exc:
            raise AuthenticationError("the token has expired") from exc
        except MissingClaimError as exc:
            raise AuthenticationError(f"the token lacks the {exc.claim} claim") from exc
        except InvalidClaimError as exc:
            raise AuthenticationError(_claim_problem(exc.claim, settings)) from exc
        if not isinstance(claims.get("sub"), str):
            raise AuthenticationError("the token's sub claim is not a string")
        if "\x00" in claims["sub"]:  # the caller's name owns its tasks, and PostgreSQL text cannot hold NUL
            raise AuthenticationError("the token's sub claim holds a NUL character (U+0000), which no caller name may")


def _claim_problem(claim: str, settings: IssuerSettings) -> str:
    if claim == "aud":
        return f"the token's audience is not this gateway (accepted: {', '.join(settings.audience)})"
    if claim == "nbf":
        return "the token is not valid yet (nbf)"
    return f"the token's {claim} claim is not valid"
