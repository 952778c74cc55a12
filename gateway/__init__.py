"""Switchboard: a protocol gateway for multi-agent systems."""

from gateway.telemetry import configure_sdk_tracing

configure_sdk_tracing()  # before any gateway module imports a2a-sdk, which reads the switch once
