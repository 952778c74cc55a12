"""``BindingHost``: what the protocol bindings use of the running gateway.

The bindings are the edge; they depend on this small protocol, never on ``gateway.app``, whose
``Gateway`` satisfies it (so the app can import the bindings without an import circle).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from gateway.auth.policy import AuthPolicy
from gateway.hosting.hosted import HostedAgent
from gateway.settings import Settings
from gateway.spec import AgentSpec


class BindingHost(Protocol):
    """The parts of a running gateway a binding serves from."""

    @property
    def settings(self) -> Settings:
        """The process settings."""
        ...

    @property
    def registry(self) -> Iterable[AgentSpec]:
        """Every hosted agent's spec."""
        ...

    @property
    def agents(self) -> Mapping[str, HostedAgent]:
        """The hosted agents by name, as served."""
        ...

    @property
    def auth(self) -> AuthPolicy:
        """The inbound auth policy."""
        ...
