"""A hand-written stdio MCP server that answers ``tools/call`` with a malformed result.

It answers the handshake properly (and refuses ``server/discover``, as a server of the 2025
revisions does), lists one tool, ``broken``, and answers every call with a ``content`` that is not
a list: what the client must report as a malformed result, not crash on.
"""

from __future__ import annotations

import json
import sys

TOOL = {"name": "broken", "description": "Answers with a malformed result.", "inputSchema": {"type": "object"}}


def answer(message: dict[str, object]) -> dict[str, object] | None:
    """The response to one JSON-RPC message (None for a notification)."""
    if "id" not in message:
        return None
    method = message.get("method")
    if method == "initialize":
        params = message.get("params")
        version = params.get("protocolVersion") if isinstance(params, dict) else "2025-06-18"
        result: object = {
            "protocolVersion": version,
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "raw", "version": "0"},
        }
    elif method == "tools/list":
        result = {"tools": [TOOL]}
    elif method == "tools/call":
        result = {"content": "not a list of content blocks"}
    else:
        return {"jsonrpc": "2.0", "id": message["id"], "error": {"code": -32601, "message": f"no method {method}"}}
    return {"jsonrpc": "2.0", "id": message["id"], "result": result}


def main() -> None:
    """Answer each line of stdin."""
    for line in sys.stdin:
        if line.strip():
            response = answer(json.loads(line))
            if response is not None:
                sys.stdout.write(json.dumps(response) + "\n")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
