"""``switchboard card show|verify`` and ``switchboard keys``: inspect cards and manage signing keys."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import httpx

from gateway.cards import AGENT_CARD_PATH
from gateway.keys import KeyConfigError, KeyRing, retire, rotate
from gateway.signing import CardVerificationError, JwksFetchError, TrustPolicy, fetch_jwks, verify_card_json


def card_url(url: str) -> str:
    """Accept an agent's base URL or its card URL."""
    return url if url.endswith(".json") else url.rstrip("/") + AGENT_CARD_PATH


async def fetch_card(url: str) -> bytes:
    """The card's bytes exactly as served (verification must see these, not a re-serialisation)."""
    async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as http:
        response = await http.get(card_url(url), headers={"Accept": "application/json"})
    if response.status_code != 200:
        raise CardVerificationError(f"GET {card_url(url)} answered HTTP {response.status_code}", "malformed-json")
    return response.content


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


async def show(url: str) -> int:
    """Print a card readably."""
    try:
        raw = await fetch_card(url)
        card = json.loads(raw)
    except (httpx.HTTPError, CardVerificationError, json.JSONDecodeError) as exc:
        sys.stderr.write(f"switchboard: cannot read card at {card_url(url)}: {exc}\n")
        return 2
    render_card(card, sys.stdout)
    return 0


async def verify(url: str, jwks: str | None, allow_origins: Sequence[str]) -> int:
    """Verify a card's signatures; exit 0 when at least one verifies under the trust policy."""
    try:
        raw = await fetch_card(url)
        policy = TrustPolicy(jwks=await _pinned_jwks(jwks), allowed_jku_origins=tuple(allow_origins))
        verified = await verify_card_json(raw, policy)
    except CardVerificationError as exc:
        sys.stdout.write(f"FAILED ({exc.code}): {exc.reason}\n")
        return 1
    except (httpx.HTTPError, JwksFetchError, OSError, json.JSONDecodeError) as exc:
        sys.stdout.write(f"FAILED (unavailable): {exc}\n")
        return 1
    sys.stdout.write(f"OK: {verified.card.get('name')} signed by {', '.join(verified.kids)}\n")
    return 0


def keys(data_dir: Path, action: str, kid: str | None) -> int:
    """List, rotate or retire the signing keys in ``data_dir``."""
    try:
        if action == "rotate":
            ring = rotate(data_dir)
        elif action == "retire":
            if not kid:
                sys.stderr.write("switchboard: keys retire needs a KID\n")
                return 2
            ring = retire(data_dir, kid)
        else:
            ring = KeyRing.load_or_create(data_dir)
    except (KeyConfigError, KeyError) as exc:
        sys.stderr.write(f"switchboard: {exc}\n")
        return 2
    for key in ring.keys:
        state = "retired" if key.retired else "active"
        until = f" until {key.not_after.isoformat()}" if key.not_after else ""
        sys.stdout.write(f"{key.kid}  {key.alg:<6} {state}{until}\n")
    return 0
