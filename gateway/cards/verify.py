"""``switchboard card show|verify`` and ``switchboard keys``: inspect cards and manage signing keys."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from gateway.cards.build import AGENT_CARD_PATH
from gateway.cards.keys import KeyConfigError, KeyRing, SigningKey, load, retire, rotate
from gateway.cards.signing import (
    MAX_CARD_BYTES,
    CardVerificationError,
    JwksFetchError,
    TrustPolicy,
    fetch_jwks,
    verify_card_json,
)

FETCH_TIMEOUT_S = 10.0


class CardFetchError(Exception):
    """The card URL answered with an HTTP error instead of a card."""

    def __init__(self, url: str, status: int, phrase: str) -> None:
        super().__init__(f"GET {url} answered HTTP {status}{' ' + phrase if phrase else ''}")
        self.status = status


def card_url(url: str) -> str:
    """Accept an agent's base URL or its card URL."""
    return url if url.endswith(".json") else url.rstrip("/") + AGENT_CARD_PATH


async def fetch_card(url: str, headers: Mapping[str, str] | None = None) -> bytes:
    """The card's bytes exactly as served (verification must see these, not a re-serialisation).

    The whole fetch must end within ``FETCH_TIMEOUT_S`` (``TimeoutError``), and reading stops past
    ``MAX_CARD_BYTES``, as when the gateway fetches a peer's card.
    """
    target = card_url(url)
    async with (
        asyncio.timeout(FETCH_TIMEOUT_S),
        httpx.AsyncClient(timeout=FETCH_TIMEOUT_S, follow_redirects=False) as http,
        http.stream("GET", target, headers={"Accept": "application/json", **(headers or {})}) as response,
    ):
        if response.status_code != 200:
            raise CardFetchError(target, response.status_code, response.reason_phrase)
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_CARD_BYTES:
                raise CardVerificationError(
                    f"GET {target}: the card is larger than {MAX_CARD_BYTES} bytes", "malformed-json"
                )
    return body


def render_card(card: dict[str, Any], out: TextIO) -> None:
    """A readable summary of a card."""
    out.write(f"{card.get('name', '?')}  v{card.get('version', '?')}\n{card.get('description', '')}\n\n")
    for interface in card.get("supportedInterfaces", []):
        out.write(
            f"  {interface.get('protocolBinding', '?'):<10} {interface.get('protocolVersion', ''):<5} "
            f"{interface.get('url', '')}\n"
        )
    caps = card.get("capabilities", {})
    out.write(f"\n  streaming={caps.get('streaming', False)} push={caps.get('pushNotifications', False)}\n")
    for skill in card.get("skills", []):
        out.write(f"\n  skill {skill.get('id')}: {skill.get('description', '')}\n")
        for example in skill.get("examples", []):
            out.write(f"    e.g. {example}\n")
    out.write(f"\n  signatures: {len(card.get('signatures', []))}\n")


async def _pinned_jwks(source: str | None) -> dict[str, Any] | None:
    if source is None:
        return None
    if "://" in source:
        return await fetch_jwks(source)
    loaded: dict[str, Any] = json.loads(await asyncio.to_thread(Path(source).read_text, encoding="utf-8"))
    return loaded


async def show(url: str, headers: Mapping[str, str] | None = None) -> int:
    """Print a card readably."""
    try:
        raw = await fetch_card(url, headers)
        card = json.loads(raw)
    except (httpx.HTTPError, CardFetchError, CardVerificationError, json.JSONDecodeError, TimeoutError) as exc:
        sys.stderr.write(f"switchboard: cannot read card at {card_url(url)}: {exc or 'no answer in time'}\n")
        return 2
    render_card(card, sys.stdout)
    return 0


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``."""
    parts = urlsplit(card_url(url))
    return f"{parts.scheme}://{parts.netloc}"


UNTRUSTED_HINT = (
    "  hint: nothing says which keys to trust. Pin them with --jwks URL|FILE, allow their origin with "
    "--allow-origin ORIGIN, or pass --trust-card-origin to trust the keys the card's own origin ({origin}) "
    "serves (this proves the card is unchanged since that server signed it, not who runs the server)\n"
)


async def verify(
    url: str,
    jwks: str | None,
    allow_origins: Sequence[str],
    trust_card_origin: bool = False,
    headers: Mapping[str, str] | None = None,
) -> int:
    """Verify a card's signatures; exit 0 when at least one verifies under the trust policy.

    Trust comes from ``jwks`` (pinned keys), ``allow_origins`` (origins whose ``jku`` may be
    fetched), or, only when asked, the card's own origin.
    """
    origins = (*allow_origins, origin_of(url)) if trust_card_origin else tuple(allow_origins)
    try:
        raw = await fetch_card(url, headers)
        policy = TrustPolicy(jwks=await _pinned_jwks(jwks), allowed_jku_origins=origins)
        verified = await verify_card_json(raw, policy)
    except CardFetchError as exc:
        sys.stdout.write(f"FAILED (http-{exc.status}): {exc}\n")
        return 1
    except CardVerificationError as exc:
        sys.stdout.write(f"FAILED ({exc.code}): {exc.reason}\n")
        if exc.code == "untrusted-jku" and not jwks and not allow_origins and not trust_card_origin:
            sys.stdout.write(UNTRUSTED_HINT.format(origin=origin_of(url)))
        return 1
    except (httpx.HTTPError, JwksFetchError, OSError, json.JSONDecodeError, TimeoutError) as exc:
        sys.stdout.write(f"FAILED (unavailable): {exc or 'no answer in time'}\n")
        return 1
    sys.stdout.write(f"OK: {verified.card.get('name')} signed by {', '.join(verified.kids)}\n")
    return 0


NO_SHARED_RING = (
    "switchboard keys: no shared key ring in this database yet; the first replica to start on it makes one "
    "from its data dir's keys, as does 'switchboard keys rotate --database-url ...' (from --data-dir {data_dir})\n"
)

# A gateway reads its data dir's keys as it starts; only the shared ring is followed while running.
RESTART_HINT = (
    "switchboard keys: a gateway running on {data_dir} signs and publishes these keys once restarted "
    "(replicas sharing a ring on PostgreSQL follow at once: --database-url)\n"
)


def keys(data_dir: Path, action: str, kid: str | None, database_url: str = "") -> int:
    """List, rotate or retire the signing keys: the replicas' shared ring on PostgreSQL, else ``data_dir``'s.

    A rotate or retire is recorded in the audit trail of the same database (``data_dir``'s SQLite one
    without ``database_url``).
    """
    if action == "retire" and not kid:
        sys.stderr.write("switchboard: keys retire needs a KID\n")
        return 2
    where = "the database" if database_url else str(data_dir)
    try:
        if database_url:
            ring = asyncio.run(_shared_keys(database_url, action, kid or "", data_dir))
        elif action == "rotate":
            ring = rotate(data_dir)
        elif action == "retire":
            ring = retire(data_dir, kid or "")
        else:
            ring = KeyRing.load_or_create(data_dir)
    except KeyError:
        sys.stderr.write(f"switchboard: no signing key {kid!r} in {where}; 'switchboard keys' lists them\n")
        return 2
    except KeyConfigError as exc:
        sys.stderr.write(f"switchboard: {exc}\n")
        return 2
    if not database_url and action in ("rotate", "retire"):
        from gateway.telemetry.audit_cli import record_admin

        record_admin(data_dir, f"keys.{action}", kid or "")
        sys.stderr.write(RESTART_HINT.format(data_dir=data_dir))
    if not ring.keys:  # only a database without a ring: a data dir's list makes a key
        sys.stderr.write(NO_SHARED_RING.format(data_dir=data_dir))
    for key in ring.keys:
        state = "retired" if key.retired else "active"
        until = f" until {key.not_after.isoformat()}" if key.not_after else ""
        sys.stdout.write(f"{key.kid}  {key.alg:<6} {state}{until}\n")
    return 0


async def _shared_keys(database_url: str, action: str, kid: str, data_dir: Path) -> KeyRing:
    """``keys`` on the shared ring (``gateway.cards.shared_keys``): every running replica follows at once.

    One session, no runner lock, and only the two tables a change writes are made (``list`` makes
    none): a full migrate would lock the replicas' task tables. A rotate on a database with no ring
    yet starts it with ``data_dir``'s keys, so the kid cards are signed with now stays published.
    """
    from gateway.cards import shared_keys
    from gateway.store.postgres import PostgresDatabase
    from gateway.telemetry.audit_cli import record_admin_on

    db = await PostgresDatabase.connect(database_url, min_size=1, max_size=1, runs_tasks=False)
    try:
        existed = await shared_keys.ring_exists(db)
        if action == "list" or (action == "retire" and not existed):
            if action == "retire":
                raise KeyError(kid)
            return await shared_keys.load_ring(db) if existed else KeyRing()
        await db.migrate(("signing_keys", "audit"))
        if action == "rotate":
            local = () if existed else load(data_dir).keys  # private keys go to the database only to start it
            ring = await shared_keys.rotate(db, local=local)
            if not existed:
                _say_adopted(shared_keys.adopted(local), data_dir)
        else:
            ring = await shared_keys.retire(db, kid)
        await record_admin_on(db, f"keys.{action}", kid)
        return ring
    finally:
        await db.close()


def _say_adopted(adopted: Sequence[SigningKey], data_dir: Path) -> None:
    if adopted:
        kids = ", ".join(key.kid for key in adopted)
        sys.stderr.write(f"switchboard keys: the shared key ring starts with the keys of {data_dir}: {kids}\n")
    else:
        sys.stderr.write(f"switchboard keys: no keys in {data_dir} to adopt; the shared key ring starts new\n")
