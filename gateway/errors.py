"""The gateway's own errors and the one table that maps them onto each wire.

Where the A2A protocol defines an error (task not found, invalid params, ...) the SDK's own
error class is raised instead; these are for what only the gateway knows about.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple


class WireError(NamedTuple):
    """How one error shows on each binding."""

    http_status: int
    jsonrpc_code: int
    grpc_status: str


class GatewayError(Exception):
    """Base of the gateway's errors; each subclass has a default message and a wire mapping."""

    message: ClassVar[str] = "gateway error"
    reason: ClassVar[str] = "gateway-error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.message)

    @property
    def detail(self) -> str:
        """The human-readable message."""
        return str(self.args[0])


class AgentFileError(GatewayError):
    """An agent file that does not load; the message names the file and the field."""

    message = "invalid agent file"
    reason = "invalid-agent-file"


class UnknownAgentError(GatewayError):
    """A request for an agent the gateway does not host."""

    message = "unknown agent"
    reason = "unknown-agent"


class RuntimeLoadError(GatewayError):
    """An agent runtime that cannot be imported or built."""

    message = "agent runtime could not be loaded"
    reason = "runtime-load-failed"


class PayloadTooLargeError(GatewayError):
    """A request body over the configured limit."""

    message = "request body too large"
    reason = "payload-too-large"


class UnsupportedMediaTypeError(GatewayError):
    """A request body whose content type the binding does not accept."""

    message = "unsupported media type"
    reason = "unsupported-media-type"


class AuthenticationError(GatewayError):
    """A request to a protected agent without valid credentials (missing, expired, forged, unknown issuer)."""

    message = "authentication required"
    reason = "unauthenticated"


class MissingCredentialsError(AuthenticationError):
    """A request to a protected agent that carries no credentials at all."""

    message = "credentials required"


class PermissionDeniedError(GatewayError):
    """An authenticated caller without the scopes the agent or skill requires."""

    message = "permission denied"
    reason = "permission-denied"


class CallerLimitError(GatewayError):
    """A caller holding as many of a capped resource (MCP sessions, subscriptions) as it may; others are unaffected."""

    message = "too many open resources for this caller"
    reason = "caller-limit"
    retryable = True


class StartupError(GatewayError):
    """A resource the gateway cannot open at start (database, port); the message says which and what to change."""

    message = "the gateway cannot start"
    reason = "startup-failed"


WIRE: dict[type[GatewayError], WireError] = {
    GatewayError: WireError(500, -32603, "INTERNAL"),
    AgentFileError: WireError(500, -32603, "FAILED_PRECONDITION"),
    UnknownAgentError: WireError(404, -32001, "NOT_FOUND"),
    RuntimeLoadError: WireError(500, -32603, "INTERNAL"),
    PayloadTooLargeError: WireError(413, -32600, "RESOURCE_EXHAUSTED"),
    UnsupportedMediaTypeError: WireError(415, -32005, "INVALID_ARGUMENT"),
    # A2A leaves these to the binding ("JSON-RPC custom error"): codes in the server-error range,
    # clear of A2A's own -32001..-32009.
    AuthenticationError: WireError(401, -32040, "UNAUTHENTICATED"),
    PermissionDeniedError: WireError(403, -32043, "PERMISSION_DENIED"),
    CallerLimitError: WireError(429, -32029, "RESOURCE_EXHAUSTED"),
}


def wire_for(error: GatewayError) -> WireError:
    """The mapping of ``error``, falling back along its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in WIRE:
            return WIRE[cls]  # type: ignore[index]
    return WIRE[GatewayError]
