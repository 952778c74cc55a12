"""Switchboard: a protocol gateway for multi-agent systems.

The packages, from the edge inwards (no module imports another that imports it back, directly
or not: ``tests/test_import_circles.py``):

- ``cli``, ``client``, ``serve``, ``mcp_stdio``: the ``switchboard`` command, its A2A/MCP client side, the
  server process over HTTP and gRPC, and ``switchboard mcp`` over stdio;
- ``app``: ``create_app(settings)``, the Starlette app and the one lifespan that owns every resource;
- ``bindings/``: the protocol edge only (A2A JSON-RPC/REST in ``a2a_http``, gRPC in ``a2a_grpc``,
  MCP in ``mcp_*``), serving from ``BindingHost``, a small protocol of what it needs of the gateway;
- ``auth/``: inbound identity and policy (API keys, OAuth JWTs, scopes per agent and skill, guards per wire);
- ``orchestration/``: the workflow engine and one module per pattern, each found as a user's own
  pattern is, through the ``switchboard.patterns`` entry points (``catalog``);
- ``federation/``: peers, trust, card import and republishing, relays and hop limits;
- ``hosting/``: how an agent runs as A2A tasks (registry, runtimes, executor, local tasks);
- ``cards/``: building, signing and verifying cards, and the signing keys;
- ``push/``: push notifications through a durable outbox;
- ``store/``: SQLite and PostgreSQL (tasks, run checkpoints, push configs, outbox);
- ``agents/``: the bundled offline agents;
- ``ui/``: the web dashboard at ``/ui`` (static pages over A2A, and a read-only owner-isolated JSON API);
- ``errors``, ``settings``, ``spec`` (the agent-file format), ``runtime`` (the contract a ``python``
  agent is written against), ``logs``, ``telemetry``, ``testing``: shared by all of the above.
"""

from gateway.telemetry import configure_sdk_tracing, skip_disabled_sdk_spans

configure_sdk_tracing()  # before any gateway module imports a2a-sdk, which reads the switch once
skip_disabled_sdk_spans()  # likewise before: the SDK decorates its methods as its modules load
