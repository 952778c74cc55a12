"""One MCP client session per MCP server, shared by every agent and task of a gateway.

A session opens on first use, with the MCP SDK's own ``Client`` over its stdio or Streamable
HTTP transport, and must be ready within the server's ``start_timeout_s``. Each session lives in
a task of its own (the SDK's transports are anyio task groups, entered and left by one task),
which notices when the server's stream ends: a server that exits is started again on the next
use. Failures are bounded: ``MAX_FAILURES`` failed starts or exits within ``FAILURE_WINDOW_S``
take the server out of service for ``OUT_OF_SERVICE_S`` (logged with the reason, and the reason
given to every caller), after which one start is tried again. ``aclose`` ends every session.

A server that could not be probed at the gateway's start is held out of service the same way
(``hold_out``); ``keep_probing``, run in the background, tries it again as each window ends and,
once it lists its tools, hands them to whoever waits for them (an ``mcp`` agent takes its skill
from its tool and comes into service).

Errors: ``McpServerError`` when a session cannot be had (missing program, a server that hangs at
start, out of service); ``McpCallError`` when a call ends without a result (its timeout, a lost
connection, a protocol error, a malformed result). A tool's own failure is a result with
``isError``, returned as it is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx2
import mcp_types as types
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from gateway.errors import GatewayError
from gateway.federation.credentials import Credentials, build_credentials
from gateway.spec import McpServerSpec

logger = logging.getLogger(__name__)

MAX_FAILURES = 3
FAILURE_WINDOW_S = 60.0
OUT_OF_SERVICE_S = 30.0
_STDERR_TAIL = 400

Progress = ProgressFnT
"""An async callable given (progress, total, message) for each progress notification of a call."""
Listed = Callable[[tuple[types.Tool, ...]], None]
"""Called with a server's tools once a server not probed at start lists them."""


class McpServerError(GatewayError):
    """No session with the MCP server can be had: it does not start, hangs at start, or is out of service."""

    message = "the MCP server is unavailable"
    reason = "mcp-server-unavailable"
    retryable = True


class McpCallError(GatewayError):
    """A tool call ended without a result: timed out, lost its connection, or got a malformed answer."""

    message = "the MCP tool call failed"
    reason = "mcp-call-failed"


_IDENTITY = {"command", "url", "env", "cwd", "credentials"}
Server = TypeVar("Server", bound=McpServerSpec)


def rooted(server: Server, folder: Path | None) -> Server:
    """``server`` with its working directory made absolute: relative to ``folder`` (an agent file's), or it."""
    if not server.command or folder is None:
        return server
    return server.model_copy(update={"cwd": str((folder / server.cwd).resolve())})


def missing_program(server: McpServerSpec) -> str | None:
    """The program of a stdio server when it cannot be found (on PATH, or relative to its directory)."""
    if not server.command:
        return None
    program = server.command[0]
    if "/" in program:
        return None if (Path(server.cwd or ".") / program).is_file() else program
    return None if shutil.which(program) else program


def server_key(server: McpServerSpec) -> str:
    """What makes two specs the same server (one session): how it is reached, not its name, timeouts or tools."""
    return server.model_dump_json(include=_IDENTITY)


class _CredentialsAuth(httpx2.Auth):
    """Adds the configured credentials' headers to every request (OAuth tokens refresh as they expire)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials

    async def async_auth_flow(self, request: httpx2.Request) -> Any:
        request.headers.update(await self._credentials.headers())
        yield request


class _WatchedStream:
    """A transport's read stream that sets ``ended`` when the server's messages end."""

    def __init__(self, stream: Any, ended: asyncio.Event) -> None:
        self._stream, self._ended = stream, ended

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)  # last_context and the like

    async def receive(self) -> Any:
        return await self._stream.receive()

    async def aclose(self) -> None:
        self._ended.set()
        await self._stream.aclose()

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self._stream.__anext__()
        except BaseException:
            self._ended.set()
            raise

    async def __aenter__(self) -> _WatchedStream:
        await self._stream.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        self._ended.set()
        return bool(await self._stream.__aexit__(*exc))


class McpConnection:
    """The session with one MCP server, its owner task, and its failure record."""

    def __init__(self, server: McpServerSpec, env: Mapping[str, str]) -> None:
        self.server = server
        self.problem = ""
        self._env = env
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ended = asyncio.Event()
        self._lock = asyncio.Lock()
        self._failures: list[float] = []
        self._down_until = 0.0
        self._tools: tuple[types.Tool, ...] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def label(self) -> str:
        """The server as messages name it."""
        return self.server.label

    def out_of_service(self) -> str | None:
        """Why the server is out of service now, or None (it may be called, or started)."""
        return self.problem if time.monotonic() < self._down_until else None

    @property
    def down_until(self) -> float:
        """When (``time.monotonic``) the current out-of-service window ends; in the past when there is none."""
        return self._down_until

    def hold_out(self, problem: str) -> None:
        """Out of service for ``OUT_OF_SERVICE_S`` from now, with ``problem`` (it could not be probed)."""
        self.problem, self._down_until, self._failures = problem, time.monotonic() + OUT_OF_SERVICE_S, []

    async def client(self) -> Client:
        """The live session, started (again) when there is none; ``McpServerError`` when it cannot be."""
        if self._client is not None and not self._ended.is_set():
            return self._client  # live: no lock to take (``_end`` clears it before anything awaits)
        async with self._lock:
            if self._client is not None and not self._ended.is_set():
                return self._client
            if self._client is not None:  # it ended on its own (counted as a failure when it did)
                await self._end()
            if time.monotonic() < self._down_until:
                raise McpServerError(f"MCP server {self.label} is out of service: {self.problem}")
            try:
                self._client = await self._start()
            except McpServerError as exc:
                self._failed(exc.detail)
                raise
            self.problem = ""
            return self._client

    async def tools(self) -> tuple[types.Tool, ...]:
        """The server's tools (``tools/list``, every page), listed once per session."""
        client = await self.client()
        if self._tools is None:
            listed: list[types.Tool] = []
            cursor: str | None = None
            try:
                async with asyncio.timeout(self.server.start_timeout_s):
                    for _ in range(100):  # a paginator that never ends cannot hang the agent
                        page = await client.list_tools(cursor=cursor)
                        listed += page.tools
                        cursor = page.next_cursor
                        if cursor is None:
                            break
            except (TimeoutError, MCPError, ValidationError, OSError) as exc:
                raise McpServerError(f"MCP server {self.label} did not list its tools: {_describe(exc)}") from exc
            self._tools = tuple(listed)
        return self._tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], *, timeout_s: float, progress: Progress | None = None
    ) -> types.CallToolResult:
        """Call tool ``name``; its result (``isError`` included), or ``McpCallError`` when there is none."""
        client = await self.client()
        with self._translated(name, timeout_s):
            # The SDK's read timeout sends the server notifications/cancelled, as a cancelled caller does.
            return await client.call_tool(name, arguments, read_timeout_seconds=timeout_s, progress_callback=progress)

    async def call_tool_once(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        progress: Progress | None = None,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """One round of a call of tool ``name``: its result, or the server's ``InputRequiredResult`` (it asks the
        caller for input, such as an elicitation) for the caller to answer in a later round with
        ``input_responses`` and its ``request_state``; ``McpCallError`` as ``call_tool``."""
        client = await self.client()
        with self._translated(name, timeout_s):
            result = await client.session.call_tool(
                name,
                arguments,
                read_timeout_seconds=timeout_s,
                progress_callback=progress,
                input_responses=input_responses,
                request_state=request_state,
                allow_input_required=True,
            )
            if isinstance(result, types.CallToolResult) and not result.is_error:  # as Client.call_tool checks it
                try:
                    await client.session.validate_tool_result(name, result)
                except RuntimeError as exc:
                    problem = f"MCP server {self.label} answered {name} with a malformed result: {exc}"
                    raise McpCallError(problem) from exc
        return result

    @contextmanager
    def _translated(self, name: str, timeout_s: float) -> Iterator[None]:
        try:
            yield
        except MCPError as exc:
            if exc.error.code == types.REQUEST_TIMEOUT:
                raise McpCallError(
                    f"tool {name} of MCP server {self.label} did not finish within {timeout_s:g}s"
                ) from exc
            raise McpCallError(f"tool {name} of MCP server {self.label} failed: {exc.error.message}") from exc
        except ValidationError as exc:
            detail = exc.errors()[0]
            where = ".".join(map(str, detail["loc"]))
            raise McpCallError(
                f"MCP server {self.label} answered {name} with a malformed result ({where}: {detail['msg']})"
            ) from exc
        except (OSError, httpx2.HTTPError) as exc:
            raise McpCallError(f"tool {name} of MCP server {self.label} failed: {_describe(exc)}") from exc

    async def aclose(self) -> None:
        """End the session (a stdio server's process is stopped by the SDK's transport)."""
        async with self._lock:
            await self._end()

    def _failed(self, problem: str) -> None:
        now = time.monotonic()
        repeated, self.problem = problem == self.problem, problem
        self._failures = [t for t in self._failures if now - t < FAILURE_WINDOW_S] + [now]
        if len(self._failures) >= MAX_FAILURES:
            self._down_until, self._failures = now + OUT_OF_SERVICE_S, []
            logger.error(
                "MCP server %s is out of service for %gs after %d failures in %gs; the last: %s",
                self.label,
                OUT_OF_SERVICE_S,
                MAX_FAILURES,
                FAILURE_WINDOW_S,
                problem,
            )
        elif not repeated:  # a server failing the same way again is not news (a re-probe every window)
            logger.warning("%s", problem)

    async def _start(self) -> Client:
        self._stop, self._ended, self._tools = asyncio.Event(), asyncio.Event(), None
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(ready), name=f"mcp:{self.label}")
        try:
            async with asyncio.timeout(self.server.start_timeout_s):
                return await asyncio.shield(ready)
        except TimeoutError:
            await self._end(cancel=True)  # still starting: it would not see the stop
            raise McpServerError(
                f"MCP server {self.label} did not start within {self.server.start_timeout_s:g}s{self._stderr_tail()}"
            ) from None
        except McpServerError:
            await self._end()
            raise
        except asyncio.CancelledError:  # the caller was (a re-probe at the gateway's stop): still starting too
            await self._end(cancel=True)
            raise

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        with tempfile.TemporaryFile() as stderr:  # a stdio server's, kept for the reason when it fails
            self._stderr = stderr
            try:
                async with Client(self._transport(stderr)) as client:
                    ready.set_result(client)
                    await _first(self._stop.wait(), self._ended.wait())
                    if not self._stop.is_set():  # the server exited or dropped the connection
                        self._failed(f"MCP server {self.label} ended its session{self._stderr_tail()}")
            except Exception as exc:
                if not ready.done():
                    ready.set_exception(McpServerError(self._start_failure(exc)))
                else:
                    logger.debug("MCP server %s: the session ended: %s", self.label, _describe(exc))
            finally:
                self._ended.set()
                if not ready.done():
                    ready.cancel()

    def _start_failure(self, exc: BaseException) -> str:
        while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
            exc = exc.exceptions[0]  # the SDK's task groups wrap what failed
        if isinstance(exc, FileNotFoundError):
            return f"MCP server {self.label} cannot start: no program {self.server.command[0]!r} (is it installed?)"
        if isinstance(exc, PermissionError):
            return f"MCP server {self.label} cannot start: {self.server.command[0]!r} is not executable"
        if isinstance(exc, MCPError) and exc.code == types.CONNECTION_CLOSED:
            return f"MCP server {self.label} exited before its session started{self._stderr_tail()}"
        return f"MCP server {self.label} did not start: {_describe(exc)}{self._stderr_tail()}"

    @asynccontextmanager
    async def _transport(self, stderr: IO[bytes]) -> Any:
        if self.server.command:
            argv = self.server.command
            env = {name: self._env[name] for name in self.server.env if name in self._env}
            params = StdioServerParameters(command=argv[0], args=list(argv[1:]), env=env, cwd=self.server.cwd or None)
            async with stdio_client(params, errlog=stderr) as (read, write):  # type: ignore[arg-type]
                yield _WatchedStream(read, self._ended), write
            return
        credentials = build_credentials(self.label, self.server.credentials, self._env)
        timeout = httpx2.Timeout(30.0, read=300.0)
        try:
            async with (
                httpx2.AsyncClient(auth=_CredentialsAuth(credentials), timeout=timeout) as http,
                streamable_http_client(self.server.url, http_client=http) as (read, write),
            ):
                yield _WatchedStream(read, self._ended), write
        finally:
            await credentials.aclose()

    def _stderr_tail(self) -> str:
        if self._stderr is None or self._stderr.closed:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - _STDERR_TAIL))
            tail = self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""
        return f"; its stderr ends: {tail[-_STDERR_TAIL:]}" if tail else ""

    async def _end(self, *, cancel: bool = False) -> None:
        self._client, self._tools = None, None
        owner, self._owner = self._owner, None
        if owner is not None:
            self._stop.set()
            if cancel:
                owner.cancel()
            await asyncio.gather(owner, return_exceptions=True)


class McpClientPool:
    """The gateway's MCP sessions, one per server (``server_key``), opened on first use, closed by ``aclose``.

    ``env`` is where credentials and a stdio server's ``env`` names are read (default: the process environment).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self._env = env if env is not None else os.environ
        self._connections: dict[str, McpConnection] = {}
        self._waiting: dict[str, list[tuple[str, Listed]]] = {}
        self._keys: dict[int, tuple[McpServerSpec, str]] = {}
        self._probed: dict[str, tuple[types.Tool, ...] | McpServerError] = {}

    @property
    def waiting(self) -> bool:
        """Whether a server not probed at start waits for ``keep_probing``."""
        return bool(self._waiting)

    def wait_for(self, server: McpServerSpec, problem: str, agent: str, on_listed: Listed) -> None:
        """Hold ``server`` out of service with ``problem`` until ``keep_probing`` lists its tools, then
        call ``on_listed(tools)`` for ``agent``."""
        self.connection(server).hold_out(problem)
        self._waiting.setdefault(server_key(server), []).append((agent, on_listed))

    def list_tools_now(self, server: McpServerSpec) -> tuple[types.Tool, ...]:
        """``server``'s tools as listed at start, asked from a thread of its own (start-up is not async);
        ``McpServerError`` if it fails. One probe per server, however many agents use it."""
        key = self._key(server)
        if key not in self._probed:

            async def probe() -> tuple[types.Tool, ...] | McpServerError:
                probe_pool = McpClientPool(self._env)
                try:
                    return await probe_pool.list_tools(server)
                except McpServerError as exc:
                    return exc
                finally:
                    await probe_pool.aclose()

            with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="mcp-probe") as thread:
                self._probed[key] = thread.submit(asyncio.run, probe()).result()
        listed = self._probed[key]
        if isinstance(listed, McpServerError):
            raise McpServerError(listed.detail)
        return listed

    async def keep_probing(self, on_change: Callable[[str], None]) -> None:
        """Try each waiting server again as its out-of-service window ends, until every one listed its
        tools; for each agent waiting for them, ``on_listed`` then ``on_change(agent)`` (its card changed)."""
        while self._waiting:
            due = min(self._connections[key].down_until for key in self._waiting)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            now = time.monotonic()
            due_keys = [key for key in self._waiting if self._connections[key].down_until <= now]
            await asyncio.gather(*(self._probe(key, on_change) for key in due_keys))

    async def _probe(self, key: str, on_change: Callable[[str], None]) -> None:
        connection = self._connections[key]
        try:
            tools = await connection.tools()
        except McpServerError as exc:
            connection.hold_out(exc.detail)
            return
        logger.info("MCP server %s is in service: it lists %d tools", connection.label, len(tools))
        for agent, on_listed in self._waiting.pop(key):
            on_listed(tools)
            on_change(agent)

    def _key(self, server: McpServerSpec) -> str:
        """``server_key(server)`` (a JSON dump), made once per spec object (frozen, and held by its agent)."""
        known = self._keys.get(id(server))
        if known is None or known[0] is not server:
            known = self._keys[id(server)] = (server, server_key(server))
        return known[1]

    def connection(self, server: McpServerSpec) -> McpConnection:
        """The connection to ``server`` (not yet opened until used)."""
        key = self._key(server)
        connection = self._connections.get(key)
        if connection is None:
            connection = self._connections[key] = McpConnection(server, self._env)
        return connection

    def out_of_service(self, server: McpServerSpec) -> str | None:
        """Why ``server`` is out of service now (after repeated failures), or None."""
        connection = self._connections.get(self._key(server))
        return connection.out_of_service() if connection is not None else None

    async def list_tools(self, server: McpServerSpec) -> tuple[types.Tool, ...]:
        """The tools ``server`` lists; ``McpServerError`` when it cannot be reached."""
        return await self.connection(server).tools()

    async def call_tool(
        self,
        server: McpServerSpec,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        progress: Progress | None = None,
    ) -> types.CallToolResult:
        """Call tool ``name`` of ``server``; see ``McpConnection.call_tool``."""
        return await self.connection(server).call_tool(name, arguments, timeout_s=timeout_s, progress=progress)

    async def call_tool_once(
        self,
        server: McpServerSpec,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout_s: float,
        progress: Progress | None = None,
        input_responses: types.InputResponses | None = None,
        request_state: str | None = None,
    ) -> types.CallToolResult | types.InputRequiredResult:
        """One round of a call of tool ``name`` of ``server``; see ``McpConnection.call_tool_once``."""
        return await self.connection(server).call_tool_once(
            name,
            arguments,
            timeout_s=timeout_s,
            progress=progress,
            input_responses=input_responses,
            request_state=request_state,
        )

    async def aclose(self) -> None:
        """End every session."""
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` ends; cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return exc.error.message
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(e) for e in exc.exceptions)
    return str(exc) or type(exc).__name__
