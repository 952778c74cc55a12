"""``switchboard mcp``: the gateway in-process, its MCP tools on stdin/stdout.

It builds the same app ``serve`` builds and runs its lifespan (database, agents, signing keys)
without any network listener (no HTTP, no gRPC), then serves the MCP server on stdio until the client closes stdin.
Stdout carries MCP messages only; logs go to stderr.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.applications import Starlette

from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.serve import configure_logging
from gateway.settings import Settings

logger = logging.getLogger("gateway")


async def serve_stdio(app: Starlette) -> None:
    """Run ``app``'s lifespan and its MCP server on stdin/stdout."""
    async with app.router.lifespan_context(app):
        await app.state.mcp.serve_stdio()


def run_stdio(settings: Settings) -> int:
    """Serve MCP on stdio until the client hangs up; returns the process exit code."""
    configure_logging(settings.log_level)
    try:
        app = create_app(settings, serve_grpc=False)  # stdio only: no network listener at all
    except GatewayError as exc:
        logger.error("cannot start: %s", exc.detail)
        return 2
    logger.info("serving MCP on stdio with %d agent(s)", len(app.state.gateway.agents))
    try:
        asyncio.run(serve_stdio(app))
    except GatewayError as exc:
        logger.error("cannot start: %s", exc.detail)
        return 2
    return 0
