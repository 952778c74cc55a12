"""Run the gateway: logging, the safety check on the bind address, uvicorn."""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time

import uvicorn

from gateway.app import create_app
from gateway.auth import AuthSetup
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
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str) -> None:
    """Structured JSON logs on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
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
    configure_logging(settings.log_level)
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
    logger.info("serving %d agent(s) at %s", len(app.state.gateway.agents), settings.base_url)
    config = server_config(
        app,
        settings,
        host=settings.host,
        port=settings.port,
        log_config=None,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    uvicorn.Server(config).run()
    return 0
