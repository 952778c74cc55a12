#!/usr/bin/env bash
# run_tck_mcp.sh — run the A2A TCK against an `mcp`-runtime agent: the `shout` tool of the test
# MCP server (tests/adapters/mcp_tool_server.py, over stdio) published as the agent `shout`.
#
# Usage: tests/conformance/run_tck_mcp.sh [TCK_DIR] [-- extra run_tck.py / pytest arguments]
#
# Writes the agent file into a throw-away folder (the server's path and this checkout's Python
# are machine-specific), then runs tests/conformance/run_tck.sh with TCK_AGENT=shout. Which MUST
# requirements cannot apply to an agent that is not echo, and why: tests/conformance/README.md.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="python3"
[ -x "$REPO_ROOT/.venv/bin/python" ] && PYTHON="$REPO_ROOT/.venv/bin/python"
PYTHON="$(command -v "$PYTHON")"

AGENTS="$(mktemp -d -t switchboard-tck-mcp.XXXXXX)"
trap 'rm -rf "$AGENTS"' EXIT
cat >"$AGENTS/shout.yaml" <<YAML
format: 1
name: shout
description: The shout tool of an MCP server, as an agent (A2A TCK subject).
security: none
runtime:
  kind: mcp
  tool: shout
  server:
    name: test-tools
    command: ["$PYTHON", "$REPO_ROOT/tests/adapters/mcp_tool_server.py"]
YAML

TCK_AGENT=shout SWITCHBOARD_AGENTS="$AGENTS" "$REPO_ROOT/tests/conformance/run_tck.sh" "$@"
