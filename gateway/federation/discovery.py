"""Importing a peer's agents at start-up: its api-catalog, each card verified, a spec for each agent.

``import: all`` takes every card the peer's ``/.well-known/api-catalog`` (RFC 9727 linkset) lists
on the peer's own origin, and imports those that verify; a card that does not verify is skipped,
with the reason logged, so a forged card can never add an agent. ``import: [names]`` takes those
agents, found in the catalog by title or else at ``<base>/agents/<name>/.well-known/agent-card.json``;
each is hosted even when its card does not verify yet (out of service, with the reason, until it
does), so workflows naming it still load. Each agent is hosted as ``<prefix><name>``.

Every peer, and every card of a peer, is fetched at once, and the whole import ends by one
deadline (the ``peer_discovery_timeout_s`` setting). A card not fetched by then (or that could
not be fetched), from either kind of import, is hosted out of service and comes in when it
verifies (the gateway's background check), so a slow peer never holds the gateway's start-up.
Only ``import: all`` of a peer whose api-catalog was not read in time imports nothing: which
agents it has is not known. Each read is bounded as a whole by the peer's ``timeout_s``, and the
catalog is read up to ``MAX_CATALOG_BYTES`` only.

The spec of an imported agent is made from its card (description, version, provider, skills,
modes). Its card, as this gateway serves it, is the origin's (``republish``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import ValidationError

from gateway.cards.build import AGENT_CARD_PATH
from gateway.federation.peers import Peer, RemoteAgent
from gateway.spec import NAME_PATTERN, A2ARuntime, AgentSpec, PeerSpec

logger = logging.getLogger(__name__)

API_CATALOG_PATH = "/.well-known/api-catalog"
MAX_CATALOG_BYTES = 1024 * 1024
_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://\S*", re.IGNORECASE)
_NAME = re.compile(NAME_PATTERN)
_SKILL_ID = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Imported:
    """An agent imported from a peer: its spec here and its remote side."""

    spec: AgentSpec
    remote: RemoteAgent


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _no_urls(text: str) -> str:
    # A spec's text is this gateway's (routing, MCP tool descriptions); the served card keeps the origin's words.
    return _URL.sub("<link>", text).strip()


def local_name(prefix: str, remote_name: str) -> str:
    """The name a peer's agent is hosted under here (``""`` when it cannot be made a valid name)."""
    slug = re.sub(r"[^a-z0-9-]+", "-", remote_name.lower()).strip("-")
    name = f"{prefix}{slug}"
    return name if _NAME.match(name) else ""


def spec_from_card(
    card: dict[str, Any], name: str, runtime: A2ARuntime, peer: str, scopes: Sequence[str] = ()
) -> AgentSpec:
    """The spec of a remote agent, from its verified card (``ValidationError`` when the card cannot be one).

    ``scopes`` are what a caller here needs to call it: the peer's ``scopes`` setting, never the card's words.
    """
    skills = []
    for index, skill in enumerate(card.get("skills") or []):
        if not isinstance(skill, dict):
            continue
        skill_id = _SKILL_ID.sub("-", str(skill.get("id") or f"skill-{index}")) or f"skill-{index}"
        skills.append(
            {
                "id": skill_id,
                "name": str(skill.get("name") or skill_id),
                "description": _no_urls(str(skill.get("description") or skill.get("name") or skill_id)),
                "tags": [str(t) for t in skill.get("tags") or []] or [skill_id],
                "examples": [_no_urls(str(e)) for e in skill.get("examples") or []],
                "input_modes": [str(m) for m in skill.get("inputModes") or []],
                "output_modes": [str(m) for m in skill.get("outputModes") or []],
            }
        )
    if not skills:
        skills = [{"id": "remote", "name": name, "description": f"the remote agent {name}", "tags": ["remote"]}]
    provider = card.get("provider")
    provider = provider if isinstance(provider, dict) else {}
    values: dict[str, Any] = {
        "format": 1,
        "name": name,
        "description": _no_urls(str(card.get("description") or "")) or f"Remote agent of peer {peer}.",
        "version": _no_urls(str(card.get("version") or "1.0.0")) or "1.0.0",
        "provider": _no_urls(str(provider.get("organization") or peer)) or peer,
        "skills": skills,
        "runtime": runtime.model_dump(),
        "scopes": list(scopes),
    }
    if card.get("defaultInputModes"):
        values["default_input_modes"] = [str(m) for m in card["defaultInputModes"]]
    if card.get("defaultOutputModes"):
        values["default_output_modes"] = [str(m) for m in card["defaultOutputModes"]]
    return AgentSpec.model_validate(values)


def placeholder_spec(
    name: str, runtime: A2ARuntime, peer: str, remote_name: str, scopes: Sequence[str] = ()
) -> AgentSpec:
    """The spec of a named remote agent whose card has not verified (yet); ``scopes`` as ``spec_from_card``."""
    return AgentSpec.model_validate(
        {
            "format": 1,
            "name": name,
            "description": f"Agent {remote_name} of peer {peer}; its card has not been verified yet.",
            "provider": peer,
            "skills": [
                {"id": "remote", "name": remote_name, "description": f"{remote_name} of {peer}", "tags": [peer]}
            ],
            "runtime": runtime.model_dump(),
            "scopes": list(scopes),
        }
    )


async def _read_catalog(http: httpx.AsyncClient, url: str) -> bytes:
    headers = {"Accept": "application/linkset+json, application/json"}
    async with http.stream("GET", url, headers=headers, follow_redirects=False) as response:
        response.raise_for_status()
        body = b""
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > MAX_CATALOG_BYTES:  # stop reading: the rest is never downloaded
                raise ValueError(f"{url}: the catalog is larger than {MAX_CATALOG_BYTES} bytes")
    return body


async def catalog(http: httpx.AsyncClient, base_url: str, timeout_s: float = 30.0) -> list[tuple[str, str]]:
    """``(title, card URL)`` of each card the peer's api-catalog lists on the peer's own origin.

    The whole read must end within ``timeout_s`` (``TimeoutError``) and stops at ``MAX_CATALOG_BYTES``
    (``ValueError``).
    """
    url = base_url.rstrip("/") + API_CATALOG_PATH
    async with asyncio.timeout(timeout_s):
        body = json.loads(await _read_catalog(http, url))
    found: list[tuple[str, str]] = []
    for entry in body.get("linkset", []) if isinstance(body, dict) else []:
        for item in entry.get("item", []) if isinstance(entry, dict) else []:
            if not isinstance(item, dict) or not isinstance(item.get("href"), str):
                continue
            href = urljoin(url, item["href"])
            if _origin(href) != _origin(base_url):
                logger.warning("peer catalog %s lists %s on another origin; skipped", url, href)
                continue
            found.append((str(item.get("title") or ""), href))
    return found


def _convention(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/agents/{name}{AGENT_CARD_PATH}"


async def import_peer(
    spec: PeerSpec, peer: Peer, http: httpx.AsyncClient, deadline: float | None = None
) -> list[Imported]:
    """The agents ``spec`` imports from its peer, each card fetched and verified once, all by ``deadline``.

    ``deadline`` is in the running loop's time; a card still being fetched then is left for the
    gateway's background check (its agent hosted out of service until it verifies).
    """
    try:
        async with asyncio.timeout_at(deadline):
            listed = await catalog(http, spec.base_url, peer.timeout_s)
    except (httpx.HTTPError, ValueError, TimeoutError) as exc:
        listed = []
        level = logging.ERROR if spec.import_ == "all" else logging.WARNING
        problem = f"{type(exc).__name__}: {exc}" if str(exc) else f"no whole answer within {peer.timeout_s} s"
        logger.log(level, "peer %s: cannot read its api-catalog at %s: %s", spec.name, spec.base_url, problem)
    if spec.import_ == "all":
        wanted = [(title or href, href) for title, href in listed]
    else:
        by_title = {title: href for title, href in listed if title}
        wanted = [(name, by_title.get(name) or _convention(spec.base_url, name)) for name in spec.import_]
    found = await asyncio.gather(
        *(_import_one(spec, peer, http, remote_name, card_url, deadline) for remote_name, card_url in wanted)
    )
    return [entry for entry in found if entry is not None]


async def _import_one(
    spec: PeerSpec, peer: Peer, http: httpx.AsyncClient, remote_name: str, card_url: str, deadline: float | None
) -> Imported | None:
    name = local_name(spec.local_prefix, remote_name)
    if not name:
        logger.error("peer %s: agent %r cannot be hosted here (no valid local name); skipped", spec.name, remote_name)
        return None
    runtime = A2ARuntime(kind="a2a", card_url=card_url, peer=spec.name)
    remote = RemoteAgent.create(name, card_url, peer)
    try:
        async with asyncio.timeout_at(deadline):
            await remote.source.refresh(http)
    except TimeoutError:
        logger.warning(
            "peer %s: the card of %s did not verify by the start-up deadline; %s is hosted out of service "
            "and comes in when it verifies",
            spec.name,
            remote_name,
            name,
        )
    trusted = remote.source.trusted
    if trusted is None and spec.import_ == "all" and remote.source.health == "untrusted":
        logger.error("peer %s: agent %s not imported: %s", spec.name, remote_name, remote.source.problem)
        return None
    try:
        agent = (
            spec_from_card(trusted.json, name, runtime, spec.name, spec.scopes)
            if trusted is not None
            else placeholder_spec(name, runtime, spec.name, remote_name, spec.scopes)
        )
    except ValidationError as exc:
        logger.error("peer %s: agent %s not imported: its card cannot be an agent here: %s", spec.name, name, exc)
        return None
    logger.info("peer %s: imported %s as %s (%s)", spec.name, remote_name, name, remote.source.health)
    return Imported(spec=agent, remote=remote)
