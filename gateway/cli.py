"""The ``switchboard`` command: argv/env -> Settings -> serve, plus client commands."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def _serve_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--host", help="bind address (env SWITCHBOARD_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (env SWITCHBOARD_PORT, default 8000)")
    p.add_argument("--grpc-port", type=int, help="gRPC port, 0: any free (env SWITCHBOARD_GRPC_PORT, default 50051)")
    p.add_argument(
        "--grpc-default-agent", help="agent for gRPC calls without a tenant (env SWITCHBOARD_GRPC_DEFAULT_AGENT)"
    )
    p.add_argument("--data-dir", type=Path, help="state folder (env SWITCHBOARD_DATA_DIR, default ./.switchboard)")
    p.add_argument("--agents", type=Path, help="agent files folder (env SWITCHBOARD_AGENTS, default: bundled)")
    p.add_argument("--public-url", help="URL clients reach the gateway at (env SWITCHBOARD_PUBLIC_URL)")
    p.add_argument("--database-url", help="PostgreSQL DSN instead of SQLite (env SWITCHBOARD_DATABASE_URL)")
    p.add_argument("--log-level", help="debug, info, warning, error (env SWITCHBOARD_LOG_LEVEL)")
    p.add_argument(
        "--log-format",
        choices=["auto", "json", "text"],
        help="log lines as JSON or text; auto: text on a terminal (env SWITCHBOARD_LOG_FORMAT)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback address with no auth configured (env SWITCHBOARD_INSECURE)",
    )


def _credentials(p: argparse.ArgumentParser) -> None:
    p.add_argument("--api-key", help="API key sent as X-API-Key (env SWITCHBOARD_API_KEY)")
    p.add_argument("--token", help="bearer token sent as Authorization (env SWITCHBOARD_TOKEN)")


def _client_options(p: argparse.ArgumentParser, *, output: bool = True) -> None:
    """Where the gateway is, how to authenticate, and how to print: the same on every client command."""
    p.add_argument("--url", default=None, help=f"gateway URL (env SWITCHBOARD_URL, default {DEFAULT_URL})")
    _credentials(p)
    if output:
        shown = p.add_mutually_exclusive_group()
        shown.add_argument("--json", action="store_true", help="print JSON for machines (integers stay integers)")
        shown.add_argument("--quiet", "-q", action="store_true", help="print the result only, no progress")


def _client_parsers(sub: Any) -> None:
    p = sub.add_parser("agents", help="list the agents a gateway hosts")
    _client_options(p)
    p = sub.add_parser("send", help="send a message to an agent over A2A and print its result")
    p.add_argument("agent", help="agent name, or an agent's URL")
    p.add_argument("text", nargs="?", default="", help="message text")
    p.add_argument("--file", action="append", default=[], type=Path, help="attach a file (repeatable)")
    p.add_argument("--stream", action="store_true", help="show progress live")
    _client_options(p)
    p = sub.add_parser("run", help="run a workflow over A2A, with live progress per step, and print its result")
    p.add_argument("workflow", help="workflow name, or its URL")
    p.add_argument("text", nargs="?", default="", help="the request")
    p.add_argument("--file", action="append", default=[], type=Path, help="attach a file (repeatable)")
    _client_options(p)
    tasks = sub.add_parser("tasks", help="list, get, cancel or answer your tasks").add_subparsers(
        dest="tasks_command", required=True
    )
    p = tasks.add_parser("list", help="your tasks, newest first")
    p.add_argument("--agent", help="only this agent's tasks (default: every agent)")
    p.add_argument("--state", help="only tasks in this state (working, input-required, completed, ...)")
    _client_options(p)
    for action, what in (("get", "print a task"), ("cancel", "cancel a running task")):
        p = tasks.add_parser(action, help=what)
        p.add_argument("task_id", help="the task's id")
        p.add_argument("--agent", help="the task's agent (default: every agent is asked)")
        _client_options(p)
    p = tasks.add_parser("reply", help="answer a task that waits for input (input-required)")
    p.add_argument("task_id", help="the task's id")
    p.add_argument("text", nargs="?", default="", help="the answer")
    p.add_argument("--file", action="append", default=[], type=Path, help="attach a file (repeatable)")
    p.add_argument("--agent", help="the task's agent (default: every agent is asked)")
    _client_options(p)


def _card_parsers(sub: Any) -> None:
    card = sub.add_parser("card", help="show or verify an agent card").add_subparsers(
        dest="card_command", required=True
    )
    p = card.add_parser("show", help="print a card readably")
    p.add_argument("url", help="agent URL or card URL")
    _credentials(p)
    p = card.add_parser("verify", help="verify a card's signatures; non-zero exit with the reason on failure")
    p.add_argument("url", help="agent URL or card URL")
    p.add_argument("--jwks", help="pinned JWKS: a URL or a file (default: the card's own jku, if allowed)")
    p.add_argument("--allow-origin", action="append", default=[], help="origin whose jku is trusted (repeatable)")
    p.add_argument(
        "--trust-card-origin",
        action="store_true",
        help="trust the keys the card's own origin serves at its jku (checks integrity, not who runs the server)",
    )
    _credentials(p)
    p = sub.add_parser("keys", help="list, rotate or retire the card-signing keys")
    p.add_argument("action", nargs="?", default="list", choices=["list", "rotate", "retire"])
    p.add_argument("kid", nargs="?", help="the key to retire")
    p.add_argument(
        "--data-dir",
        type=Path,
        help="the gateway's state folder, whose keys a new shared ring adopts (env SWITCHBOARD_DATA_DIR, "
        "default ./.switchboard)",
    )
    p.add_argument(
        "--database-url",
        help="PostgreSQL DSN: the replicas' shared keys, changed on every running replica at once "
        "(env SWITCHBOARD_DATABASE_URL)",
    )
    apikey = sub.add_parser("apikey", help="make API keys for callers").add_subparsers(
        dest="apikey_command", required=True
    )
    p = apikey.add_parser("new", help="print a fresh API key once, and the settings line that admits it")
    p.add_argument("name", help="the caller's name; its tasks are owned by apikey:NAME")
    p.add_argument("--scopes", default="", help="comma-separated scopes the key grants")


def _audit_parser(sub: Any) -> None:
    p = sub.add_parser("audit", help="read the audit trail: calls, refusals, admin and trust changes")
    p.add_argument("--since", default="24h", help="how far back: 90m, 24h, 7d, or an ISO 8601 time (default 24h)")
    p.add_argument("--caller", default="", help="only this caller (apikey:NAME or ISSUER|SUBJECT)")
    p.add_argument("--agent", default="", help="only this agent")
    p.add_argument("--limit", type=int, default=1000, help="at most this many rows, newest (default 1000)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--data-dir", type=Path, help="state folder (env SWITCHBOARD_DATA_DIR, default ./.switchboard)")
    p.add_argument("--database-url", help="PostgreSQL DSN instead of SQLite (env SWITCHBOARD_DATABASE_URL)")


def _triggers_parser(sub: Any) -> None:
    p = sub.add_parser("triggers", help="events triggers received: the runs they started and the dead letters")
    p.add_argument("--agent", default="", help="only this agent's triggers")
    p.add_argument("--trigger", default="", help="only this trigger")
    p.add_argument("--dead", action="store_true", help="only dead letters (events that could not start a run)")
    p.add_argument("--since", default="24h", help="how far back: 90m, 24h, 7d, or an ISO 8601 time (default 24h)")
    p.add_argument("--limit", type=int, default=1000, help="at most this many events, newest (default 1000)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument("--data-dir", type=Path, help="state folder (env SWITCHBOARD_DATA_DIR, default ./.switchboard)")
    p.add_argument("--database-url", help="PostgreSQL DSN instead of SQLite (env SWITCHBOARD_DATABASE_URL)")


def _mcp_parser(sub: Any) -> None:
    p = sub.add_parser("mcp", help="serve the MCP tools on stdin/stdout (for IDEs and assistants); logs go to stderr")
    p.add_argument("--data-dir", type=Path, help="state folder (env SWITCHBOARD_DATA_DIR, default ./.switchboard)")
    p.add_argument("--agents", type=Path, help="agent files folder (env SWITCHBOARD_AGENTS, default: bundled)")
    p.add_argument("--database-url", help="PostgreSQL DSN instead of SQLite (env SWITCHBOARD_DATABASE_URL)")
    p.add_argument("--log-level", help="debug, info, warning, error (env SWITCHBOARD_LOG_LEVEL)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("switchboard-gateway")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    parser = argparse.ArgumentParser(prog="switchboard", description="A protocol gateway for multi-agent systems.")
    parser.add_argument("--version", action="version", version=f"switchboard {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    _client_parsers(sub)
    _card_parsers(sub)
    _mcp_parser(sub)
    _audit_parser(sub)
    _triggers_parser(sub)
    return parser


def _settings(args: argparse.Namespace) -> Any:
    """Settings from the environment and ``args``; a setting that does not parse is one line naming it."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from gateway.client import CliError
    from gateway.settings import Settings

    overrides = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(map(str, e['loc']))} ({_where(args, str(e['loc'][0]))}): {e['msg']}" for e in exc.errors()
        )
        raise CliError(f"cannot start: invalid setting: {reasons}") from None
    except SettingsError as exc:  # an env value that is not the JSON its setting needs
        detail = f"{exc}: {exc.__cause__}" if exc.__cause__ else str(exc)
        raise CliError(f"cannot start: invalid setting: {' '.join(detail.split())}") from None


def _where(args: argparse.Namespace, field: str) -> str:
    env = f"SWITCHBOARD_{field.upper()}"
    return f"--{field.replace('_', '-')} or {env}" if field in vars(args) else env


def _serve(args: argparse.Namespace) -> int:
    from gateway.serve import run

    return run(_settings(args))


def _connection(args: argparse.Namespace) -> Any:
    from gateway.client import Connection

    return Connection(
        base_url=args.url or os.environ.get("SWITCHBOARD_URL") or DEFAULT_URL,
        api_key=args.api_key or os.environ.get("SWITCHBOARD_API_KEY") or None,
        token=args.token or os.environ.get("SWITCHBOARD_TOKEN") or None,
    )


def _mode(args: argparse.Namespace) -> Any:
    return "json" if args.json else "quiet" if args.quiet else "text"


def _agents(args: argparse.Namespace) -> int:
    from gateway.client import list_agents

    return asyncio.run(list_agents(_connection(args), _mode(args)))


def _send(args: argparse.Namespace) -> int:
    from gateway.client import send

    conn, stream = _connection(args), args.stream and not args.quiet
    return asyncio.run(send(conn, args.agent, args.text, args.file, stream=stream, mode=_mode(args)))


def _run(args: argparse.Namespace) -> int:
    from gateway.client import run_workflow

    return asyncio.run(run_workflow(_connection(args), args.workflow, args.text, args.file, mode=_mode(args)))


def _tasks(args: argparse.Namespace) -> int:
    from gateway import client

    conn, mode, command = _connection(args), _mode(args), args.tasks_command
    if command == "list":
        return asyncio.run(client.list_tasks(conn, args.agent, args.state, mode))
    if command == "get":
        return asyncio.run(client.get_task(conn, args.task_id, args.agent, mode))
    if command == "cancel":
        return asyncio.run(client.cancel_task(conn, args.task_id, args.agent, mode))
    return asyncio.run(client.reply_task(conn, args.task_id, args.agent, args.text, args.file, mode))


def _card(args: argparse.Namespace) -> int:
    from gateway.cards import verify

    args.url, url = None, args.url  # the card's URL, not the gateway's
    headers = _connection(args).headers()
    if args.card_command == "show":
        return asyncio.run(verify.show(url, headers))
    return asyncio.run(verify.verify(url, args.jwks, args.allow_origin, args.trust_card_origin, headers))


def _keys(args: argparse.Namespace) -> int:
    from gateway.cards.verify import keys

    settings = _settings(args)  # the data dir and database the gateway finds, flags and env alike
    url = settings.database_url
    if url and not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
        scheme = url.split(":", 1)[0]
        print(f"switchboard keys: --database-url {scheme!r} is neither postgresql:// nor sqlite:///", file=sys.stderr)
        return 2
    shared = url if url.startswith(("postgresql://", "postgres://")) else ""
    return keys(settings.data_dir, args.action, args.kid, shared)


def _audit(args: argparse.Namespace) -> int:
    from gateway.settings import Settings
    from gateway.telemetry.audit_cli import show

    overrides = {k: v for k, v in vars(args).items() if k in ("data_dir", "database_url") and v is not None}
    settings = Settings(**overrides)
    return show(settings.store_url, args.since, args.caller, args.agent, args.limit, as_json=args.json)


def _triggers(args: argparse.Namespace) -> int:
    from gateway.settings import Settings
    from gateway.triggers.ledger_cli import show

    overrides = {k: v for k, v in vars(args).items() if k in ("data_dir", "database_url") and v is not None}
    settings = Settings(**overrides)
    return show(
        settings.store_url, args.since, args.agent, args.trigger, dead=args.dead, limit=args.limit, as_json=args.json
    )


def _apikey(args: argparse.Namespace) -> int:
    from gateway.auth.api_keys import AuthConfigError, api_key_line, new_api_key

    key = new_api_key()
    try:
        line = api_key_line(args.name, key, args.scopes.split(","))
    except AuthConfigError as exc:
        print(f"switchboard apikey: {exc.detail}", file=sys.stderr)
        return 2
    print(f"API key for apikey:{args.name} (shown once; only its hash is kept):")
    print(key)
    print("Add this line to SWITCHBOARD_AUTH_API_KEYS (whitespace-separated) or to the SWITCHBOARD_AUTH_API_KEYS_FILE:")
    print(line)
    return 0


def _mcp(args: argparse.Namespace) -> int:
    from gateway.mcp_stdio import run_stdio

    return run_stdio(_settings(args))


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "serve": _serve,
    "agents": _agents,
    "send": _send,
    "run": _run,
    "tasks": _tasks,
    "card": _card,
    "keys": _keys,
    "apikey": _apikey,
    "mcp": _mcp,
    "audit": _audit,
    "triggers": _triggers,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``switchboard`` and ``python -m gateway``."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")  # grpc's C core would print its own line for a taken port
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`switchboard send ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # the CLI's edge: one line on stderr, the traceback only with --debug
        if args.debug:
            traceback.print_exc()
        return _report(exc, args.command)


def _report(exc: Exception, command: str) -> int:
    from gateway.client import CliError, describe

    if isinstance(exc, CliError):
        sys.stderr.write(f"switchboard {command}: {exc}\n")
        return exc.code
    sys.stderr.write(f"switchboard {command}: {describe(exc)} (run with --debug for the traceback)\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
