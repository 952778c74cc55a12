"""Switchboard: a protocol gateway for multi-agent systems."""

from gateway.telemetry import configure_sdk_tracing, skip_disabled_sdk_spans

configure_sdk_tracing()  # before any gateway module imports a2a-sdk, which reads the switch once
skip_disabled_sdk_spans()  # likewise before: the SDK decorates its methods as its modules load
