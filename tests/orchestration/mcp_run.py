"""Running a workflow as an MCP tool through MCP's own client, for pattern tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import anyio
from mcp.client import Client

from gateway.testing import RunningGateway

TOOL_TIMEOUT_S = 30


@dataclass
class ToolRun:
    """What an MCP tool call of a workflow showed: its progress messages and its structured result."""

    result: dict[str, Any]
    progress: list[str] = field(default_factory=list)
    is_error: bool = False

    def artifact(self, name: str) -> dict[str, Any]:
        """The result's artifact ``name`` ({name, text, data})."""
        found = [a for a in self.result.get("artifacts", []) if a["name"] == name]
        assert found, f"no artifact {name!r}; have {[a['name'] for a in self.result.get('artifacts', [])]}"
        return dict(found[0])


async def call_workflow(gateway: RunningGateway, workflow: str, arguments: dict[str, Any]) -> ToolRun:
    """Call ``workflow``'s MCP tool (its name with ``_`` for ``-``) on the gateway's /mcp endpoint, to its end."""
    run = ToolRun(result={})

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        run.progress.append(message or "")

    async with Client(f"{gateway.url}/mcp", read_timeout_seconds=60) as client:
        with anyio.fail_after(TOOL_TIMEOUT_S):
            result = await client.call_tool(workflow.replace("-", "_"), arguments, progress_callback=on_progress)
    run.result = dict(result.structured_content or {})
    run.is_error = bool(result.is_error)
    return run
