"""The gateway's own spans, exported through OpenTelemetry when ``OTEL_*`` (or ``SWITCHBOARD_TRACING``) asks.

Spans: the inbound request (its ``traceparent`` header continued), the task, the workflow run
and each of its steps, each relay to a peer (whose outbound call carries the relay span's
``traceparent``, so the peer's spans join the same trace), each MCP tool call an agent makes
(``tool_calls``), and each store call.

Exporters come from ``OTEL_TRACES_EXPORTER`` (comma-separated: ``otlp``, the default, is
OTLP over HTTP/protobuf to ``OTEL_EXPORTER_OTLP[_TRACES]_ENDPOINT``; ``console`` prints them),
the resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES`` (default service name
``switchboard``). Spans are batched and exported on the SDK's own thread: an unreachable
collector costs requests nothing, and the spans it did not take are dropped and counted
(``switchboard_spans_dropped_total``). A setting that cannot be honoured is logged and tracing
stays off; the gateway starts anyway.

With tracing off, ``TRACER`` is None and every helper here is one attribute test.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags, Tracer

from gateway.telemetry.metrics import SPANS_DROPPED
from gateway.telemetry.sdk_spans import tracing_configured

logger = logging.getLogger(__name__)

TRACER: Tracer | None = None
"""The gateway's tracer once ``setup`` found tracing configured; None: no spans at all."""
_PROVIDER: TracerProvider | None = None
SERVER, CLIENT, INTERNAL = SpanKind.SERVER, SpanKind.CLIENT, SpanKind.INTERNAL
_NO_SPAN = contextlib.nullcontext()
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class CountingExporter(SpanExporter):
    """An exporter that counts the spans its inner exporter failed to deliver (and never raises)."""

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter bug or a collector's nonsense must not reach the batch thread
            logger.warning("tracing: %d span(s) dropped: %s: %s", len(spans), type(exc).__name__, exc)
            result = SpanExportResult.FAILURE
        if result is not SpanExportResult.SUCCESS:
            SPANS_DROPPED.inc(len(spans))
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _exporter(name: str) -> SpanExporter:
    if name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()  # endpoint, headers, timeout, compression: from OTEL_EXPORTER_OTLP_*
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    raise ValueError(f"OTEL_TRACES_EXPORTER {name!r} is not supported here (use otlp or console)")


def setup(environ: MutableMapping[str, str] = os.environ, instance: str = "") -> bool:
    """Start exporting spans if ``environ`` configures tracing (once per process); whether spans are on.

    ``instance`` becomes ``service.instance.id`` (the gateway id). Never raises: a setting that
    cannot be honoured is logged as an error and leaves tracing off.
    """
    global TRACER, _PROVIDER
    if TRACER is not None:
        return True
    if not tracing_configured(environ):
        return False
    try:
        from opentelemetry.sdk.resources import Resource

        names = [n.strip().lower() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
        exporters = [_exporter(name) for name in names if name != "none"]
        attributes: dict[str, Any] = {"process.pid": os.getpid()}
        if instance:
            attributes["service.instance.id"] = instance
        if not environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "switchboard"
        provider = TracerProvider(resource=Resource.create(attributes))
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(CountingExporter(exporter)))
    except Exception as exc:  # a bad OTEL_* setting: the gateway serves, without traces
        logger.error("tracing is off: its settings cannot be honoured: %s: %s", type(exc).__name__, exc)
        return False
    _PROVIDER = provider
    TRACER = provider.get_tracer("switchboard")
    logger.info("tracing: spans exported to %s", ", ".join(names) or "nowhere")
    return True


def shutdown(timeout_s: float = 5.0) -> None:
    """Export what is queued (for at most ``timeout_s``) and stop; tracing is off afterwards."""
    global TRACER, _PROVIDER
    provider, TRACER, _PROVIDER = _PROVIDER, None, None
    if provider is not None:
        provider.force_flush(int(timeout_s * 1000))
        provider.shutdown()


def parent_context(traceparent: str) -> Context | None:
    """The context continuing a W3C ``traceparent``; None when it is not a valid one."""
    match = _TRACEPARENT.match(traceparent.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    parts = match.groups()
    try:
        parent = SpanContext(int(parts[1], 16), int(parts[2], 16), True, TraceFlags(int(parts[3], 16) & 1))
    except ValueError:
        return None
    if not parent.is_valid:
        return None
    return trace.set_span_in_context(NonRecordingSpan(parent))


def span(
    name: str, kind: SpanKind = INTERNAL, attributes: dict[str, Any] | None = None, traceparent: str = ""
) -> contextlib.AbstractContextManager[Any]:
    """A span around a block, the current one inside it (a child of the current span, else of ``traceparent``).

    With tracing off: a shared no-op context manager.
    """
    tracer = TRACER
    if tracer is None:
        return _NO_SPAN
    context = None
    if traceparent and not trace.get_current_span().get_span_context().is_valid:
        context = parent_context(traceparent)
    return tracer.start_as_current_span(name, context=context, kind=kind, attributes=attributes)


def child_span(name: str) -> contextlib.AbstractContextManager[Any]:
    """A span only inside another (a store call made by a request, not by a background poll)."""
    tracer = TRACER
    if tracer is None or not trace.get_current_span().get_span_context().is_valid:
        return _NO_SPAN
    return tracer.start_as_current_span(name)


def current_traceparent() -> str:
    """The W3C ``traceparent`` of the current span, or ``""`` (tracing off, no span)."""
    if TRACER is None:
        return ""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return ""
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


@contextlib.contextmanager
def request_span(name: str, traceparent: str, attributes: dict[str, Any]) -> Iterator[Any]:
    """The span of an inbound request, continuing the caller's ``traceparent`` (a valid one only)."""
    tracer = TRACER
    if tracer is None:
        yield None
        return
    context = parent_context(traceparent) if traceparent else None
    with tracer.start_as_current_span(name, context=context, kind=SERVER, attributes=attributes) as current:
        yield current
