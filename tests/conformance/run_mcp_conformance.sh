#!/usr/bin/env bash
# run_mcp_conformance.sh — run the MCP conformance suite's server scenarios against this checkout's gateway.
#
# Usage:
#   tests/conformance/run_mcp_conformance.sh [run-mcp-conformance options]
#
# The script starts the gateway from this checkout on a free loopback port with a throw-away
# data directory and the test-only fixture pack (tests/mcp/conformance_pack.py: the tools,
# resources and prompts the scenarios call, added beside the real tools through the
# mcp_extra_modules setting), runs ../shared/tools/run-mcp-conformance (relative to the
# repository root) against <gateway>/mcp, prints its summary line and stops the gateway on exit.
#
# Options are passed to run-mcp-conformance. Without any, the scored requirement sets of both
# protocol revisions run: --leg req:2025-11-25 --leg req:2026-07-28. Examples:
#   tests/conformance/run_mcp_conformance.sh --leg 2025-11-25 --leg 2026-07-28   # everything applicable
#   tests/conformance/run_mcp_conformance.sh --scenario tools-call-with-progress
#
# Environment (optional):
#   MCP_CONFORMANCE_DIR  scratch dir for the harness install and results (run-mcp-conformance --dir)
#   SWITCHBOARD_PYTHON   the Python that runs the gateway (default: .venv/bin/python, else python3)
#
# Exit status: run-mcp-conformance's (0 = every leg passed); 2 on a usage or start-up error.
set -euo pipefail

die() { echo "run_mcp_conformance.sh: $*" >&2; exit 2; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"

RUNNER="../shared/tools/run-mcp-conformance"
[ -x "$RUNNER" ] || die "no conformance runner at $RUNNER (relative to $REPO_ROOT)"

PYTHON="${SWITCHBOARD_PYTHON:-}"
if [ -z "$PYTHON" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=".venv/bin/python"; else PYTHON="python3"; fi
fi

ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(--leg req:2025-11-25 --leg req:2026-07-28)
[ -z "${MCP_CONFORMANCE_DIR:-}" ] || ARGS=(--dir "$MCP_CONFORMANCE_DIR" "${ARGS[@]}")

PORT="$("$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()')"
DATA_DIR="$(mktemp -d -t switchboard-mcp-conformance.XXXXXX)"
GATEWAY_LOG="$DATA_DIR/gateway.log"
GATEWAY_PID=""

stop_gateway() {
  if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
    kill "$GATEWAY_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$GATEWAY_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -0 "$GATEWAY_PID" 2>/dev/null && kill -9 "$GATEWAY_PID" 2>/dev/null || true
    wait "$GATEWAY_PID" 2>/dev/null || true
  fi
  rm -rf "$DATA_DIR"
}
trap stop_gateway EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "run_mcp_conformance.sh: starting the gateway on 127.0.0.1:$PORT with the fixture pack (data dir $DATA_DIR)"
PYTHONPATH="$REPO_ROOT${PYTHONPATH:+:$PYTHONPATH}" \
SWITCHBOARD_MCP_EXTRA_MODULES="tests.mcp.conformance_pack" \
SWITCHBOARD_GRPC_PORT="${SWITCHBOARD_GRPC_PORT:-0}" \
  "$PYTHON" -m gateway serve --host 127.0.0.1 --port "$PORT" --data-dir "$DATA_DIR" >"$GATEWAY_LOG" 2>&1 &
GATEWAY_PID=$!

READY_URL="http://127.0.0.1:$PORT/readyz"
for _ in $(seq 1 150); do
  kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$GATEWAY_LOG" >&2; die "the gateway exited during start-up"; }
  "$PYTHON" -c 'import sys, urllib.request
sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)' "$READY_URL" >/dev/null 2>&1 && break
  sleep 0.2
done

MCP_URL="http://127.0.0.1:$PORT/mcp"
echo "run_mcp_conformance.sh: conformance against $MCP_URL (${ARGS[*]})"
set +e
"$RUNNER" --url "$MCP_URL" "${ARGS[@]}" | tee "$DATA_DIR/conformance.out"
rc=${PIPESTATUS[0]}
set -e

summary="$(grep -E '^conformance: ' "$DATA_DIR/conformance.out" | tail -1 || true)"
echo
echo "run_mcp_conformance.sh: ${summary:-no summary line (see the output above)}"
if [ "$rc" -ne 0 ] && [ -s "$GATEWAY_LOG" ]; then
  echo "run_mcp_conformance.sh: last gateway log lines:" >&2
  tail -n 20 "$GATEWAY_LOG" >&2
fi
exit "$rc"
