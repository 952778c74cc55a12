"""Telemetry: what an operator sees of a running gateway.

``sdk_spans`` switches the A2A SDK's own spans (imported first, by ``gateway/__init__``, before the
SDK is); ``tracing`` exports the gateway's spans through OpenTelemetry when ``OTEL_*`` asks for it;
``metrics`` serves ``/metrics``; ``access`` logs and measures every request; ``audit`` keeps the
append-only trail of calls, refusals and admin actions. Only ``sdk_spans`` is imported here: the
others load with the app.
"""

from gateway.telemetry.sdk_spans import (
    SDK_SWITCH,
    TRACING_ENV,
    configure_sdk_tracing,
    sdk_tracing_active,
    skip_disabled_sdk_spans,
    tracing_configured,
)

__all__ = [
    "SDK_SWITCH",
    "TRACING_ENV",
    "configure_sdk_tracing",
    "sdk_tracing_active",
    "skip_disabled_sdk_spans",
    "tracing_configured",
]
