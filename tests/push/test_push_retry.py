"""Backoff with jitter, and the receiver's ``Retry-After``."""

from __future__ import annotations

import email.utils

from gateway.push.retry import RetryPolicy, parse_retry_after, retryable_status

NOW = 1_800_000_000.0


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert parse_retry_after("120", NOW) == 120.0
    assert parse_retry_after(email.utils.formatdate(NOW + 30, usegmt=True), NOW) == 30.0
    assert parse_retry_after(email.utils.formatdate(NOW - 30, usegmt=True), NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None and parse_retry_after(None, NOW) is None
    assert parse_retry_after("-5", NOW) is None


def test_backoff_doubles_up_to_the_cap_with_jitter_and_retry_after_wins_up_to_its_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_s=1.0, max_s=8.0, retry_after_max_s=60.0)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0), (500, 8.0)]:
        delays = [policy.delay_s(attempts) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # jittered
    assert policy.delay_s(1, retry_after_s=30.0) == 30.0
    assert policy.delay_s(1, retry_after_s=3600.0) == 60.0


def test_which_answers_are_worth_another_try() -> None:
    assert [s for s in (200, 301, 400, 401, 404, 408, 410, 425, 429, 500, 502, 503) if retryable_status(s)] == [
        408,
        425,
        429,
        500,
        502,
        503,
    ]


def test_a_notification_body_keeps_the_integers_of_its_data_parts():
    from a2a.types.a2a_pb2 import Artifact, Part, StreamResponse, TaskArtifactUpdateEvent
    from google.protobuf.json_format import ParseDict
    from google.protobuf.struct_pb2 import Value

    from gateway.push.delivery import notification_body

    data = ParseDict({"fixable": 13, "ratio": 0.5, "lines": [9, 10]}, Value())
    event = TaskArtifactUpdateEvent(
        task_id="t", context_id="c", artifact=Artifact(artifact_id="a", parts=[Part(data=data)])
    )
    body = notification_body(StreamResponse(artifact_update=event).SerializeToString())
    (part,) = body["artifactUpdate"]["artifact"]["parts"]
    assert part["data"] == {"fixable": 13, "ratio": 0.5, "lines": [9, 10]}
    assert type(part["data"]["fixable"]) is int
