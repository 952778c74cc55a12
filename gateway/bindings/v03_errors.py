"""v0.3 JSON-RPC clients get an error's own code, not -32603, for errors v0.3 has no code for.

a2a-sdk's v0.3 adapter answers every A2A error outside the v0.3 table as ``-32603`` (internal
error): a v0.3 method sent with ``A2A-Version: 1.0`` (VersionNotSupported), a federation
refusal, any error the gateway registers. Those are the caller's or a peer's problem, and their
v1.0 codes lie in JSON-RPC's range for server-defined errors (-32000 to -32099), which a v0.3
client reads as an error with that code and message. ``use_own_codes_for_v03`` makes the adapter
keep them; an error the SDK has no code for at all stays -32603.
"""

from __future__ import annotations

from a2a.compat.v0_3 import jsonrpc_adapter
from a2a.compat.v0_3 import types as types_v03
from a2a.utils.errors import JSON_RPC_ERROR_CODE_MAP, A2AError

INTERNAL = -32603


def v03_jsonrpc_error(error: A2AError) -> types_v03.JSONRPCError:
    """``error`` as a v0.3 JSON-RPC error object, with the code its class has (-32603 only when it has none)."""
    return types_v03.JSONRPCError(
        code=JSON_RPC_ERROR_CODE_MAP.get(type(error), INTERNAL), message=error.message, data=error.data
    )


def use_own_codes_for_v03() -> None:
    """Have the SDK's v0.3 JSON-RPC adapter answer with ``v03_jsonrpc_error`` (it looks the function up per call)."""
    jsonrpc_adapter._to_v03_jsonrpc_error = v03_jsonrpc_error  # type: ignore[attr-defined]
