"""Agent cards: built from a spec and the public base URL, served as precomputed documents.

A card is rendered (and, once signing is configured, signed) when it changes, never per
request: the served bytes, ``ETag`` and ``Last-Modified`` are fixed at build time.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentProvider,
    AgentSkill,
    SecurityRequirement,
    SecurityScheme,
)
from a2a.utils.constants import PROTOCOL_VERSION_1_0, TransportProtocol
from google.protobuf.struct_pb2 import Struct
from starlette.requests import Request
from starlette.responses import Response

from gateway.spec import AgentSpec

AGENT_CARD_PATH = "/.well-known/agent-card.json"
CARD_CACHE_CONTROL = "public, max-age=300"

CardSigner = Callable[[dict[str, Any]], dict[str, Any]]


STEP_SCOPES_EXTENSION_URI = "urn:switchboard:step-scopes:v1"
"""A workflow card's extension saying that its steps run as the caller, and what its participants need."""


@dataclass(frozen=True)
class CardSecurity:
    """What a card says about authentication: its schemes, the agent's requirements and each skill's.

    ``step_scopes`` (workflows, with auth on): each agent a run may call, at any depth, with the
    scopes a message to it needs; published as the ``STEP_SCOPES_EXTENSION_URI`` extension.
    """

    schemes: Mapping[str, SecurityScheme]
    requirements: tuple[SecurityRequirement, ...]
    skill_requirements: Mapping[str, tuple[SecurityRequirement, ...]] = field(default_factory=dict)
    step_scopes: Mapping[str, list[str]] | None = None


def step_scopes_extension(step_scopes: Mapping[str, list[str]]) -> AgentExtension:
    """The extension telling callers that every step is checked as theirs, and what the participants need."""
    scopes = sorted({scope for needed in step_scopes.values() for scope in needed})
    scoped = "; ".join(f"{agent} needs {' '.join(needed)}" for agent, needed in step_scopes.items() if needed)
    description = (
        "Each step of a run calls its agent as you, checked at run time as a direct call would be: a step you "
        "may not run fails the run with the reason (or goes to a declared fallback)."
    )
    params = Struct()
    params.update({"checked": "each step, as the caller, at run time", "scopes": scopes, "agents": dict(step_scopes)})
    return AgentExtension(
        uri=STEP_SCOPES_EXTENSION_URI,
        description=f"{description} {scoped}." if scoped else description,
        required=False,
        params=params,
    )


def agent_url(base_url: str, name: str) -> str:
    """Where agent ``name`` is served."""
    return f"{base_url}/agents/{name}"


def build_card(
    spec: AgentSpec,
    base_url: str,
    extra_interfaces: tuple[AgentInterface, ...] = (),
    security: CardSecurity | None = None,
) -> AgentCard:
    """The A2A card of ``spec``, pointing at this gateway (with ``security``'s schemes and requirements)."""
    url = agent_url(base_url, spec.name)
    interfaces = [
        AgentInterface(
            url=url, protocol_binding=TransportProtocol.JSONRPC.value, protocol_version=PROTOCOL_VERSION_1_0
        ),
        AgentInterface(
            url=url, protocol_binding=TransportProtocol.HTTP_JSON.value, protocol_version=PROTOCOL_VERSION_1_0
        ),
        *extra_interfaces,
    ]
    security = security or CardSecurity(schemes={}, requirements=())
    return AgentCard(
        name=spec.name,
        description=spec.description,
        version=spec.version,
        provider=AgentProvider(organization=spec.provider, url=base_url),
        supported_interfaces=interfaces,
        capabilities=AgentCapabilities(
            streaming=spec.capabilities.streaming,
            push_notifications=spec.capabilities.push_notifications,
            extensions=[step_scopes_extension(security.step_scopes)] if security.step_scopes is not None else [],
        ),
        security_schemes=dict(security.schemes),
        security_requirements=security.requirements,
        default_input_modes=spec.default_input_modes,
        default_output_modes=spec.default_output_modes,
        skills=[
            AgentSkill(
                id=s.id,
                name=s.name,
                description=s.description,
                tags=s.tags,
                examples=s.examples,
                input_modes=s.input_modes,
                output_modes=s.output_modes,
                security_requirements=security.skill_requirements.get(s.id, ()),
            )
            for s in spec.skills
        ],
    )


def _kid(signature: dict[str, Any]) -> str:
    padded = signature.get("protected", "") + "=" * (-len(signature.get("protected", "")) % 4)
    try:
        return str(json.loads(base64.urlsafe_b64decode(padded)).get("kid", ""))
    except (ValueError, AttributeError):
        return ""


@dataclass(frozen=True)
class CardDocument:
    """A card as served: its JSON, bytes and validators, computed once."""

    card: AgentCard
    body: dict[str, Any]
    content: bytes
    etag: str
    last_modified: float

    @classmethod
    def render(cls, card: AgentCard, modified_at: float, signer: CardSigner | None = None) -> CardDocument:
        """Render ``card`` (signing it when a signer is given)."""
        body = agent_card_to_dict(card)
        if signer is not None:
            body = signer(body)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        # The tag covers the content and which keys signed it, not the signature bytes (ES256 is
        # randomised): a key rotation changes the tag, so no client keeps a card signed by a retired key.
        unsigned = {k: v for k, v in body.items() if k != "signatures"}
        unsigned["kids"] = sorted(_kid(s) for s in body.get("signatures", []))
        digest = hashlib.sha256(json.dumps(unsigned, sort_keys=True).encode("utf-8")).hexdigest()[:32]
        return cls(card=card, body=body, content=content, etag=f'W/"{digest}"', last_modified=modified_at)

    def headers(self) -> dict[str, str]:
        """Caching validators sent with the card."""
        return {
            "ETag": self.etag,
            "Last-Modified": formatdate(self.last_modified, usegmt=True),
            "Cache-Control": CARD_CACHE_CONTROL,
        }

    def not_modified(self, request: Request) -> bool:
        """Whether the request's conditional headers say the client already has this card."""
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None:
            tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
            return "*" in tags or self.etag.removeprefix("W/") in tags
        since = request.headers.get("if-modified-since")
        if since:
            try:
                return int(self.last_modified) <= parsedate_to_datetime(since).timestamp()
            except (TypeError, ValueError):
                return False
        return False

    def response(self, request: Request) -> Response:
        """The card, or 304 when the client's copy is current."""
        if self.not_modified(request):
            return Response(status_code=304, headers=self.headers())
        return Response(self.content, media_type="application/json", headers=self.headers())
