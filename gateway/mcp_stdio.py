"""``switchboard mcp``: the gateway in-process, its MCP tools on stdin/stdout.

It builds the same app ``serve`` builds and runs its lifespan (database, agents, signing keys)
without any network listener (no HTTP, no gRPC), then serves the MCP server on stdio until the client closes stdin.
Stdout carries MCP messages only: before any agent is loaded, the process's stdout is kept for the
transport alone and file descriptor 1 (so ``sys.stdout`` too) points at stderr, so what agent code
prints, from Python, from C or from a child process, goes to stderr with the logs instead of
corrupting the JSON-RPC stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import BinaryIO

from starlette.applications import Starlette

from gateway.app import create_app
from gateway.errors import GatewayError
from gateway.serve import configure_logging
from gateway.settings import Settings

logger = logging.getLogger("gateway")


def keep_stdout_for_messages() -> BinaryIO | None:
    """The process's stdout, for MCP messages alone; whatever else is written to stdout from now on goes to stderr.

    None when stdout is no file descriptor to move (it is left as it is).
    """
    try:
        sys.stdout.flush()
        wire = os.dup(1)
        os.dup2(2, 1)
    except (OSError, ValueError):
        return None
    sys.stdout = sys.stderr  # Python's prints in order with the log lines, not in a buffer of their own
    return os.fdopen(wire, "wb")  # buffered: a pipe may take a long message in parts; the transport flushes each


async def serve_stdio(app: Starlette, stdout: BinaryIO | None = None) -> None:
    """Run ``app``'s lifespan and its MCP server on stdin and ``stdout`` (default: the process's stdout)."""
    async with app.router.lifespan_context(app):
        await app.state.mcp.serve_stdio(stdout)


def run_stdio(settings: Settings) -> int:
    """Serve MCP on stdio until the client hangs up; returns the process exit code."""
    configure_logging(settings.log_level)
    stdout = keep_stdout_for_messages()  # before agent code is imported: it may print at once
    try:
        app = create_app(settings, serve_grpc=False)  # stdio only: no network listener at all
    except GatewayError as exc:
        logger.error("cannot start: %s", exc.detail)
        return 2
    logger.info("serving MCP on stdio with %d agent(s)", len(app.state.gateway.agents))
    try:
        asyncio.run(serve_stdio(app, stdout))
    except GatewayError as exc:
        logger.error("cannot start: %s", exc.detail)
        return 2
    return 0
