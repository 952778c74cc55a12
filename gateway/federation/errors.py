"""Federation errors, and the one boundary where a peer call's foreign exceptions become them.

Each is an A2A error with a wire mapping of its own (``WIRE``: an HTTP status, a JSON-RPC code
in the implementation-defined server range next to the gateway's, a gRPC status), never the
500/-32603/INTERNAL of a fault inside this gateway; the reason is in the message and in the
error's details (``google.rpc.ErrorInfo`` reason, and metadata as strings: ``{"reason",
"retryable", "peer"}``). ``register_with_sdk`` teaches the SDK's error tables these mappings, on
the server side (so every binding answers with them) and the client side (so a relaying
gateway reads a peer's federation error back as the same class).

Like every gateway error each carries a stable ``reason`` and ``retryable``: the engine retries
(and counts against the participant's circuit breaker) a peer that was unreachable, timed out or
answered 5xx, never one that refused the call, whose card did not verify, that answered with
bytes that are not A2A, or that a loop guard stopped.
"""

from __future__ import annotations

from typing import Any, ClassVar

import grpc
import httpx
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.client.transports import jsonrpc as jsonrpc_client
from a2a.server.jsonrpc_models import JSONRPCError
from a2a.server.request_handlers import response_helpers
from a2a.utils import errors as sdk_errors
from a2a.utils.errors import A2AError, ErrorMapping, InternalError
from google.protobuf.json_format import ParseError

from gateway.errors import WireError

_RETRYABLE_GRPC = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


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


WIRE: dict[type[PeerError], WireError] = {
    PeerError: WireError(502, -32050, "UNKNOWN"),
    PeerUnavailableError: WireError(503, -32051, "UNAVAILABLE"),
    PeerTimeoutError: WireError(504, -32052, "DEADLINE_EXCEEDED"),
    PeerRefusedError: WireError(424, -32053, "FAILED_PRECONDITION"),
    PeerUntrustedError: WireError(503, -32054, "FAILED_PRECONDITION"),  # out of service until its card verifies
    PeerCredentialsError: WireError(503, -32055, "FAILED_PRECONDITION"),
    FederationLoopError: WireError(409, -32056, "FAILED_PRECONDITION"),
    HopLimitError: WireError(409, -32057, "FAILED_PRECONDITION"),
    PeerBadResponseError: WireError(502, -32058, "UNKNOWN"),
}
"""How each federation error shows on each binding: a client-side code, never this gateway's INTERNAL."""


def error_reason(error_type: type[PeerError]) -> str:
    """The ``google.rpc.ErrorInfo`` reason of ``error_type`` (``hop-limit`` -> ``HOP_LIMIT``)."""
    return error_type.reason.upper().replace("-", "_")


def register_with_sdk() -> None:
    """Add ``WIRE`` to the SDK's error tables (idempotent).

    The SDK maps an error to its wire form by its exact class, in module-level tables its server
    handlers (JSON-RPC, REST, gRPC details) and its clients (JSON-RPC code, REST and gRPC
    ErrorInfo reason, back to a class) all read; without an entry an error is -32603 / 500 /
    INTERNAL. The JSON-RPC client's reverse table is built once at import, so it is added to too.
    """
    for error_type, wire in WIRE.items():
        reason = error_reason(error_type)
        sdk_errors.JSON_RPC_ERROR_CODE_MAP[error_type] = wire.jsonrpc_code
        sdk_errors.A2A_ERROR_MAPPING[error_type] = ErrorMapping(wire.http_status, wire.grpc_status, reason)
        sdk_errors.A2A_ERROR_REASONS[error_type] = reason
        sdk_errors.A2A_REASON_TO_ERROR[reason] = error_type
        response_helpers.EXCEPTION_MAP[error_type] = JSONRPCError
        jsonrpc_client._JSON_RPC_ERROR_CODE_TO_A2A_ERROR[wire.jsonrpc_code] = error_type


def _grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    cause = exc.__cause__
    return cause.code() if isinstance(cause, grpc.aio.AioRpcError) else None


def translate(exc: BaseException, peer: str, doing: str) -> PeerError:
    """``exc``, raised by the SDK client or httpx while ``doing`` something with ``peer``, as a ``PeerError``."""
    if isinstance(exc, PeerError):
        return exc
    where = f"{peer}: {doing}"
    if isinstance(exc, A2AClientTimeoutError | httpx.TimeoutException | TimeoutError):
        return PeerTimeoutError(f"{where}: no answer in time", peer=peer)
    cause = exc.__cause__ if isinstance(exc, A2AClientError) else exc
    if isinstance(cause, ValueError | ParseError):
        # Bytes that are not UTF-8, JSON or the protocol's messages (a raw UnicodeDecodeError from the SDK, ...).
        problem = f"{type(cause).__name__}: {cause}"[:300]
        return PeerBadResponseError(f"{where}: the peer's answer is not valid A2A: {problem}", peer=peer)
    if isinstance(cause, httpx.HTTPStatusError):
        status = cause.response.status_code
        error_type = PeerUnavailableError if status >= 500 else PeerRefusedError
        return error_type(f"{where}: HTTP {status}", peer=peer)
    if isinstance(cause, httpx.TransportError | OSError):
        return PeerUnavailableError(f"{where}: {type(cause).__name__}: {cause}", peer=peer)
    code = _grpc_code(exc)
    if code is not None:
        error_type = PeerUnavailableError if code in _RETRYABLE_GRPC else PeerRefusedError
        return error_type(f"{where}: gRPC {code.name}: {exc}", peer=peer)
    if isinstance(exc, A2AError) and isinstance(exc.data, dict) and exc.data.get("retryable") == "true":
        # A gateway behind the peer was unavailable: the peer says trying again may help.
        return PeerUnavailableError(f"{where}: {exc.message}", peer=peer)
    if isinstance(exc, A2AError):
        # The peer's own protocol error (task not found, invalid params, ...): it answered and refused.
        return PeerRefusedError(f"{where}: {type(exc).__name__}: {getattr(exc, 'message', exc)}", peer=peer)
    return PeerUnavailableError(f"{where}: {type(exc).__name__}: {exc}", peer=peer)
