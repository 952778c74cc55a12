"""The gateway's own errors and the one table that maps them onto each wire.

Where the A2A protocol defines an error (task not found, invalid params, ...) the SDK's own
error class is raised instead; these are for what only the gateway knows about. Two families
share the table: ``GatewayError`` (raised at the gateway's own edge: auth, limits, start-up), and
``PeerError`` (federation: a call to or through a peer failed, or a loop guard refused it), which
is an A2A error so that the SDK's handlers answer it on every binding once ``register_with_sdk``
has taught them its row, and a relaying gateway reads a peer's refusal back as the same class.
Neither is ever the 500 / -32603 / INTERNAL of a fault inside this gateway, except
``GatewayError`` itself; the reason is in the message and in the error's details
(``google.rpc.ErrorInfo`` reason, and for peers metadata ``{"reason", "retryable", "peer"}``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

from a2a.utils.errors import InternalError


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


class PeerError(InternalError):
    """A call to (or through) a peer gateway failed."""

    message = "the peer call failed"
    reason: ClassVar[str] = "peer-error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, data: dict[str, Any] | None = None, *, peer: str = "") -> None:
        # ``data`` is given when the SDK's client rebuilds the error from a peer's answer (its ErrorInfo metadata).
        peer = peer or str((data or {}).get("peer") or "")
        data = {"reason": self.reason, "retryable": str(self.retryable).lower(), "peer": peer}
        super().__init__(detail or self.message, data=data)

    @property
    def peer(self) -> str:
        """The peer the call went to (as its details say: the SDK's REST client sets them after building it)."""
        return str((self.data or {}).get("peer") or "")

    @property
    def detail(self) -> str:
        """The human-readable message."""
        return self.message


class PeerUnavailableError(PeerError):
    """The peer could not be reached, or answered with a server error."""

    message = "the peer is unavailable"
    reason = "peer-unavailable"
    retryable = True


class PeerTimeoutError(PeerError):
    """The peer did not answer in time."""

    message = "the peer did not answer in time"
    reason = "peer-timeout"
    retryable = True


class PeerRefusedError(PeerError):
    """The peer answered, and refused the call (4xx, or an A2A error of its own)."""

    message = "the peer refused the call"
    reason = "peer-refused"


class PeerUntrustedError(PeerError):
    """The peer's card did not verify against the trust anchors configured for it."""

    message = "the peer's card is not trusted"
    reason = "peer-card-untrusted"


class PeerCredentialsError(PeerError):
    """This gateway's credentials for the peer are missing or were refused by its token endpoint."""

    message = "no usable credentials for the peer"
    reason = "peer-credentials"


class FederationLoopError(PeerError):
    """A request came back to a gateway already on its path (A -> B -> A ...)."""

    message = "federation loop"
    reason = "federation-loop"


class HopLimitError(PeerError):
    """A request went through more gateways than the hop limit allows."""

    message = "hop limit reached"
    reason = "hop-limit"


class PeerBadResponseError(PeerError):
    """The peer answered with bytes that are not an A2A answer (not UTF-8, not JSON, not the protocol's messages)."""

    message = "the peer's answer is not valid A2A"
    reason = "peer-bad-response"


class StoreUnavailableError(InternalError):
    """The shared task store (PostgreSQL) cannot be reached right now: new work is refused until it is back.

    Retryable: nothing was accepted, so the same request can be sent again (to any replica). Its
    wire form is the one clients retry: HTTP 503, gRPC UNAVAILABLE, and on JSON-RPC (where A2A
    defines no retryable code) a server error whose data says ``"retryable": "true"``, as the
    peer errors' data does.
    """

    message = "the task store is unreachable right now; send the request again shortly"
    reason: ClassVar[str] = "store-unavailable"
    retryable: ClassVar[bool] = True

    def __init__(self, detail: str | None = None, data: dict[str, Any] | None = None) -> None:
        super().__init__(detail or self.message, data={"reason": self.reason, "retryable": "true"})


class AgentBusyError(InternalError):
    """An agent (or one caller's share of it) at its concurrency cap with its queue full: retry after the hint.

    An A2A error, so the SDK's handlers answer it on every binding once ``register_with_sdk`` has
    taught them its row; its data carries ``retryAfterSeconds`` (``gateway.hosting.admission``).
    """

    message = "the agent is busy"
    reason: ClassVar[str] = "agent-busy"
    retryable: ClassVar[bool] = True

    def __init__(self, detail: str | None = None, data: dict[str, Any] | None = None, *, retry_after_s: float = 1.0):
        # ``data`` is given when the SDK's client rebuilds the error from an answer (its ErrorInfo metadata).
        if data is None:
            data = {"reason": self.reason, "retryable": "true", "retryAfterSeconds": f"{retry_after_s:g}"}
        super().__init__(detail or self.message, data=data)

    @property
    def retry_after_s(self) -> float:
        """The hint: seconds to wait before trying again."""
        try:
            return float((self.data or {}).get("retryAfterSeconds", 1))
        except (TypeError, ValueError):
            return 1.0


class UnknownTriggerError(GatewayError):
    """An event for an agent and trigger name the gateway has no webhook or push trigger for."""

    message = "no such trigger"
    reason = "unknown-trigger"


class TriggerNotConfiguredError(GatewayError):
    """A trigger whose secret (an environment variable) is not set: it refuses every event until it is."""

    message = "the trigger is not configured"
    reason = "trigger-not-configured"
    retryable = True


class InvalidEventError(GatewayError):
    """An event that cannot start a run (not valid input, or refused by the agent): dead-lettered, never retried."""

    message = "the event is not valid input for the agent"
    reason = "invalid-event"


class EventBusyError(GatewayError):
    """Another delivery of the same event is starting its run right now: try again shortly."""

    message = "this event's run is being started by another delivery"
    reason = "event-in-progress"
    retryable = True


def retry_after_seconds(hint_s: float) -> int:
    """The whole seconds a ``Retry-After`` header or gRPC ``RetryInfo`` says for a hint of ``hint_s``.

    Rounded up, and at least 1: a client that waits less than the hint is only refused again.
    """
    return max(1, math.ceil(hint_s))


WIRE: dict[type[GatewayError] | type[InternalError], WireError] = {
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
    # Federation: a client-side code, never this gateway's INTERNAL.
    PeerError: WireError(502, -32050, "UNKNOWN"),
    PeerUnavailableError: WireError(503, -32051, "UNAVAILABLE"),
    PeerTimeoutError: WireError(504, -32052, "DEADLINE_EXCEEDED"),
    PeerRefusedError: WireError(424, -32053, "FAILED_PRECONDITION"),
    PeerUntrustedError: WireError(503, -32054, "FAILED_PRECONDITION"),  # out of service until its card verifies
    PeerCredentialsError: WireError(503, -32055, "FAILED_PRECONDITION"),
    FederationLoopError: WireError(409, -32056, "FAILED_PRECONDITION"),
    HopLimitError: WireError(409, -32057, "FAILED_PRECONDITION"),
    PeerBadResponseError: WireError(502, -32058, "UNKNOWN"),
    StoreUnavailableError: WireError(503, -32060, "UNAVAILABLE"),
    # Admission control: retryable, with a retry-after hint (gateway.hosting.admission).
    AgentBusyError: WireError(429, -32061, "RESOURCE_EXHAUSTED"),
    # Triggers (gateway.triggers): answered only on their own HTTP endpoint.
    UnknownTriggerError: WireError(404, -32001, "NOT_FOUND"),
    TriggerNotConfiguredError: WireError(503, -32062, "FAILED_PRECONDITION"),
    InvalidEventError: WireError(422, -32602, "INVALID_ARGUMENT"),
    EventBusyError: WireError(409, -32063, "ABORTED"),
}


def wire_for(error: GatewayError | InternalError) -> WireError:
    """The mapping of ``error``, falling back along its class hierarchy."""
    for cls in type(error).__mro__:
        if cls in WIRE:
            return WIRE[cls]
    return WIRE[GatewayError]


def error_reason(error_type: type[PeerError] | type[StoreUnavailableError] | type[AgentBusyError]) -> str:
    """The ``google.rpc.ErrorInfo`` reason of ``error_type`` (``hop-limit`` -> ``HOP_LIMIT``)."""
    return error_type.reason.upper().replace("-", "_")


def register_with_sdk() -> None:
    """Add ``WIRE``'s A2A errors (peers', the store's, a busy agent's) to the SDK's error tables (idempotent).

    The SDK maps an error to its wire form by its exact class, in module-level tables its server
    handlers (JSON-RPC, REST, gRPC details) and its clients (JSON-RPC code, REST and gRPC
    ErrorInfo reason, back to a class) all read; without an entry an error is -32603 / 500 /
    INTERNAL. The JSON-RPC client's reverse table is built once at import, so it is added to too.
    """
    from a2a.client.transports import jsonrpc as jsonrpc_client
    from a2a.server.jsonrpc_models import JSONRPCError
    from a2a.server.request_handlers import response_helpers
    from a2a.utils import errors as sdk_errors
    from a2a.utils.errors import ErrorMapping

    for error_type, wire in WIRE.items():
        if not issubclass(error_type, PeerError | StoreUnavailableError | AgentBusyError):
            continue  # a GatewayError is answered by the gateway's edge, before the SDK sees the request
        reason = error_reason(error_type)
        sdk_errors.JSON_RPC_ERROR_CODE_MAP[error_type] = wire.jsonrpc_code
        sdk_errors.A2A_ERROR_MAPPING[error_type] = ErrorMapping(wire.http_status, wire.grpc_status, reason)
        sdk_errors.A2A_ERROR_REASONS[error_type] = reason
        sdk_errors.A2A_REASON_TO_ERROR[reason] = error_type
        response_helpers.EXCEPTION_MAP[error_type] = JSONRPCError
        jsonrpc_client._JSON_RPC_ERROR_CODE_TO_A2A_ERROR[wire.jsonrpc_code] = error_type
