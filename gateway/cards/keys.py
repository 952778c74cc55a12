"""The gateway's card-signing keys: generation, loading, rotation and the public JWKS.

Keys are asymmetric only (ES256 on P-256, or EdDSA on Ed25519). A key's ``kid`` is its RFC 7638
JWK thumbprint, so the same key always has the same ``kid`` on every replica and after every
restart, and two different keys never share one.

Layout under the data dir (created on first run)::

    {data_dir}/keys/              mode 0700
        {kid}.pem                 mode 0600, PKCS#8 private key (openssl can read it)
        keyring.json              mode 0600, only once a key is retired: {kid: {retired, not_after}}

Rotation: ``rotate(data_dir)`` adds a key; every active key signs, so cards carry one signature
per key while both are active. ``retire(data_dir, kid)`` stops that key signing at once but keeps
it in the JWKS until ``not_after`` (default: seven days later), so copies of cards signed before
the retirement, still cached by peers, keep verifying. Past ``not_after`` a key neither signs nor
is published. Keys given explicitly (file or env text, see ``KeyRing.from_sources``) are all
active; rotate those by listing old and new together, then dropping the old one.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from a2a.utils._jcs import canonicalize
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

SIGNING_ALGORITHMS = ("ES256", "EdDSA")
KEYS_DIRNAME = "keys"
STATE_FILENAME = "keyring.json"
DEFAULT_RETIRED_KEY_GRACE = timedelta(days=7)

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

# RFC 7638 section 3.2: the members that make up a thumbprint, per key type.
_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
_PRIVATE_JWK_TYPES = {("EC", "P-256"): "ES256", ("OKP", "Ed25519"): "EdDSA"}


class KeyConfigError(ValueError):
    """A signing key cannot be generated, loaded or used as configured."""


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of a JWK, base64url without padding."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise KeyConfigError(f"cannot take the thumbprint of a {jwk.get('kty')!r} key")
    required = {name: jwk[name] for name in members}
    digest = hashlib.sha256(canonicalize(required).encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _now() -> datetime:
    return datetime.now(UTC)


def _signing_key_and_alg(private_key: object) -> tuple[PrivateKey, str]:
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        return private_key, "EdDSA"
    if isinstance(private_key, ec.EllipticCurvePrivateKey) and isinstance(private_key.curve, ec.SECP256R1):
        return private_key, "ES256"
    raise KeyConfigError("a card-signing key must be an EC P-256 (ES256) or Ed25519 (EdDSA) private key")


def _check_signing_alg(alg: str) -> None:
    if alg not in SIGNING_ALGORITHMS:
        raise KeyConfigError(
            f"{alg!r} is not allowed for Agent Card signatures; use one of {', '.join(SIGNING_ALGORITHMS)}"
        )


@dataclass(frozen=True)
class SigningKey:
    """One private signing key with its ``kid``, algorithm and lifetime."""

    kid: str
    alg: str
    private_key: PrivateKey = field(repr=False, compare=False)
    not_after: datetime | None = None
    retired: bool = False

    @classmethod
    def generate(cls, alg: str = "ES256") -> SigningKey:
        """Generate a fresh key for ``alg`` (``ES256`` or ``EdDSA``)."""
        _check_signing_alg(alg)
        key: PrivateKey = (
            ed25519.Ed25519PrivateKey.generate() if alg == "EdDSA" else ec.generate_private_key(ec.SECP256R1())
        )
        return cls.from_private_key(key)

    @classmethod
    def from_private_key(cls, private_key: object, kid: str | None = None) -> SigningKey:
        """Wrap a ``cryptography`` private key; ``kid`` defaults to the JWK thumbprint."""
        key, alg = _signing_key_and_alg(private_key)
        return cls(kid=kid or jwk_thumbprint(_public_members(key)), alg=alg, private_key=key)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> SigningKey:
        """Load an unencrypted PEM private key (PKCS#8, or SEC1 for EC keys)."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            private_key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyConfigError(f"not a usable unencrypted PEM private key: {exc}") from exc
        return cls.from_private_key(private_key)

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> SigningKey:
        """Load a private JWK; its own ``kid`` is kept when present, else the thumbprint is used."""
        alg = _PRIVATE_JWK_TYPES.get((str(jwk.get("kty")), str(jwk.get("crv"))))
        if alg is None:
            raise KeyConfigError("a card-signing JWK must be an EC P-256 or OKP Ed25519 key")
        if "d" not in jwk:
            raise KeyConfigError("the JWK has no private part ('d'); a public key cannot sign")
        if jwk.get("alg", alg) != alg:
            raise KeyConfigError(f"the JWK says alg {jwk['alg']!r} but its key type is for {alg}")
        loader = ECAlgorithm if alg == "ES256" else OKPAlgorithm
        try:
            private_key = loader.from_jwk(dict(jwk))
        except Exception as exc:  # PyJWT raises several unrelated types for bad key material
            raise KeyConfigError(f"invalid JWK: {exc}") from exc
        kid = jwk.get("kid")
        return cls.from_private_key(private_key, kid=kid if isinstance(kid, str) and kid else None)

    def public_jwk(self) -> dict[str, str]:
        """The public JWK, with ``kid``, ``alg`` and ``use``; never any private member."""
        return {**_public_members(self.private_key), "kid": self.kid, "alg": self.alg, "use": "sig"}

    def private_pem(self) -> bytes:
        """The private key as unencrypted PKCS#8 PEM."""
        return self.private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def signs_at(self, now: datetime) -> bool:
        """Whether this key signs cards at ``now``: not retired and not past ``not_after``."""
        return not self.retired and self.published_at(now)

    def published_at(self, now: datetime) -> bool:
        """Whether this key is in the JWKS at ``now``: not past ``not_after``."""
        return self.not_after is None or now < self.not_after


def _public_members(private_key: PrivateKey) -> dict[str, str]:
    """Public JWK members only, by allow-list, so a private member can never leak."""
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        jwk = OKPAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
        return {"kty": "OKP", "crv": "Ed25519", "x": str(jwk["x"])}
    jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {"kty": "EC", "crv": "P-256", "x": str(jwk["x"]), "y": str(jwk["y"])}


def parse_key_text(text: str) -> tuple[SigningKey, ...]:
    """Parse key text as given in a file or env value: PEM, a private JWK, or a JWKS of private JWKs."""
    stripped = text.strip()
    if "\\n" in stripped and "\n" not in stripped:
        stripped = stripped.replace("\\n", "\n")  # PEM pasted into a one-line env value
    if stripped.startswith("-----BEGIN"):
        return (SigningKey.from_pem(stripped),)
    try:
        value = json.loads(stripped)
    except ValueError as exc:
        raise KeyConfigError("key text is neither PEM nor JSON (JWK or JWKS)") from exc
    if isinstance(value, dict) and isinstance(value.get("keys"), list):
        return tuple(SigningKey.from_jwk(jwk) for jwk in value["keys"])
    if isinstance(value, dict):
        return (SigningKey.from_jwk(value),)
    raise KeyConfigError("key JSON must be a JWK object or a JWKS {'keys': [...]}")


@dataclass(frozen=True)
class KeyRing:
    """The gateway's signing keys. Immutable: ``add`` and ``retire`` return a new ring."""

    keys: tuple[SigningKey, ...] = ()

    def __post_init__(self) -> None:
        kids = [key.kid for key in self.keys]
        if len(kids) != len(set(kids)):
            raise KeyConfigError(f"duplicate kid in key ring: {kids}")

    @classmethod
    def load_or_create(cls, data_dir: Path, alg: str = "ES256", *, now: datetime | None = None) -> KeyRing:
        """Load ``data_dir/keys/``, generating an ``alg`` key there when no key would sign."""
        _check_signing_alg(alg)
        ring = _load_dir(_keys_dir(data_dir))
        if not ring.signing_keys(now):
            ring = ring.add(_write_new_key(data_dir, alg))
        return ring

    @classmethod
    def from_sources(
        cls,
        *,
        key_texts: Sequence[str] = (),
        key_files: Sequence[Path] = (),
        data_dir: Path | None = None,
        alg: str = "ES256",
    ) -> KeyRing:
        """Keys from env values and/or files when any is given (all active), else from ``data_dir``.

        Explicit keys win over the data dir so that replicas sharing one key never each generate
        their own.
        """
        texts = [*key_texts, *(Path(path).read_text() for path in key_files)]
        if texts:
            return cls(tuple(key for text in texts for key in parse_key_text(text)))
        if data_dir is None:
            raise KeyConfigError("no signing key given and no data dir to generate one in")
        return cls.load_or_create(data_dir, alg)

    def add(self, key: SigningKey) -> KeyRing:
        """Return a ring that also holds ``key``."""
        return KeyRing((*self.keys, key))

    def retire(
        self, kid: str, *, keep_for: timedelta = DEFAULT_RETIRED_KEY_GRACE, now: datetime | None = None
    ) -> KeyRing:
        """Return a ring where ``kid`` no longer signs and stays published for ``keep_for``."""
        self.get(kid)
        not_after = (now or _now()) + keep_for
        return KeyRing(
            tuple(replace(key, retired=True, not_after=not_after) if key.kid == kid else key for key in self.keys)
        )

    def get(self, kid: str) -> SigningKey:
        """The key with this ``kid``; ``KeyError`` when there is none."""
        for key in self.keys:
            if key.kid == kid:
                return key
        raise KeyError(kid)

    def signing_keys(self, now: datetime | None = None) -> tuple[SigningKey, ...]:
        """The keys that sign cards at ``now``."""
        moment = now or _now()
        return tuple(key for key in self.keys if key.signs_at(moment))

    def jwks(self, now: datetime | None = None) -> dict[str, list[dict[str, str]]]:
        """The public JWKS to serve: active keys and retired ones not yet past ``not_after``."""
        moment = now or _now()
        return {"keys": [key.public_jwk() for key in self.keys if key.published_at(moment)]}


def load(data_dir: Path) -> KeyRing:
    """The keys in ``data_dir/keys/`` as they are (none when there are none: nothing is generated)."""
    return _load_dir(_keys_dir(data_dir))


def rotate(data_dir: Path, alg: str = "ES256") -> KeyRing:
    """Add a new key to ``data_dir/keys/``; the existing keys keep signing until retired."""
    _check_signing_alg(alg)
    _write_new_key(data_dir, alg)
    return _load_dir(_keys_dir(data_dir))


def retire(
    data_dir: Path, kid: str, *, keep_for: timedelta = DEFAULT_RETIRED_KEY_GRACE, now: datetime | None = None
) -> KeyRing:
    """Retire ``kid`` in ``data_dir/keys/``: it stops signing now and leaves the JWKS after ``keep_for``."""
    keys_dir = _keys_dir(data_dir)
    ring = _load_dir(keys_dir).retire(kid, keep_for=keep_for, now=now)
    state = {key.kid: _state_of(key) for key in ring.keys if key.retired or key.not_after}
    _write_private_file(keys_dir / STATE_FILENAME, json.dumps(state, indent=2, sort_keys=True).encode())
    return ring


def _keys_dir(data_dir: Path) -> Path:
    return Path(data_dir) / KEYS_DIRNAME


def _state_of(key: SigningKey) -> dict[str, Any]:
    return {"retired": key.retired, "not_after": key.not_after.isoformat() if key.not_after else None}


def _load_dir(keys_dir: Path) -> KeyRing:
    if not keys_dir.is_dir():
        return KeyRing()
    state_path = keys_dir / STATE_FILENAME
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    return KeyRing(tuple(_with_state(SigningKey.from_pem(path.read_bytes()), state) for path in _pem_files(keys_dir)))


def _pem_files(keys_dir: Path) -> Iterable[Path]:
    return sorted(keys_dir.glob("*.pem"), key=lambda path: (path.stat().st_mtime_ns, path.name))


def _with_state(key: SigningKey, state: Mapping[str, Any]) -> SigningKey:
    entry = state.get(key.kid)
    if not isinstance(entry, dict):
        return key
    not_after = datetime.fromisoformat(entry["not_after"]) if entry.get("not_after") else None
    return replace(key, retired=bool(entry.get("retired")), not_after=not_after)


def _write_new_key(data_dir: Path, alg: str) -> SigningKey:
    keys_dir = _keys_dir(data_dir)
    if not keys_dir.is_dir():
        keys_dir.mkdir(mode=0o700, parents=True)
        os.chmod(keys_dir, 0o700)  # mkdir's mode is filtered by the umask
    key = SigningKey.generate(alg)
    _write_private_file(keys_dir / f"{key.kid}.pem", key.private_pem())
    return key


def _write_private_file(path: Path, content: bytes) -> None:
    """Write ``content`` to ``path`` with mode 0600 from the start, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
