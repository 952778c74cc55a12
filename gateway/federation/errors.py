"""Federation errors, and the one boundary where a peer call's foreign exceptions become them.

Each is the protocol's ``InternalError`` (JSON-RPC -32603, gRPC INTERNAL), so every binding
answers it as A2A says, with the reason in the message and in the error's details
(``data``, as strings: ``{"reason", "retryable", "peer"}``). Like every gateway error each carries a stable
``reason`` and ``retryable``: the engine retries (and counts against the participant's circuit
breaker) a peer that was unreachable, timed out or answered 5xx, never one that refused the call,
whose card did not verify, or that a loop guard stopped.
"""

from __future__ import annotations

from typing import ClassVar

import grpc
import httpx
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.utils.errors import A2AError, InternalError

_RETRYABLE_GRPC = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


class PeerError(InternalError):
    """A call to (or through) a peer gateway failed."""

    message = "the peer call failed"
    reason: ClassVar[str] = "peer-error"
    retryable: ClassVar[bool] = False

    def __init__(self, detail: str | None = None, *, peer: str = "") -> None:
        data = {"reason": self.reason, "retryable": str(self.retryable).lower(), "peer": peer}
        super().__init__(detail or self.message, data=data)
        self.peer = peer

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
