"""The agent tools' list as it changes while the gateway runs, and who is told.

An agent's card can change after start: an ``mcp`` agent whose server answers late gets its skill
from the tool (``McpClientPool.keep_probing``), a remote agent's origin card changes. Its MCP tool
is then registered again from the new spec (``AgentTools.refresh``), and when its description or
arguments changed, clients that follow the list are told ``notifications/tools/list_changed``:

- 2025-11-25 sessions that listed the tools, on their standalone stream (their handshake says
  ``tools.listChanged``; ``advertise``). A session is forgotten when it ends, or when a
  notification to it fails or takes longer than ``SEND_TIMEOUT_S``.
- 2026-07-28 ``subscriptions/listen`` streams that asked for tool changes, through the SDK's bus.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware
from mcp.server.lowlevel.server import NotificationOptions, Server
from mcp.server.session import ServerSession
from mcp.server.subscriptions import SubscriptionBus, ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from gateway.bindings.mcp_runs import SEND_TIMEOUT_S, connection_key

logger = logging.getLogger(__name__)


def advertise(lowlevel: Server[Any]) -> None:
    """2025-11-25 handshakes say ``tools.listChanged``: ``ToolListChanges`` sends it.

    The SDK builds a session's capabilities with ``create_initialization_options()`` and no
    notification options (its HTTP session manager and ``run_stdio_async`` alike), so the default is set here.
    """
    create = lowlevel.create_initialization_options

    def with_tool_changes(
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> Any:
        options = notification_options or NotificationOptions(tools_changed=True)
        return create(options, experimental_capabilities, extensions)

    lowlevel.create_initialization_options = with_tool_changes  # type: ignore[method-assign]


class ToolListChanges:
    """Tells the clients that follow the tool list that it changed."""

    def __init__(self, bus: SubscriptionBus) -> None:
        self.bus = bus
        self._sessions: dict[str, ServerSession] = {}  # 2025 session key -> what sends to it
        self._group: TaskGroup | None = None

    def attach(self, group: TaskGroup | None) -> None:
        """Announce in ``group`` (the binding's, while it runs); None: nobody is connected to tell."""
        self._group = group

    def middleware(self) -> ServerMiddleware[Any]:
        """Middleware: a 2025-11-25 session that lists the tools is told when they change."""

        async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            if ctx.method == "tools/list" and ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
                self._sessions.setdefault(connection_key(ctx), ctx.session)
            return await call_next(ctx)

        return middleware

    def session_ended(self, session_id: str) -> None:
        """Forget a session that ended."""
        self._sessions.pop(session_id, None)

    def changed(self) -> None:
        """The tool list changed: tell its followers, in the background."""
        if self._group is not None:
            self._group.start_soon(self._announce)

    async def _announce(self) -> None:
        await self.bus.publish(ToolsListChanged())
        async with anyio.create_task_group() as group:
            for key, session in list(self._sessions.items()):
                group.start_soon(self._tell, key, session)

    async def _tell(self, key: str, session: ServerSession) -> None:
        try:
            with anyio.fail_after(SEND_TIMEOUT_S):
                await session.send_tool_list_changed()
        except Exception:
            logger.info("MCP session %s is no longer told of tool changes: a notification did not go out", key[:64])
            if self._sessions.get(key) is session:
                del self._sessions[key]
