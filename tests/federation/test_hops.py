"""Hop count, gateway path and trace context: carried, continued, and loops and long paths refused."""

from __future__ import annotations

import pytest
from a2a.types.a2a_pb2 import Message
from a2a.utils.errors import InvalidParamsError

from gateway.errors import FederationLoopError, HopLimitError
from gateway.federation.hops import (
    MAX_HOP_COUNT,
    Hop,
    carried,
    child_traceparent,
    hop_count,
    hop_of,
    message_hop,
    next_hop,
    valid_traceparent,
)
from gateway.orchestration.child_tasks import StepLink

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_relayed_request_adds_this_gateway_to_its_path_and_continues_the_trace() -> None:
    hop = next_hop(Hop(hops=1, via=("gw-a",), traceparent=PARENT), "gw-b", max_hops=8)
    assert hop.hops == 2 and hop.via == ("gw-a", "gw-b")
    version, trace, span, flags = hop.traceparent.split("-")
    assert (version, trace, flags) == ("00", PARENT.split("-")[1], "01") and span != PARENT.split("-")[2]


def test_a_request_back_at_a_gateway_on_its_path_is_a_loop() -> None:
    with pytest.raises(FederationLoopError, match=r"gw-a\) is already on the request's path gw-a -> gw-b"):
        next_hop(Hop(hops=3, via=("gw-a", "gw-b")), "gw-a", max_hops=8)


def test_a_request_past_the_hop_limit_is_refused() -> None:
    with pytest.raises(HopLimitError, match="would make 9 hops, the limit is 8"):
        next_hop(Hop(hops=8, via=("gw-x",)), "gw-a", max_hops=8)


def test_without_trace_context_a_new_trace_starts() -> None:
    assert valid_traceparent(child_traceparent(""))
    assert next_hop(Hop(), "gw-a", 8).traceparent


@pytest.mark.parametrize(
    "metadata",
    [
        {"switchboard": {"hops": "many", "via": "gw-a"}},
        {"switchboard": {"hops": True, "via": [1, "bad id with spaces"]}, "traceparent": "00-xyz"},
        {"switchboard": ["not", "an", "object"], "traceparent": "ff-" + PARENT[3:]},
    ],
)
def test_malformed_hop_metadata_is_dropped_not_trusted(metadata: dict[str, object]) -> None:
    assert hop_of(metadata) == Hop()


def test_trace_context_comes_from_metadata_or_else_the_header() -> None:
    assert hop_of({}, {"traceparent": PARENT}).traceparent == PARENT
    message = Message()
    message.metadata.update({"switchboard": {"hops": 2, "via": ["gw-a"]}, "traceparent": PARENT})
    assert message_hop(message) == Hop(hops=2, via=("gw-a",), traceparent=PARENT)


def test_a_workflow_step_carries_the_runs_path_and_trace_context() -> None:
    request = Message()
    request.metadata.update({"switchboard": {"hops": 2, "via": ["gw-a"]}, "traceparent": PARENT})
    via, traceparent = carried(request)
    meta = StepLink("run-task", "ctx", "run", 1, 3, via, traceparent).metadata()
    assert meta["switchboard"]["via"] == ["gw-a"] and meta["switchboard"]["hops"] == 3
    assert meta["traceparent"] == PARENT


@pytest.mark.parametrize("hops", [1e19, MAX_HOP_COUNT + 1, -1, 2.5, float("inf"), float("nan")])
def test_a_hop_count_that_is_a_number_no_gateway_sends_is_invalid_params(hops: float) -> None:
    with pytest.raises(InvalidParamsError, match="hops must be a whole number"):
        hop_of({"switchboard": {"hops": hops}})
    message = Message()
    message.metadata.update({"switchboard": {"hops": hops}})
    with pytest.raises(InvalidParamsError, match="hops must be a whole number"):
        message_hop(message)


def test_a_hop_count_in_range_is_read_as_a_whole_number() -> None:
    assert hop_of({"switchboard": {"hops": 3.0}}).hops == 3
    assert hop_count(MAX_HOP_COUNT) == MAX_HOP_COUNT and hop_count(None) == 0
