"""Fuzz A2A over gRPC, v1.0 and v0.3: never INTERNAL or UNKNOWN, no traceback logged.

A request is either structured (the JSON shapes of ``shapes`` parsed into the method's protobuf
message, so fields hold odd but well-typed values) or raw bytes that may not parse at all.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from a2a.compat.v0_3 import a2a_v0_3_pb2
from a2a.types import a2a_pb2
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, TIMEOUT_S, Target, Trouble
from tests.fuzz.shapes import PARAMS_V1, TEXT, maybe

CALL_S = 5.0
REFUSED_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
V1_METHODS = list(a2a_pb2.DESCRIPTOR.services_by_name["A2AService"].methods)
V03_METHODS = list(a2a_v0_3_pb2.DESCRIPTOR.services_by_name["A2AService"].methods)


def _structured(method: MethodDescriptor, shape: Any, tenant: str | None) -> bytes | None:
    """``shape`` parsed into the method's request message (None when it does not fit the message)."""
    cls = message_factory.GetMessageClass(method.input_type)
    try:
        request = json_format.ParseDict(shape, cls(), ignore_unknown_fields=True)
        if tenant is not None and "tenant" in cls.DESCRIPTOR.fields_by_name:
            request.tenant = tenant  # type: ignore[attr-defined]
        return request.SerializeToString()  # type: ignore[no-any-return]
    except Exception:  # protobuf fails in several ways (a SystemError on a lone surrogate key): send bytes instead
        return None


@st.composite
def grpc_call(draw: st.DrawFn, agents: tuple[str, ...]) -> tuple[MethodDescriptor, bytes]:
    method = draw(st.sampled_from(V1_METHODS + V03_METHODS))
    tenant = draw(st.one_of(st.sampled_from([*agents, "", "nope"]), st.none(), TEXT))
    shape = draw(maybe(PARAMS_V1.get(method.name, st.just({}))))
    body = _structured(method, shape, tenant) if isinstance(shape, dict) and draw(st.integers(0, 3)) else None
    if body is None:
        body = draw(st.binary(max_size=300))
    return method, body


@pytest.mark.fuzz
@pytest.mark.timeout(TIMEOUT_S)
@FUZZ
@given(data=st.data())
def test_grpc_fuzz(target: Target, trouble: Trouble, data: st.DataObject) -> None:
    method, body = data.draw(grpc_call(target.agents))
    credentials = data.draw(st.sampled_from(target.credentials))
    metadata = [(k.lower(), v) for k, v in credentials.items()]
    version = data.draw(st.sampled_from([None, "1.0", "0.3", "9"]))
    if version is not None:
        metadata.append(("a2a-version", version))
    path = f"/{method.containing_service.full_name}/{method.name}"
    trouble.take()
    with grpc.insecure_channel(target.gateway.grpc_target) as channel:
        try:
            if method.server_streaming:
                for _ in channel.unary_stream(path)(body, metadata=metadata, timeout=CALL_S):
                    pass
            else:
                channel.unary_unary(path)(body, metadata=metadata, timeout=CALL_S)
        except grpc.RpcError as exc:
            code = exc.code()  # type: ignore[attr-defined]
            assert code not in REFUSED_CODES, f"{path} {body[:200]!r}: {code} {exc.details()}"  # type: ignore[attr-defined]
    logged = trouble.take()
    assert not logged, f"{path} {body[:200]!r}: logged {logged}"
