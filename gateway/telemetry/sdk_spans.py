"""The A2A SDK's own OpenTelemetry spans: off unless asked for.

a2a-sdk wraps every request-handler, dispatcher and event-queue method in a span (about a
hundred per SendMessage) whenever ``opentelemetry-api`` is importable, and decides so once, when
``a2a.utils.telemetry`` is first imported, from ``OTEL_INSTRUMENTATION_A2A_SDK_ENABLED``. Even
non-recording they cost CPU on every request, and recording they say little an operator needs
that the gateway's own spans (``gateway.telemetry.tracing``: request, task, step, relay, store)
do not. So the gateway sets that variable to ``false`` unless they are asked for:

* ``SWITCHBOARD_TRACING=on`` turns them on (with the gateway's spans), ``off`` turns all spans off;
* under ``auto`` (the default), ``OTEL_INSTRUMENTATION_A2A_SDK_ENABLED`` set by the operator is
  respected, and otherwise they are off.

``tracing_configured`` says whether the gateway's own spans are exported: ``SWITCHBOARD_TRACING=on``,
or an exporter configured (``OTEL_TRACES_EXPORTER`` other than ``none``,
``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), unless
``OTEL_SDK_DISABLED=true``.

This runs when the ``gateway`` package is imported, before any module of it imports the SDK,
which is why it reads the environment itself rather than through ``Settings``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

SDK_SWITCH = "OTEL_INSTRUMENTATION_A2A_SDK_ENABLED"
TRACING_ENV = "SWITCHBOARD_TRACING"
_EXPORTER_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
T = TypeVar("T")
_ON, _OFF = frozenset({"on", "true", "1", "yes"}), frozenset({"off", "false", "0", "no"})


def tracing_configured(environ: MutableMapping[str, str]) -> bool:
    """Whether ``environ`` asks for traces: ``SWITCHBOARD_TRACING``, else an OpenTelemetry exporter setting."""
    choice = environ.get(TRACING_ENV, "auto").strip().lower()
    if choice in _ON:
        return True
    if choice in _OFF:
        return False
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter and exporter != "none":
        return True
    return any(environ.get(name, "").strip() for name in _EXPORTER_VARS)


def configure_sdk_tracing(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Turn the SDK's spans off in ``environ`` unless asked for; whether they are on.

    An explicit ``OTEL_INSTRUMENTATION_A2A_SDK_ENABLED`` wins over ``auto``. Has no effect once
    ``a2a.utils.telemetry`` has been imported (the SDK read the variable then).
    """
    choice = environ.get(TRACING_ENV, "auto").strip().lower()
    if SDK_SWITCH in environ and choice not in _ON | _OFF:
        return environ[SDK_SWITCH].strip().lower() == "true"
    wanted = choice in _ON
    environ[SDK_SWITCH] = "true" if wanted else "false"
    return wanted


def sdk_tracing_active() -> bool:
    """Whether the imported SDK creates spans (False before it is imported)."""
    telemetry = sys.modules.get("a2a.utils.telemetry")
    return bool(telemetry is not None and telemetry.otel_installed and telemetry.otel_enabled)


def _untraced(func: Callable[..., Any] | None = None, **_options: Any) -> Any:
    """``trace_function`` with the spans off: the function itself (or, as a factory, the identity)."""
    return func if func is not None else _identity


def _untraced_class(*_args: Any, **_options: Any) -> Callable[[T], T]:
    """``trace_class`` with the spans off: leaves the class alone."""
    return _identity


def _identity(value: T) -> T:
    return value


def skip_disabled_sdk_spans() -> bool:
    """With the SDK's spans off, make its tracing decorators leave functions unwrapped; whether they do.

    a2a-sdk (1.3) wraps every traced method even when ``OTEL_INSTRUMENTATION_A2A_SDK_ENABLED`` is
    false: each call then builds a no-op tracer and span, and a streaming SendMessage makes about
    a hundred such calls (0.3-0.5 ms of CPU per request, 5-10% of a federated hop at the peer). The
    SDK decorates when each of its modules is imported, so this must run before they are (it
    imports only ``a2a.utils.telemetry`` and its small dependencies); modules imported earlier
    keep their wrappers, which are harmless. With the spans on, nothing changes.
    """
    import a2a.utils.telemetry as sdk  # here, not at the top: after configure_sdk_tracing set the switch

    if sdk.otel_installed and sdk.otel_enabled:
        return False
    sdk.trace_function = _untraced  # type: ignore[assignment]
    sdk.trace_class = _untraced_class  # type: ignore[assignment]
    return True
