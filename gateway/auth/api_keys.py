"""API keys: random secrets handed to callers, configured only as their SHA-256 digests.

A configured line is ``name:sha256-hex-of-key[:scope,scope]``; the caller it admits is
``apikey:<name>`` with those scopes. A presented key is hashed and compared with every
configured digest in constant time. ``switchboard apikey new NAME`` makes a key and its line.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import AuthenticationError, GatewayError
from gateway.settings import Settings
from gateway.spec import SCOPE_PATTERN

API_KEY_PREFIX = "sb_"
_KEY_NAME = r"[A-Za-z0-9_.-]{1,64}"
_KEY_LINE = re.compile(rf"^(?P<name>{_KEY_NAME}):(?P<digest>[0-9a-fA-F]{{64}})(?::(?P<scopes>.*))?$")


class AuthConfigError(GatewayError):
    """An auth setting that cannot be honoured (a malformed API key line, an unreadable key file)."""

    message = "invalid auth setting"
    reason = "invalid-auth-setting"


def hash_api_key(key: str) -> str:
    """The SHA-256 hex digest under which an API key is configured."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_api_key() -> str:
    """A fresh random API key (256 bits)."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def _checked_scopes(scopes: Iterable[str], name: str) -> frozenset[str]:
    found = frozenset(s.strip() for s in scopes if s.strip())
    bad = sorted(s for s in found if not re.fullmatch(SCOPE_PATTERN, s))
    if bad:
        raise AuthConfigError(f"API key {name!r}: {', '.join(map(repr, bad))} is not a scope (no spaces, quotes, \\)")
    return found


def api_key_line(name: str, key: str, scopes: Iterable[str] = ()) -> str:
    """The settings line that admits ``key`` as caller ``apikey:<name>`` with ``scopes``."""
    if not re.fullmatch(_KEY_NAME, name):
        raise AuthConfigError(f"API key name {name!r}: use 1 to 64 letters, digits, '_', '.' or '-'")
    line = f"{name}:{hash_api_key(key)}"
    wanted = ",".join(sorted(_checked_scopes(scopes, name)))
    return f"{line}:{wanted}" if wanted else line


@dataclass(frozen=True)
class ApiKey:
    """One configured API key: its caller name, its key's digest and its scopes."""

    name: str
    digest: bytes
    scopes: frozenset[str]

    @classmethod
    def parse(cls, line: str) -> ApiKey:
        """``name:sha256-hex[:scope,scope]``; ``AuthConfigError`` names what is wrong (never the digest)."""
        match = _KEY_LINE.match(line.strip())
        if match is None:
            name = line.split(":", 1)[0][:64]
            raise AuthConfigError(
                f"API key entry {name!r} is not 'name:sha256-hex-of-key[:scope,scope]' "
                "(name: letters, digits, _ . -; the digest: 64 hex digits)"
            )
        scopes = _checked_scopes((match["scopes"] or "").split(","), match["name"])
        return cls(match["name"], bytes.fromhex(match["digest"]), scopes)


class ApiKeyTable:
    """The configured API keys, matched by digest in constant time."""

    def __init__(self, keys: Sequence[ApiKey]) -> None:
        names = [k.name for k in keys]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise AuthConfigError(f"API key names must be unique: {', '.join(duplicated)}")
        self._keys = tuple(keys)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiKeyTable:
        """The keys of ``auth_api_keys`` and of the ``auth_api_keys_file`` lines (``#`` starts a comment)."""
        lines = list(settings.auth_api_keys)
        if settings.auth_api_keys_file is not None:
            lines += _key_file_lines(settings.auth_api_keys_file)
        return cls([ApiKey.parse(line) for line in lines])

    def __len__(self) -> int:
        return len(self._keys)

    def identify(self, presented: str) -> tuple[str, frozenset[str]]:
        """The name and scopes of the key ``presented`` is; ``AuthenticationError`` when no key matches."""
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: ApiKey | None = None
        for key in self._keys:  # every entry is compared, so the time taken says nothing about which matched
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            raise AuthenticationError("the API key is not valid")
        return found.name, found.scopes


def _key_file_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigError(f"cannot read the API key file {path}: {exc.strerror}") from exc
    return [line.split("#", 1)[0].strip() for line in text.splitlines() if line.split("#", 1)[0].strip()]
