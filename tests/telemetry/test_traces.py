"""Traces across gateways: a workflow on gateway A whose step runs on gateway B is one trace, its spans
exported by both processes over OTLP/HTTP to a receiver here; a bad exporter setting or an unreachable
collector never stops a gateway (gateway/telemetry/tracing.py)."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.bindings.a2a_clients import BINDINGS, a2a_client, send
from tests.federation.support import BackgroundLoop, Org, free_port, org, python_agent, workflow, write_yaml
from tests.telemetry.test_operating import samples, value

ECHO = "gateway.agents.echo:EchoExecutor"
JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
WAIT_S = 30.0


@dataclass(frozen=True)
class ExportedSpan:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    pid: int


class OtlpReceiver:
    """An OTLP/HTTP trace receiver: decodes each ExportTraceServiceRequest (protobuf) and keeps its spans."""

    def __init__(self) -> None:
        self.spans: list[ExportedSpan] = []
        self.changed = threading.Condition()

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/v1/traces", self._export, methods=["POST"])])

    async def _export(self, request: Request) -> Response:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        exported = ExportTraceServiceRequest()
        exported.ParseFromString(body)
        found = []
        for resource_spans in exported.resource_spans:
            attributes = {kv.key: kv.value for kv in resource_spans.resource.attributes}
            pid = attributes["process.pid"].int_value if "process.pid" in attributes else 0
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    ids = (span.trace_id.hex(), span.span_id.hex(), span.parent_span_id.hex())
                    found.append(ExportedSpan(*ids, span.name, pid))
        with self.changed:
            self.spans += found
            self.changed.notify_all()
        return Response(ExportTraceServiceResponse().SerializeToString(), media_type="application/x-protobuf")

    def wait_for(self, done: Callable[[list[ExportedSpan]], bool], timeout: float = WAIT_S) -> list[ExportedSpan]:
        with self.changed:
            assert self.changed.wait_for(lambda: done(list(self.spans)), timeout), f"spans so far: {self.spans}"
            return list(self.spans)


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[OtlpReceiver, str]]:
    background = BackgroundLoop()
    found = OtlpReceiver()
    url = background.serve(found.app())
    try:
        yield found, f"{url}/v1/traces"
    finally:
        background.close()


def _traced(endpoint: str) -> dict[str, str]:
    return {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # export every 0.1 s, so the test waits little
    }


def _started(*orgs: Org) -> None:
    for each in orgs:
        each.start()
    for each in orgs:
        each.wait_ready()


async def test_a_workflow_step_on_a_second_gateway_is_one_trace_across_both_processes(
    tmp_path: Path, receiver: tuple[OtlpReceiver, str]
) -> None:
    found, endpoint = receiver
    b = org("org-b", tmp_path, **_traced(endpoint))
    python_agent(b.folder / "agents", "echo", ECHO)
    a = org("org-a", tmp_path, SWITCHBOARD_PEERS=str(tmp_path / "org-a" / "peers.yaml"), **_traced(endpoint))
    python_agent(a.folder / "agents", "echo", ECHO)
    workflow(a.folder / "agents", "relay-flow", "sequential", ["b-echo"])
    try:
        _started(b)
        peer = {"name": "b", "base_url": b.url, "trust": {"jwks": b.jwks()}, "transports": ["JSONRPC"]}
        write_yaml(a.folder / "peers.yaml", {"format": 1, "peers": [{**peer, "import": ["echo"]}]})
        _started(a)
        assert a.proc is not None and b.proc is not None
        async with a2a_client(a.agent_url("relay-flow"), JSONRPC) as client:
            task, _ = await send(client, "across two gateways")
        assert task.status.state == 3, task  # completed

        def whole_trace(spans: list[ExportedSpan]) -> bool:
            """B's request span under A's relay span, and A's request span (exported last, as it ends last)."""
            relay = next((s for s in spans if s.name == "relay b"), None)
            if relay is None or not any(s.parent_id == relay.span_id and s.name == "POST jsonrpc" for s in spans):
                return False  # B's request span ends with B's stream, which may close after A's request ended
            return any(s.trace_id == relay.trace_id and s.name == "POST jsonrpc" and not s.parent_id for s in spans)

        spans = found.wait_for(whole_trace)
        relay = next(s for s in spans if s.name == "relay b")
        trace = [s for s in spans if s.trace_id == relay.trace_id]
        assert {s.pid for s in trace} == {a.proc.pid, b.proc.pid}, "one trace, spans from both processes"
        names_a = {s.name for s in trace if s.pid == a.proc.pid}
        names_b = {s.name for s in trace if s.pid == b.proc.pid}
        assert {"POST jsonrpc", "workflow relay-flow", "step step 1/1", "task b-echo", "relay b"} <= names_a, sorted(
            names_a
        )
        assert "POST jsonrpc" in names_b and any(n.startswith("store ") for n in names_b)
        roots = [s for s in trace if not s.parent_id]
        assert len(roots) == 1 and roots[0].pid == a.proc.pid and roots[0].name == "POST jsonrpc"
        by_id = {s.span_id: s for s in trace}
        assert all(s.parent_id in by_id for s in trace if s.parent_id), "every parent is in the trace"
    finally:
        a.stop()
        b.stop()


async def test_an_unreachable_collector_or_a_bad_setting_never_stops_the_gateway(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens there
    down = org("down", tmp_path, OTEL_EXPORTER_OTLP_TIMEOUT="1", **_traced(closed))
    bogus = org("bogus", tmp_path, OTEL_TRACES_EXPORTER="zipkin-over-carrier-pigeon")
    for each in (down, bogus):
        python_agent(each.folder / "agents", "echo", ECHO)
    try:
        _started(down, bogus)
        for each in (down, bogus):
            async with a2a_client(each.agent_url("echo"), JSONRPC) as client:
                task, _ = await send(client, "still served")
            assert task.status.state == 3
        assert "tracing is off" in bogus.logged()
        async with httpx.AsyncClient(base_url=down.url, timeout=5) as http:
            for _ in range(int(WAIT_S / 0.2)):  # the exporter's thread gives up within its 1 s timeout
                dropped = value(samples((await http.get("/metrics")).text), "switchboard_spans_dropped_total")
                if dropped > 0:
                    break
                threading.Event().wait(0.2)
        assert dropped > 0, down.logged()[-3000:]
    finally:
        down.stop()
        bogus.stop()
