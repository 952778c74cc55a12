"""Run the gateway: logging, the safety check on the bind address, uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette

from gateway.app import create_app
from gateway.auth.policy import AuthSetup
from gateway.bindings.http_server import server_config
from gateway.errors import GatewayError
from gateway.settings import Settings

logger = logging.getLogger("gateway")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)  # an access-log line's fields (gateway.telemetry.access)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(level: str, log_format: str = "json") -> None:
    """Logs on stderr: JSON lines, or readable text (``auto``: text when stderr is a terminal)."""
    handler = logging.StreamHandler(sys.stderr)
    text = log_format == "text" or (log_format == "auto" and sys.stderr.isatty())
    handler.setFormatter(logging.Formatter(TEXT_FORMAT) if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def unsafe_bind(settings: Settings, setup: AuthSetup | None = None) -> str | None:
    """Why serving ``settings`` would be unsafe: a non-loopback address with no auth and no ``insecure``.

    Auth counts as configured only when a credential parses: a key file holding no key and an
    empty issuer list leave every caller anonymous, as if nothing were set. ``setup`` is parsed
    from ``settings`` when not given (``AuthConfigError`` when a setting cannot be honoured).
    """
    if is_loopback(settings.host) or settings.insecure:
        return None
    setup = setup or AuthSetup.from_settings(settings)
    if setup.enabled:
        return None
    empty = f" ({setup.describe().removeprefix('auth: ')})" if setup.empty_key_file is not None else ""
    return (
        f"refusing to serve {settings.host or 'every address'} without authentication{empty}: anyone who can "
        "reach it could run every agent and read every task. Configure API keys (SWITCHBOARD_AUTH_API_KEYS, see "
        "`switchboard apikey new`) or token issuers (SWITCHBOARD_AUTH_ISSUERS), bind 127.0.0.1, or pass "
        "--insecure (SWITCHBOARD_INSECURE=true) to serve it open anyway"
    )


def run(settings: Settings) -> int:
    """Serve until interrupted; returns the process exit code."""
    configure_logging(settings.log_level, settings.log_format)
    try:
        setup = AuthSetup.from_settings(settings)
    except GatewayError as exc:
        logger.error("cannot start: %s", exc.detail)
        return 2
    refusal = unsafe_bind(settings, setup)
    if refusal is not None:
        logger.error("cannot start: %s", refusal)
        return 2
    logger.log(logging.WARNING if setup.empty_key_file is not None else logging.INFO, "%s", setup.describe())
    if not is_loopback(settings.host) and not setup.enabled:
        logger.warning("serving %s with no authentication (--insecure): every caller is anonymous", settings.host)
    try:
        app = create_app(settings)
    except GatewayError as exc:
        logger.error("cannot start: %s", exc.detail)
        return 2
    try:
        sock = bind_http(settings.host, settings.port)
    except OSError as exc:
        logger.error(
            "cannot start: cannot serve HTTP on %s:%d: %s; choose another with --port (SWITCHBOARD_PORT)",
            settings.host,
            settings.port,
            exc.strerror or exc,
        )
        return 2
    with sock:
        return asyncio.run(_serve(app, settings, sock))


def bind_http(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound before anything starts, so a taken port is the first thing said."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP named, as getaddrinfo would give it: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it Nagle and delayed ACKs held each small response ~40 ms.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, stopping on SIGINT/SIGTERM without raising the signal again once stopped.

    uvicorn re-raises a captured signal after serving; the gateway's lifespan still has to close
    (it runs around the server here), so the signal must not interrupt it.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def _serve(app: Starlette, settings: Settings, sock: socket.socket) -> int:
    """Open the app's resources (its lifespan) first, report a failure as one line, then serve HTTP."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            await stack.enter_async_context(app.router.lifespan_context(app))
        except GatewayError as exc:
            logger.error("cannot start: %s", exc.detail)
            return 2
        logger.info("serving %d agent(s) at %s", len(app.state.gateway.agents), settings.base_url)
        config = server_config(
            app,
            settings,
            lifespan="off",  # entered above, so a failure to start is reported before serving is claimed
            log_config=None,
            log_level=settings.log_level.lower(),
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        await _Server(config).serve(sockets=[sock])
    return 0
