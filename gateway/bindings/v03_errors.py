"""v0.3 clients get client errors for their mistakes, not -32603 or a broken stream.

JSON-RPC: a v0.3 client gets an error's own code, not -32603, for errors v0.3 has no code for.

a2a-sdk's v0.3 adapter answers every A2A error outside the v0.3 table as ``-32603`` (internal
error): a v0.3 method sent with ``A2A-Version: 1.0`` (VersionNotSupported), a federation
refusal, any error the gateway registers. Those are the caller's or a peer's problem, and their
v1.0 codes lie in JSON-RPC's range for server-defined errors (-32000 to -32099), which a v0.3
client reads as an error with that code and message. ``use_own_codes_for_v03`` makes the adapter
keep them; an error the SDK has no code for at all stays -32603.

HTTP+JSON: the v0.3 adapter starts a stream (``message:stream``, ``tasks/{id}:subscribe``) before
the handler has produced anything, so an error the handler raises first (an unknown task) breaks
the connection after the SSE headers. The v1.0 dispatcher fetches the first event before it
answers; ``use_own_codes_for_v03`` gives the v0.3 adapter the same order, so such an error is the
protocol's JSON error response (404 for an unknown task).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

from a2a.compat.v0_3 import jsonrpc_adapter
from a2a.compat.v0_3 import types as types_v03
from a2a.compat.v0_3.rest_adapter import REST03Adapter
from a2a.server.context import ServerCallContext
from a2a.server.routes.common import create_event_source_response
from a2a.utils import json_utils
from a2a.utils.error_handlers import rest_stream_error_handler
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP, A2AError, InvalidRequestError
from starlette.requests import Request
from starlette.responses import Response

INTERNAL = -32603


def v03_jsonrpc_error(error: A2AError) -> types_v03.JSONRPCError:
    """``error`` as a v0.3 JSON-RPC error object, with the code its class has (-32603 only when it has none)."""
    return types_v03.JSONRPCError(
        code=JSON_RPC_ERROR_CODE_MAP.get(type(error), INTERNAL), message=error.message, data=error.data
    )


@rest_stream_error_handler
async def primed_v03_stream(
    self: REST03Adapter,
    method: Callable[[Request, ServerCallContext], AsyncIterable[Any]],
    request: Request,
) -> Response:
    """The v0.3 adapter's streaming handler, fetching the first event before the stream's headers go out."""
    try:
        await request.body()  # read before the stream starts, as the SDK does
    except (ValueError, RuntimeError, OSError) as exc:
        raise InvalidRequestError(message=f"Failed to pre-consume request body: {exc}") from exc
    stream = aiter(method(request, self._context_builder.build(request)))
    grace = self._shutdown_grace_period
    try:
        first = await anext(stream)
    except StopAsyncIteration:
        return create_event_source_response(iter([]), shutdown_grace_period=grace)

    async def events() -> AsyncIterator[str]:
        yield json_utils.dumps(first)
        async for item in stream:
            yield json_utils.dumps(item)

    return create_event_source_response(events(), shutdown_grace_period=grace)


def use_own_codes_for_v03() -> None:
    """Patch the SDK's v0.3 adapters as the module says (each looks the patched name up when it builds or answers)."""
    jsonrpc_adapter._to_v03_jsonrpc_error = v03_jsonrpc_error  # type: ignore[attr-defined]
    REST03Adapter._handle_streaming_request = primed_v03_stream  # type: ignore[method-assign,assignment]
