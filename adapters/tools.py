"""Tools a chat model may call: the allow-listed tools of MCP servers, and Python functions.

A tool is offered to the model as an OpenAI function tool (name, description, JSON schema) and
run with a timeout; whatever happens, the model gets text back, marked as an error when the tool
failed (an ``isError`` result, an exception, a timeout, a malformed answer). A tool of an MCP
server comes from its ``tools/list``, so the model sees the server's own description and schema;
it runs over the gateway's shared session with that server (``gateway.hosting.mcp_clients``), and
is counted, timed and traced (``gateway.telemetry.tool_calls``). A server that cannot be reached
leaves its tools out of the call (``Toolbox``), not the agent.
A Python function's schema comes from its signature and docstring, through the MCP SDK's
``Tool.from_function`` (as an ``MCPServer`` would publish it), unless the agent file gives one.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import mcp_types as types
from mcp.server.mcpserver.tools.base import Tool as FunctionMetadata
from pydantic import ValidationError

from adapters.python import import_string
from gateway.errors import RuntimeLoadError
from gateway.hosting.mcp_clients import McpCallError, McpClientPool, McpServerError, rooted
from gateway.spec import AgentSpec, FunctionToolSpec, LlmRuntime, McpToolsSpec
from gateway.telemetry.tool_calls import tool_call

logger = logging.getLogger(__name__)

MAX_RESULT_CHARS = 20_000
"""Longer tool results are cut before they go back to the model (the rest is said to be cut)."""

Report = Callable[[str], Awaitable[None]]
"""Where a tool's progress goes (a task status update)."""


@dataclass(frozen=True)
class ToolOutcome:
    """What the model is told a tool call gave."""

    text: str
    is_error: bool = False

    @property
    def for_model(self) -> str:
        """The tool message's content: errors say so, so the model can correct itself."""
        return f"ERROR: {self.text}" if self.is_error else self.text


class Tool(Protocol):
    """A tool the model may call."""

    @property
    def name(self) -> str:
        """The function name the model calls."""
        ...

    def definition(self) -> dict[str, Any]:
        """The function tool offered to the model."""
        ...

    async def run(self, arguments: dict[str, Any], report: Report) -> ToolOutcome:
        """Run with ``arguments``; never raises for the tool's own failures."""
        ...


def function_tool(name: str, description: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": parameters}}


def _cut(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[... {len(text) - MAX_RESULT_CHARS} more characters cut]"


def content_text(block: types.ContentBlock) -> str:
    """One MCP content block as text for a model (binary content is described, not inlined)."""
    if isinstance(block, types.TextContent):
        return block.text
    if isinstance(block, types.ImageContent | types.AudioContent):
        return f"[{block.type} {block.mime_type}, {len(block.data) * 3 // 4} bytes, not shown]"
    if isinstance(block, types.EmbeddedResource):
        resource = block.resource
        if isinstance(resource, types.TextResourceContents):
            return f"Resource {resource.uri}:\n{resource.text}"
        return f"[resource {resource.uri} ({resource.mime_type or 'binary'}), not shown]"
    return f"[resource link {block.uri}{f' ({block.description})' if block.description else ''}]"


def result_text(result: types.CallToolResult) -> str:
    """A tool result's content as one text; its structured content when it has no content."""
    texts = [content_text(block) for block in result.content]
    if not texts and result.structured_content is not None:
        texts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(texts)


class McpTool:
    """An allow-listed tool of an MCP server, called over the gateway's session with it by ``agent``."""

    def __init__(self, server: McpToolsSpec, tool: types.Tool, pool: McpClientPool, agent: str) -> None:
        self.server, self.tool, self._pool, self.agent = server, tool, pool, agent

    @property
    def name(self) -> str:
        """The tool's name on its server."""
        return self.tool.name

    def definition(self) -> dict[str, Any]:
        """The server's own description and input schema."""
        return function_tool(self.tool.name, self.tool.description or self.tool.title or "", self.tool.input_schema)

    async def run(self, arguments: dict[str, Any], report: Report) -> ToolOutcome:
        """Call the tool; its progress notifications go to ``report``."""

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            await report(f"{self.name}: {message or (f'{progress:g}/{total:g}' if total else f'{progress:g}')}")

        with tool_call(self.agent, self.server.label, self.name) as measured:
            try:
                result = await self._pool.call_tool(
                    self.server, self.name, arguments, timeout_s=self.server.timeout_s, progress=on_progress
                )
            except (McpCallError, McpServerError) as exc:
                measured.outcome = "failed"
                return ToolOutcome(exc.detail, is_error=True)
            measured.outcome = "error" if result.is_error else "ok"
        return ToolOutcome(_cut(result_text(result)) or "(no content)", is_error=result.is_error)


class PythonTool:
    """A Python function (sync in a worker thread, or async), its arguments checked against its signature."""

    def __init__(self, spec: FunctionToolSpec, agent: AgentSpec | None = None) -> None:
        target = import_string(spec.function, agent)
        if not callable(target):
            raise RuntimeLoadError(f"tool {spec.function} is not a function")
        try:
            self._meta = FunctionMetadata.from_function(target, name=spec.tool_name, description=spec.description)
        except Exception as exc:  # the SDK's reasons for refusing a signature are many; each is a load error
            raise RuntimeLoadError(f"tool {spec.function} cannot be offered: {exc}") from exc
        self._spec = spec
        self._parameters = spec.parameters or self._meta.parameters

    @property
    def name(self) -> str:
        """The tool's name (the function's, unless the file gives one)."""
        return self._meta.name

    def definition(self) -> dict[str, Any]:
        """Description from the docstring, schema from the signature (unless the file gives them)."""
        return function_tool(self.name, inspect.cleandoc(self._meta.description), self._parameters)

    async def run(self, arguments: dict[str, Any], report: Report) -> ToolOutcome:
        """Call the function within its timeout; its return value (JSON unless a string) is the result."""
        meta = self._meta
        try:
            validated = meta.fn_metadata.validate_arguments(arguments)
        except ValidationError as exc:
            return ToolOutcome(f"invalid arguments for {self.name}: {exc}", is_error=True)
        try:
            async with asyncio.timeout(self._spec.timeout_s):
                value = await meta.fn_metadata.call_fn(meta.fn, meta.is_async, validated)
        except TimeoutError:
            return ToolOutcome(f"{self.name} did not finish within {self._spec.timeout_s:g}s", is_error=True)
        except Exception as exc:
            logger.warning("tool %s raised %s: %s", self.name, type(exc).__name__, exc)
            return ToolOutcome(f"{self.name} raised {type(exc).__name__}: {exc}", is_error=True)
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        return ToolOutcome(_cut(text))


@dataclass(frozen=True)
class Toolset:
    """What the model is offered for one call: the tools by name, and the MCP servers left out (unavailable)."""

    tools: dict[str, Tool]
    unavailable: tuple[McpToolsSpec, ...] = ()

    def note(self) -> str:
        """What the model is told of the servers left out, so that it does not guess their answers ("" if none)."""
        if not self.unavailable:
            return ""
        names = ", ".join(name for server in self.unavailable for name in server.tools)
        return (
            f"These tools are unavailable right now: {names}. If the request needs them, say that it cannot be "
            "done now instead of guessing what they would answer."
        )


class Toolbox:
    """The tools of one agent: its functions, and the allow-listed tools of its MCP servers.

    A server that cannot be reached leaves its tools out of a call (the model answers with the
    rest and is told which are missing); the agent says so in its log once per outage. A server
    not reached at start (``wait_for``) is left out until ``McpClientPool.keep_probing`` lists its
    tools; one that fails later is left out while its session cannot be had (out of service, or
    failing to start), and comes back on the first call that reaches it.
    """

    def __init__(self, agent: AgentSpec, runtime: LlmRuntime, pool: McpClientPool) -> None:
        self._functions: dict[str, Tool] = {}
        for spec in runtime.tools:
            tool = PythonTool(spec, agent)
            self._functions[tool.name] = tool
        folder = agent.file.parent if agent.file is not None else None
        self._servers = [rooted(server, folder) for server in runtime.mcp_servers]
        self._pool = pool
        self._agent = agent.name
        self._waiting: dict[int, str] = {}  # server index -> why it was not reached at start
        self._absent: set[int] = set()  # servers whose tools are left out now (logged when they went)

    @property
    def servers(self) -> list[McpToolsSpec]:
        """The agent's MCP servers (working directories made absolute)."""
        return self._servers

    def __bool__(self) -> bool:
        return bool(self._functions or self._servers)

    def check(self, server: McpToolsSpec, listed: tuple[types.Tool, ...]) -> None:
        """``McpServerError`` when ``listed`` (``server``'s tools) lacks an allow-listed one (the file disagrees)."""
        names = [tool.name for tool in listed]
        missing = [name for name in server.tools if name not in names]
        if missing:
            raise McpServerError(
                f"MCP server {server.label} has no tool(s) {', '.join(missing)}; it has: {', '.join(names)}"
            )

    def wait_for(self, server: McpToolsSpec, problem: str) -> None:
        """``server`` was not reached at start: its tools are left out until ``keep_probing`` lists them."""
        index = self._servers.index(server)
        self._waiting[index] = problem
        self._left_out(index, problem)

        def listed(tools: tuple[types.Tool, ...]) -> None:
            self._waiting.pop(index, None)
            try:
                self.check(server, tools)
            except McpServerError as exc:
                logger.error("%s: %s", self._agent, exc.detail)

        self._pool.wait_for(server, problem, self._agent, listed)

    async def tools(self) -> Toolset:
        """Every tool the model may call now, by name, and the servers left out (they cannot be reached).

        A server's tools are listed once per session; an allow-listed tool the server does not
        have is an ``McpServerError`` (the agent file and the server disagree: the call fails).
        """
        tools = dict(self._functions)
        unavailable: list[McpToolsSpec] = []
        for index, server in enumerate(self._servers):
            try:
                listed = await self._listed(index, server)
            except McpServerError as exc:
                self._left_out(index, exc.detail)
                unavailable.append(server)
                continue
            if index in self._absent:
                self._absent.discard(index)
                logger.info("%s: the tools of MCP server %s are offered again", self._agent, server.label)
            self.check(server, listed)
            by_name = {tool.name: tool for tool in listed}
            tools.update((name, McpTool(server, by_name[name], self._pool, self._agent)) for name in server.tools)
        return Toolset(tools, tuple(unavailable))

    async def _listed(self, index: int, server: McpToolsSpec) -> tuple[types.Tool, ...]:
        problem = self._waiting.get(index)
        if problem is not None:  # not tried again here: keep_probing does, without holding up a call
            raise McpServerError(problem)
        return await self._pool.list_tools(server)

    def _left_out(self, index: int, problem: str) -> None:
        if index not in self._absent:
            self._absent.add(index)
            logger.warning(
                "%s answers without the tools of MCP server %s until it can be reached: %s",
                self._agent,
                self._servers[index].label,
                problem,
            )
