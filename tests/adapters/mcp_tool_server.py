"""A small MCP server (the SDK's ``MCPServer``) the MCP tool and runtime tests start for real.

``python tests/adapters/mcp_tool_server.py`` serves it over stdio (``--http-fd N``: over Streamable
HTTP, on a listening socket passed as file descriptor N, with ``--bearer TOKEN`` only to that bearer
token; ``--until FILE``: exits at once while FILE does not exist; ``--hang``: never answers);
``http_app()`` is the same server's Streamable HTTP app, for a uvicorn the test runs. Tools that
leave evidence write a line to ``$MCP_TEST_DIR/<tool>.log`` (``env: [MCP_TEST_DIR]`` in the agent file), so a test can
tell what ran on the server's side, including a cancellation.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path

from mcp.server.mcpserver import Context, Image, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from mcp_types import (
    BlobResourceContents,
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    ImageContent,
    InputRequiredResult,
    SamplingMessage,
    TextContent,
    TextResourceContents,
)
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

server = MCPServer("switchboard-test-tools")


def _note(tool: str, line: str) -> None:
    folder = os.environ.get("MCP_TEST_DIR")
    if folder:
        with (Path(folder) / f"{tool}.log").open("a", encoding="utf-8") as log:
            log.write(line + "\n")


@server.tool()
def add(a: int, b: int) -> int:
    """Adds two integers."""
    _note("add", f"{a}+{b}")
    return a + b


@server.tool()
def word_count(text: str) -> str:
    """Counts the words of a text."""
    _note("word_count", text)
    return f"{len(text.split())} words"


@server.tool()
def stats(text: str) -> dict[str, int]:
    """Counts the words and characters of a text."""
    return {"words": len(text.split()), "chars": len(text)}


@server.tool()
def shout(text: str) -> str:
    """Repeats the text in capitals."""
    return text.upper()


@server.tool()
def delete_everything() -> str:
    """Deletes everything (never allow-listed: a test proves it never runs)."""
    _note("delete_everything", "ran")
    return "deleted"


@server.tool()
async def countdown(steps: int, ctx: Context) -> str:
    """Counts down, reporting progress at each step; waits for a cancellation when steps is 0."""
    try:
        for done in range(1, steps + 1):
            await ctx.report_progress(done, steps, f"step {done} of {steps}")
        if steps == 0:
            _note("countdown", "waiting")
            await asyncio.Event().wait()
    except asyncio.CancelledError:
        _note("countdown", "cancelled")
        raise
    return f"lift-off after {steps} steps"


PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000050001a5f645400000000049454e44ae426082"
)
"""A 1x1 PNG."""


@server.tool()
def snapshot(title: str) -> list[ImageContent | EmbeddedResource | TextContent]:
    """A picture, a PDF and a note about them, as MCP content blocks."""
    pdf = BlobResourceContents(
        uri="file:///reports/report.pdf", mime_type="application/pdf", blob=base64.b64encode(b"%PDF-1.7").decode()
    )
    note = TextResourceContents(uri="file:///reports/note.txt", mime_type="text/plain", text=f"about {title}")
    return [
        TextContent(type="text", text=f"{title}: one pixel"),
        Image(data=PIXEL_PNG, format="png").to_image_content(),
        EmbeddedResource(type="resource", resource=pdf),
        EmbeddedResource(type="resource", resource=note),
    ]


@server.tool()
async def confirm(action: str, ctx: Context) -> str | InputRequiredResult:
    """Asks its caller (an elicitation, MCP 2026-07-28 style) whether to do the action, then says the answer."""
    answer = (ctx.input_responses or {}).get("approval")
    if isinstance(answer, ElicitResult):
        return f"{action}: {answer.action} {json.dumps(answer.content, sort_keys=True)}"
    schema = {"type": "object", "properties": {"approve": {"type": "boolean"}}, "required": ["approve"]}
    form = ElicitRequestFormParams(message=f"May I {action}?", requested_schema=schema)
    return InputRequiredResult(input_requests={"approval": ElicitRequest(params=form)}, request_state=action)


@server.tool()
def ponder(topic: str) -> str | InputRequiredResult:
    """Asks its caller's model to think about the topic (sampling), which a gateway cannot answer for its caller."""
    message = SamplingMessage(role="user", content=TextContent(type="text", text=topic))
    request = CreateMessageRequest(params=CreateMessageRequestParams(messages=[message], max_tokens=10))
    return InputRequiredResult(input_requests={"thought": request})


@server.tool()
def refuse(reason: str) -> str:
    """Always fails, with the reason given."""
    raise ToolError(reason)


@server.tool()
def exit_now() -> str:
    """Ends the server process at once (a crash)."""
    _note("exit_now", "exiting")
    os._exit(3)


def http_app(bearer: str = "") -> ASGIApp:
    """The server over Streamable HTTP at ``/mcp`` (loopback; no DNS-rebinding check).

    With ``bearer``, a request whose Authorization is not ``Bearer <bearer>`` is refused (401), and
    each one let in is noted as ``admitted``.
    """
    app = server.streamable_http_app(
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    if not bearer:
        return app

    async def require_bearer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if dict(scope["headers"]).get(b"authorization", b"").decode() != f"Bearer {bearer}":
                await Response("no", status_code=401)(scope, receive, send)
                return
            _note("admitted", scope["method"])
        await app(scope, receive, send)

    return require_bearer


if __name__ == "__main__":
    if "--hang" in sys.argv:  # starts, then never answers (a server that hangs at start)
        _note("hanging", str(os.getpid()))
        sys.stdin.read()
    elif "--until" in sys.argv and not Path(sys.argv[sys.argv.index("--until") + 1]).exists():
        sys.exit("not ready: no " + sys.argv[sys.argv.index("--until") + 1])  # a server not up yet
    elif "--http-fd" in sys.argv:  # Streamable HTTP on a listening socket the parent passed (no port race)
        import uvicorn

        fd = int(sys.argv[sys.argv.index("--http-fd") + 1])
        bearer = sys.argv[sys.argv.index("--bearer") + 1] if "--bearer" in sys.argv else ""
        uvicorn.run(http_app(bearer), fd=fd, log_config=None, access_log=False)
    else:
        _note("started", str(os.getpid()))
        server.run("stdio")
