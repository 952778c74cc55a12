#!/usr/bin/env bash
# run_tck.sh — run the A2A TCK against this checkout's gateway (its `echo` agent, or $TCK_AGENT).
#
# Usage:
#   tests/conformance/run_tck.sh [TCK_DIR] [-- extra run_tck.py / pytest arguments]
#
# TCK_DIR (argument 1, or $TCK_DIR) is the TCK: a checked-out a2aproject/a2a-tck tree or a
# bare git directory of it (branch $TCK_REF, default 1.0-dev, is exported from it).
#
# The script starts the gateway from this checkout on a free port with a throw-away data
# directory, runs ../shared/tools/run-a2a-tck (relative to the repository root) against
# <gateway>/agents/echo, prints the TCK's summary line and stops the gateway on exit.
#
# Environment (all optional):
#   TCK_AGENT       the agent to test (default: echo); SWITCHBOARD_AGENTS names its folder when
#                   it is not a bundled agent (tests/conformance/run_tck_mcp.sh does both)
#   TCK_TRANSPORT   transports to test (default: jsonrpc,http_json,grpc)
#   SWITCHBOARD_GRPC_DEFAULT_AGENT
#                   default $TCK_AGENT here: the TCK's gRPC client sends no tenant
#   TCK_LEVEL       must | should | may (default: all levels)
#   TCK_VENV, TCK_LOG, TCK_REF, TCK_PYTHON, TCK_WAIT
#                   passed through to run-a2a-tck (see that script)
#   SWITCHBOARD_ALLOW_PRIVATE_PUSH_URLS
#                   default true here: the TCK's webhook receiver listens on localhost,
#                   which the gateway's push-URL guard refuses otherwise. Set it to false
#                   to check the guard instead (the PUSH-DELIVER requirements then fail).
#   SWITCHBOARD_BIN the gateway command (default: .venv/bin/switchboard, else switchboard)
#
# Exit status: the TCK's (0 = no failures); 2 on a usage or start-up error.
set -euo pipefail

die() { echo "run_tck.sh: $*" >&2; exit 2; }

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"

TCK_DIR_ARG="${TCK_DIR:-}"
if [ $# -gt 0 ] && [ "$1" != "--" ]; then TCK_DIR_ARG="$1"; shift; fi
[ "${1:-}" = "--" ] && shift
[ -n "$TCK_DIR_ARG" ] || die "usage: $0 TCK_DIR [-- extra args]  (or set TCK_DIR)"
[ -d "$TCK_DIR_ARG" ] || die "TCK_DIR '$TCK_DIR_ARG' is not a directory"

RUNNER="../shared/tools/run-a2a-tck"
[ -x "$RUNNER" ] || die "no TCK runner at $RUNNER (relative to $REPO_ROOT)"

if [ -n "${SWITCHBOARD_BIN:-}" ]; then GATEWAY=("$SWITCHBOARD_BIN")
elif [ -x .venv/bin/switchboard ]; then GATEWAY=(.venv/bin/switchboard)
elif command -v switchboard >/dev/null 2>&1; then GATEWAY=(switchboard)
else die "no switchboard command (.venv/bin/switchboard or on PATH); set SWITCHBOARD_BIN"; fi

PYTHON="python3"
[ -x .venv/bin/python ] && PYTHON=".venv/bin/python"

free_port() {
  "$PYTHON" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

PORT="$(free_port)"
DATA_DIR="$(mktemp -d -t switchboard-tck.XXXXXX)"
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

echo "run_tck.sh: starting the gateway on 127.0.0.1:$PORT (data dir $DATA_DIR)"
SWITCHBOARD_ALLOW_PRIVATE_PUSH_URLS="${SWITCHBOARD_ALLOW_PRIVATE_PUSH_URLS:-true}" \
SWITCHBOARD_GRPC_PORT="${SWITCHBOARD_GRPC_PORT:-0}" \
SWITCHBOARD_GRPC_DEFAULT_AGENT="${SWITCHBOARD_GRPC_DEFAULT_AGENT:-${TCK_AGENT:-echo}}" \
  "${GATEWAY[@]}" serve --host 127.0.0.1 --port "$PORT" --data-dir "$DATA_DIR" >"$GATEWAY_LOG" 2>&1 &
GATEWAY_PID=$!

SUT_URL="http://127.0.0.1:$PORT/agents/${TCK_AGENT:-echo}"
CARD_URL="$SUT_URL/.well-known/agent-card.json"
for _ in $(seq 1 150); do
  kill -0 "$GATEWAY_PID" 2>/dev/null || { cat "$GATEWAY_LOG" >&2; die "the gateway exited during start-up"; }
  "$PYTHON" -c 'import sys, urllib.request
sys.exit(urllib.request.urlopen(sys.argv[1], timeout=2).status != 200)' "$CARD_URL" >/dev/null 2>&1 && break
  sleep 0.2
done

export TCK_TRANSPORT="${TCK_TRANSPORT:-jsonrpc,http_json,grpc}"
echo "run_tck.sh: TCK against $SUT_URL (transports $TCK_TRANSPORT, level ${TCK_LEVEL:-all})"
set +e
"$RUNNER" "$TCK_DIR_ARG" "$SUT_URL" ${1+-- "$@"} | tee "$DATA_DIR/tck.out"
rc=${PIPESTATUS[0]}
set -e

summary="$(grep -E '^tck: ' "$DATA_DIR/tck.out" | tail -1 || true)"
echo
echo "run_tck.sh: ${summary:-no summary line (see the output above)}"
if [ "$rc" -ne 0 ] && [ -s "$GATEWAY_LOG" ]; then
  echo "run_tck.sh: last gateway log lines:" >&2
  tail -n 20 "$GATEWAY_LOG" >&2
fi
exit "$rc"
