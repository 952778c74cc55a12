"""Log hygiene: a client's mistake is one short line, and nothing a client sent fills the log.

The SDKs log some client mistakes with a traceback (a JSON-RPC request whose ``id`` or ``method``
is not valid, params that do not parse) and echo what the client sent into the log (a JSON-RPC
``id`` of megabytes). ``quiet_client_mistakes`` puts a filter on those SDK loggers: such a record
becomes one INFO line naming the exception, and every text argument is clipped to ``CLIP_CHARS``.
Gateway code clips what it logs from the wire with ``clip``.
"""

from __future__ import annotations

import logging

CLIP_CHARS = 200

SDK_LOGGERS = (
    "a2a.server.routes.jsonrpc_dispatcher",
    "a2a.server.routes.rest_dispatcher",
    "a2a.utils.error_handlers",
    "a2a.compat.v0_3.jsonrpc_adapter",
    "a2a.compat.v0_3.rest_adapter",
    "a2a.compat.v0_3.grpc_handler",
    "a2a.server.request_handlers.request_handler",
)
"""The SDK modules that log about a request as it is parsed and answered."""

CLIENT_MISTAKES = frozenset(
    {
        "Failed to validate base JSON-RPC request",
        "Failed to validate base JSON-RPC request for v0.3",
        "Failed to parse request params",
        "Validation failure: %s",  # a call to an operation the agent does not offer (push, extended card)
    }
)
"""Messages the SDK logs as errors (some with a traceback) although what failed is the client's request."""


def clip(value: object, limit: int = CLIP_CHARS) -> str:
    """``value`` as text of at most about ``limit`` characters, saying how much was left out."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


class ClientMistakeFilter(logging.Filter):
    """Clips a record's text arguments; turns a known client mistake into one INFO line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(clip(a) if isinstance(a, str) else a for a in record.args)
        if record.msg in CLIENT_MISTAKES:
            if record.exc_info:
                error = record.exc_info[1]
                record.msg = f"{record.msg}: %s"
                record.args = (*(record.args or ()), clip(f"{type(error).__name__}: {error}"))  # type: ignore[misc]
                record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        return True


def quiet_client_mistakes() -> None:
    """Put ``ClientMistakeFilter`` on the SDK loggers (once per process)."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ClientMistakeFilter) for f in logger.filters):
            logger.addFilter(ClientMistakeFilter())
