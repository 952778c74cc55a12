"""The one boundary where a peer call's foreign exceptions (httpx, grpc, the SDK client's) become
federation errors.

The errors themselves (``PeerError`` and its kinds) and how each shows on every wire are in
``gateway.errors``, beside the gateway's other errors: one table for all of them. Like every
gateway error each carries a stable ``reason`` and ``retryable``: the engine retries (and counts
against the participant's circuit breaker) a peer that was unreachable, timed out or answered
5xx, never one that refused the call, whose card did not verify, that answered with bytes that
are not A2A, or that a loop guard stopped.
"""

from __future__ import annotations

import grpc
import httpx
from a2a.client.errors import A2AClientError, A2AClientTimeoutError
from a2a.utils.errors import A2AError
from google.protobuf.json_format import ParseError

from gateway.errors import (
    PeerBadResponseError,
    PeerError,
    PeerRefusedError,
    PeerTimeoutError,
    PeerUnavailableError,
)

_RETRYABLE_GRPC = frozenset(
    {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


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
