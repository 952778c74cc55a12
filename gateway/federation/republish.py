"""A remote agent's card as this gateway serves it: ``republish_card``, the one place it is rewritten.

The served card is the origin's content (description, version, provider, skills, modes) with
this gateway's name for the agent, this gateway's interfaces (so every call comes here, whatever
binding the caller picks) and this gateway's security, signed by ``Gateway.render`` with this
gateway's keys like every other card. What the origin said that only holds at the origin is
dropped: its interfaces, security schemes and requirements, extended card, extensions (whose
headers are not relayed) and signatures.

AgentCard has no metadata member, so the origin is recorded in a card extension,
``urn:switchboard:federation:origin:v1``, never ``required``, whose ``params`` hold
``origin_url`` (the card's URL at the origin), ``peer``, ``status`` (``verified``, or why not),
``origin_signatures`` (the origin's JWS entries exactly as received, for audit: together with the
origin's card they verify against the origin's keys) and ``origin_extensions`` (the URIs dropped).
"""

from __future__ import annotations

from typing import Any

from a2a.types.a2a_pb2 import AgentCard

from gateway.federation.remote_cards import TrustedCard

ORIGIN_EXTENSION_URI = "urn:switchboard:federation:origin:v1"


def republish_card(origin: TrustedCard | None, local: AgentCard, origin_url: str, peer: str, status: str) -> AgentCard:
    """The card to serve for a remote agent: ``origin``'s content at ``local``'s name, interfaces and security.

    ``local`` is the card this gateway built for the agent (from its spec); it is served, with the
    origin extension, while no verified origin card is at hand (``origin`` is None).
    """
    card = AgentCard()
    card.CopyFrom(origin.card if origin is not None else local)
    card.name = local.name
    del card.supported_interfaces[:]
    card.supported_interfaces.extend(local.supported_interfaces)
    card.security_schemes.clear()
    for name, scheme in local.security_schemes.items():
        card.security_schemes[name].CopyFrom(scheme)
    del card.security_requirements[:]
    card.security_requirements.extend(local.security_requirements)
    local_skills = {skill.id: skill for skill in local.skills}
    for skill in card.skills:
        del skill.security_requirements[:]
        if skill.id in local_skills:
            skill.security_requirements.extend(local_skills[skill.id].security_requirements)
    del card.signatures[:]
    dropped = [extension.uri for extension in card.capabilities.extensions]
    card.capabilities.CopyFrom(local.capabilities)
    card.capabilities.extended_agent_card = False
    own = [extension for extension in local.capabilities.extensions if extension.uri != ORIGIN_EXTENSION_URI]
    del card.capabilities.extensions[:]
    card.capabilities.extensions.extend(own)
    params: dict[str, Any] = {
        "origin_url": origin_url,
        "peer": peer,
        "status": "verified" if origin is not None else status,
        "origin_signatures": list(origin.json.get("signatures", [])) if origin is not None else [],
        "origin_extensions": dropped if origin is not None else [],
    }
    extension = card.capabilities.extensions.add(
        uri=ORIGIN_EXTENSION_URI,
        description="Served by this gateway on behalf of the origin agent; the origin's signatures are kept for audit.",
        required=False,
    )
    extension.params.update(params)
    return card
