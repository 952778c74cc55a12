"""Resolves an agent's ``runtime.kind`` to the adapter that builds its executor.

Adapters are named by import string, as uvicorn names its protocol classes, so a runtime
(and its optional dependencies) is imported only when an agent uses it. Each builder gets the
agent's spec and a ``Host``: what the gateway offers its agents (settings, the database, the
other agents' request handlers, the shared circuit breakers). Executors resolve other agents
through the host at run time, not at build time, so a workflow may name agents built after it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Protocol, cast, runtime_checkable

from a2a.server.agent_execution import AgentExecutor
from a2a.server.request_handlers import RequestHandler

from gateway.auth.policy import AuthPolicy
from gateway.errors import RuntimeLoadError, UnknownAgentError
from gateway.federation.hub import Federation
from gateway.hosting.local_tasks import LocalRunner
from gateway.hosting.mcp_clients import McpClientPool
from gateway.hosting.work_items import WorkItems
from gateway.orchestration.api import AgentInfo
from gateway.orchestration.breaker import BreakerBoard
from gateway.settings import Settings
from gateway.spec import AgentSpec
from gateway.store.database import Database
from gateway.store.leases import LeaseBook

ADAPTERS: dict[str, str] = {
    "python": "adapters.python:build",
    "llm": "adapters.llm:build",
    "workflow": "adapters.workflow:build",
    "a2a": "adapters.a2a_remote:build",
    "mcp": "adapters.mcp:build",
    "command": "adapters.command:build",
    "langgraph": "adapters.langgraph:build",
    "openai-agents": "adapters.openai_agents:build",
    "crewai": "adapters.crewai:build",
    "adk": "adapters.adk:build",
    "agent-framework": "adapters.agent_framework:build",
}
EXTRAS: dict[str, str] = {
    "langgraph": "langgraph",
    "openai-agents": "openai-agents",
    "crewai": "crewai",
    "adk": "adk",
    "agent-framework": "agent-framework",
}
"""The optional extra (``pip install 'switchboard-gateway[<extra>]'``) a framework runtime needs."""


class Host(Protocol):
    """What an agent's executor may use of the gateway hosting it."""

    @property
    def settings(self) -> Settings:
        """The process settings."""
        ...

    @property
    def db(self) -> Database:
        """The gateway's database (tasks, run checkpoints); open once the app has started."""
        ...

    @property
    def breakers(self) -> BreakerBoard:
        """One circuit breaker per agent, shared by every run."""
        ...

    @property
    def auth(self) -> AuthPolicy:
        """The inbound auth policy: every step and in-process reuse is checked with it as its caller's."""
        ...

    @property
    def registry(self) -> Iterable[AgentSpec]:
        """Every hosted agent's spec."""
        ...

    @property
    def stopping(self) -> bool:
        """Whether the gateway is shutting down (a step that ends now ended because of it)."""
        ...

    @property
    def leases(self) -> LeaseBook | None:
        """On PostgreSQL, the leases of the workflow runs running here (``gateway.store.leases``); else None."""
        ...

    @property
    def federation(self) -> Federation:
        """The peers and remote agents (``a2a`` agents relay through it)."""
        ...

    @property
    def mcp_clients(self) -> McpClientPool:
        """The gateway's MCP client sessions, one per server, closed when it stops."""
        ...

    @property
    def work_items(self) -> WorkItems | None:
        """On PostgreSQL, the work items shared by the replicas (``gateway.hosting.work_items``); else None."""
        ...

    def handler(self, name: str) -> RequestHandler:
        """The A2A request handler of hosted agent ``name``; ``UnknownAgentError`` when none."""
        ...

    def local_runner(self, name: str) -> LocalRunner | None:
        """Hosted agent ``name``'s in-process runner (``gateway.hosting.local_tasks``), or None when it has none."""
        ...

    def spec(self, name: str) -> AgentSpec | None:
        """The spec of hosted agent ``name``, or None."""
        ...

    def describe(self, name: str) -> AgentInfo:
        """What the card of agent ``name`` says about it; ``UnknownAgentError`` when none."""
        ...


class StandaloneHost:
    """A ``Host`` with no other agents and no database, for building one agent outside a gateway."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings if settings is not None else Settings()
        self._breakers = BreakerBoard()
        self._federation = Federation(agents_dir=self._settings.agents)
        self._mcp_clients = McpClientPool()

    @property
    def settings(self) -> Settings:
        """The settings given (default: read from the environment, as the CLI would)."""
        return self._settings

    @property
    def db(self) -> Database:
        """There is none."""
        raise RuntimeError("a standalone agent has no database")

    @property
    def breakers(self) -> BreakerBoard:
        """Breakers of this host alone."""
        return self._breakers

    @property
    def auth(self) -> AuthPolicy:
        """No auth: a standalone agent is called directly."""
        return AuthPolicy.disabled()

    @property
    def registry(self) -> Iterable[AgentSpec]:
        """There are no other agents."""
        return ()

    @property
    def stopping(self) -> bool:
        """Never: a standalone host does not shut down."""
        return False

    @property
    def leases(self) -> LeaseBook | None:
        """None: no other replica could run its work."""
        return None

    @property
    def work_items(self) -> WorkItems | None:
        """None: no other replica could run its work."""
        return None

    @property
    def federation(self) -> Federation:
        """No peers (a remote agent with its own trust settings can still be built)."""
        return self._federation

    @property
    def mcp_clients(self) -> McpClientPool:
        """Sessions of this host alone (``aclose`` them when done)."""
        return self._mcp_clients

    def handler(self, name: str) -> RequestHandler:
        """There are no other agents."""
        raise UnknownAgentError(f"no agent named {name!r} is hosted here")

    def local_runner(self, name: str) -> LocalRunner | None:
        """There are no other agents."""
        return None

    def spec(self, name: str) -> AgentSpec | None:
        """There are no other agents."""
        return None

    def describe(self, name: str) -> AgentInfo:
        """There are no other agents."""
        raise UnknownAgentError(f"no agent named {name!r} is hosted here")


def agent_info(spec: AgentSpec) -> AgentInfo:
    """What a pattern may know of an agent, from its spec (the content of its card)."""
    return AgentInfo(
        name=spec.name,
        description=spec.description,
        skills=tuple(skill.name for skill in spec.skills),
        tags=tuple(dict.fromkeys(tag for skill in spec.skills for tag in skill.tags)),
        examples=tuple(example for skill in spec.skills for example in skill.examples),
    )


@runtime_checkable
class DescribesAgent(Protocol):
    """An executor that completes its agent's spec from what it runs (an ``mcp`` agent's skill, from its tool)."""

    def describe(self, spec: AgentSpec) -> AgentSpec:
        """``spec`` as the card should show it."""
        ...


Builder = Callable[[AgentSpec, Host], AgentExecutor]


def build_executor(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for ``spec``, built by the adapter of its runtime kind."""
    target = ADAPTERS.get(spec.runtime.kind)
    if target is None:
        raise RuntimeLoadError(f"{spec.name}: runtime '{spec.runtime.kind}' is not available in this version")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(spec.runtime.kind)
        if exc.name == module_name:
            raise RuntimeLoadError(f"{spec.where}: runtime '{spec.runtime.kind}' is not available") from exc
        if extra is None:
            raise
        raise RuntimeLoadError(
            f"{spec.where}: runtime '{spec.runtime.kind}' needs its framework ({exc}); "
            f"install it with: pip install 'switchboard-gateway[{extra}]'"
        ) from exc
    builder = cast(Builder, getattr(module, attr))
    return builder(spec, host)
