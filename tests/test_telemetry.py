"""The SDK's spans are off unless asked for (gateway/telemetry/sdk_spans.py); the gateway's own spans are not theirs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.telemetry import SDK_SWITCH, configure_sdk_tracing


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        # An exporter configured exports the gateway's own spans; the SDK's (about a hundred per
        # request) stay off unless asked for with SWITCHBOARD_TRACING=on or the SDK's own switch.
        ({"OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, False),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "SWITCHBOARD_TRACING": "on"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317", "OTEL_SDK_DISABLED": "true"}, False),
        ({"SWITCHBOARD_TRACING": "on"}, True),
        ({"SWITCHBOARD_TRACING": "off", "OTEL_TRACES_EXPORTER": "otlp"}, False),
        ({SDK_SWITCH: "true"}, True),
        ({SDK_SWITCH: "true", "SWITCHBOARD_TRACING": "off"}, False),
    ],
)
def test_sdk_spans_follow_the_tracing_configuration(environ: dict[str, str], on: bool) -> None:
    assert configure_sdk_tracing(environ) is on
    assert environ[SDK_SWITCH] == ("true" if on else "false")


def _sdk_spans_in_a_fresh_process(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SWITCHBOARD_"))}
    code = "import gateway.app, a2a.utils.telemetry as t; print(t.otel_enabled)"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_a_gateway_without_tracing_configured_creates_no_sdk_spans() -> None:
    assert _sdk_spans_in_a_fresh_process() == "False"
    assert _sdk_spans_in_a_fresh_process(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317") == "False"
    assert _sdk_spans_in_a_fresh_process(SWITCHBOARD_TRACING="on") == "True"


def _sdk_wrappers_in_a_fresh_process(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "SWITCHBOARD_"))}
    code = (
        "import gateway.app\n"
        "from a2a.server.events.event_queue_v2 import EventQueueSource\n"
        "print(EventQueueSource.enqueue_event.__code__.co_filename.endswith('telemetry.py'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_with_the_sdk_spans_off_its_methods_are_not_wrapped_at_all() -> None:
    assert _sdk_wrappers_in_a_fresh_process() == "False"
    assert _sdk_wrappers_in_a_fresh_process(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317") == "False"
    assert _sdk_wrappers_in_a_fresh_process(SWITCHBOARD_TRACING="on") == "True"
