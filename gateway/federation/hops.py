"""Hops between gateways: a hop count, the path of gateway ids, and W3C trace context.

A request a gateway relays to a peer carries, in its message metadata,
``{"switchboard": {"hops": n, "via": [gateway id, ...]}, "traceparent": "00-<trace>-<span>-<flags>"}``,
and ``traceparent`` as a header (HTTP) or call metadata (gRPC) too. The engine copies ``via`` and
``traceparent`` from a run's request into each step's message, so they survive a workflow in
between. Before relaying, a gateway refuses a request whose path already holds its own id (it
came back around: A -> B -> A -> ...) or whose hop count would pass the limit.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from a2a.server.context import ServerCallContext
from a2a.types.a2a_pb2 import Message
from a2a.utils.errors import InvalidParamsError
from google.protobuf.struct_pb2 import Value

from gateway.errors import FederationLoopError, HopLimitError
from gateway.hosting.executor import METADATA_KEY

TRACEPARENT = "traceparent"
MAX_VIA = 64
MAX_HOP_COUNT = 1000
"""Far past any hop limit: a larger count, a negative or a fractional one is no gateway's (and no column's)."""
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_GATEWAY_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass(frozen=True)
class Hop:
    """Where a request is on its way through gateways."""

    hops: int = 0
    via: tuple[str, ...] = ()
    traceparent: str = ""
    max_hops: int | None = None
    """The nesting limit of the outermost run on the way (``max_hops`` in the entry): a nested run keeps to it too."""

    def metadata(self) -> dict[str, Any]:
        """The message metadata that carries this hop."""
        entry: dict[str, Any] = {"hops": self.hops}
        if self.via:
            entry["via"] = list(self.via)
        meta: dict[str, Any] = {METADATA_KEY: entry}
        if self.traceparent:
            meta[TRACEPARENT] = self.traceparent
        return meta

    def path(self) -> str:
        """The gateways on the path, readable."""
        return " -> ".join(self.via) or "(none)"


def valid_traceparent(value: object) -> str:
    """``value`` when it is a W3C ``traceparent`` this gateway can continue, else ``""``."""
    if not isinstance(value, str):
        return ""
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "ff" or set(match.group(2)) == {"0"} or set(match.group(3)) == {"0"}:
        return ""
    return match.group(0)


def child_traceparent(parent: str) -> str:
    """A ``traceparent`` for a call made on behalf of ``parent``: same trace, new span (a new trace without one)."""
    match = _TRACEPARENT.match(parent)
    if match is None:
        return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
    return f"00-{match.group(2)}-{secrets.token_hex(8)}-{match.group(4)}"


def hop_count(raw: object) -> int:
    """The hop count a message's metadata carries: 0 when it carries none (or no number).

    A number outside ``0..MAX_HOP_COUNT`` or not whole is refused with the protocol's
    ``InvalidParamsError``: it would otherwise reach the run's checkpoint (a 64-bit column) and
    every peer's, as ``1e19`` once did.
    """
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        return 0
    if not 0 <= raw <= MAX_HOP_COUNT or raw != int(raw):  # NaN fails the range test; inf never reaches int()
        raise InvalidParamsError(
            message=f"metadata {METADATA_KEY}.hops must be a whole number from 0 to {MAX_HOP_COUNT}, not {raw!r}"
        )
    return int(raw)


def hop_of(metadata: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> Hop:
    """The hop a request's metadata (and, for ``traceparent``, its headers) says it is on; malformed parts dropped.

    A hop count that is a number out of range is refused (``hop_count``), not dropped.
    """
    entry = metadata.get(METADATA_KEY)
    entry = entry if isinstance(entry, Mapping) else {}
    hops = hop_count(entry.get("hops", 0))
    raw_via = entry.get("via", [])
    via = tuple(v for v in raw_via if isinstance(v, str) and _GATEWAY_ID.match(v)) if isinstance(raw_via, list) else ()
    traceparent = valid_traceparent(metadata.get(TRACEPARENT)) or valid_traceparent((headers or {}).get(TRACEPARENT))
    ceiling = hop_count(entry["max_hops"]) if isinstance(entry.get("max_hops"), int | float) else None
    return Hop(hops=hops, via=via[:MAX_VIA], traceparent=traceparent, max_hops=ceiling)


def _plain(value: Value, keys: tuple[str, ...] = ()) -> Any:
    """A ``Struct`` value as Python (of an object, only ``keys``): what ``hop_of`` reads, not the whole entry."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        fields = value.struct_value.fields
        return {key: _plain(fields[key]) for key in keys if key in fields}
    if kind == "list_value":
        return [_plain(item) for item in value.list_value.values]
    if kind in ("number_value", "string_value", "bool_value"):
        return getattr(value, kind)
    return None


def message_hop(message: Message | None, headers: Mapping[str, str] | None = None) -> Hop:
    """The hop of an A2A message."""
    if message is None:
        return hop_of({}, headers)
    fields = message.metadata.fields  # only the entries read here are converted (a step's has several more)
    metadata: dict[str, Any] = {}
    if METADATA_KEY in fields:
        metadata[METADATA_KEY] = _plain(fields[METADATA_KEY], ("hops", "via", "max_hops"))
    if TRACEPARENT in fields:
        metadata[TRACEPARENT] = _plain(fields[TRACEPARENT])
    return hop_of(metadata, headers)


def next_hop(inbound: Hop, gateway_id: str, max_hops: int) -> Hop:
    """The hop of a request this gateway relays on; refuses a loop and a request past the hop limit."""
    if gateway_id in inbound.via:
        raise FederationLoopError(
            f"loop across gateways: this gateway ({gateway_id}) is already on the request's path "
            f"{inbound.path()}; it is not relayed again"
        )
    hops = inbound.hops + 1
    if hops > max_hops:
        raise HopLimitError(f"hop limit reached: relaying would make {hops} hops, the limit is {max_hops}")
    return Hop(hops=hops, via=(*inbound.via, gateway_id), traceparent=child_traceparent(inbound.traceparent))


def call_headers(context: ServerCallContext | None) -> dict[str, str]:
    """The request headers (HTTP) or call metadata (gRPC) of an inbound call, names lower-cased."""
    if context is None:
        return {}
    headers = context.state.get("headers")
    if isinstance(headers, Mapping):
        return {str(k).lower(): str(v) for k, v in headers.items()}
    grpc_context = context.state.get("grpc_context")
    metadata = grpc_context.invocation_metadata() if grpc_context is not None else None
    out: dict[str, str] = {}
    for key, value in metadata or ():
        out[key.lower()] = value if isinstance(value, str) else value.decode("utf-8", "replace")
    return out


def carried(message: Message) -> tuple[tuple[str, ...], str]:
    """What a run's request passes on to each step's message: the gateway path and the trace context."""
    hop = message_hop(message)
    return hop.via, hop.traceparent
