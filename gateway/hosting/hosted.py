"""``HostedAgent``: one agent as this gateway serves it."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.cards.build import CardDocument
from gateway.hosting.local_tasks import LocalRequestHandler
from gateway.spec import AgentSpec


@dataclass
class HostedAgent:
    """One agent as served: its spec, card and request handler."""

    spec: AgentSpec
    card: CardDocument
    handler: LocalRequestHandler
