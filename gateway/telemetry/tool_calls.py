"""One MCP tool call an agent makes, measured: its count by outcome, its duration, and its span.

The ``llm`` runtime's MCP tools (``adapters.tools``) and the ``mcp`` runtime (``adapters.mcp``) wrap
each call in ``tool_call``. Labels are the agent's name and the server and tool its file names
(the llm allow-list, the mcp runtime's one tool), so a server cannot grow the series. Outcomes:
``ok`` a result, ``error`` a result with ``isError`` (the tool's own failure), ``failed`` no result
(timed out, lost connection, malformed answer, server unavailable), ``asked`` the tool asked its
caller for input (``InputRequiredResult``), ``canceled`` the caller was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.telemetry import metrics, tracing


class ToolCall:
    """What the caller learns of the call; ``outcome`` stays empty until it does."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome = ""


@contextmanager
def tool_call(agent: str, server: str, tool: str) -> Iterator[ToolCall]:
    """Measure the block as one call of ``tool`` on ``server`` by ``agent``; set ``outcome`` inside it.

    A block left by an exception without an outcome is ``canceled`` (cancellation) or ``failed``.
    """
    call = ToolCall()
    attributes = {"a2a.agent": agent, "mcp.server": server, "mcp.tool": tool}
    started = time.perf_counter()
    with tracing.span(f"tool {tool}", tracing.CLIENT, attributes) as span:
        try:
            yield call
        except asyncio.CancelledError:
            call.outcome = call.outcome or "canceled"
            raise
        except BaseException:
            call.outcome = call.outcome or "failed"
            raise
        finally:
            metrics.TOOL_CALL_DURATION.labels(agent, server, tool).observe(time.perf_counter() - started)
            metrics.TOOL_CALLS.labels(agent, server, tool, call.outcome or "failed").inc()
            if span is not None:
                span.set_attribute("mcp.outcome", call.outcome or "failed")
