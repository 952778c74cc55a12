"""HTTP webhook events, signed as the Standard Webhooks specification signs them.

A request carries ``webhook-id`` (the event id, the idempotency key), ``webhook-timestamp``
(Unix seconds) and ``webhook-signature``: space-separated ``v1,<base64>`` signatures, each an
HMAC-SHA256 of ``<id>.<timestamp>.<body>`` under the trigger's secret (``whsec_<base64 key>``, or
the secret's UTF-8 bytes). A timestamp outside the trigger's tolerance is refused, so a captured
request cannot be replayed later; within it, the ledger answers a repeated id with the run it
started. The id is part of what is signed, so a replay cannot pass as a new event.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping

from a2a.types.a2a_pb2 import Part

from gateway.errors import AuthenticationError
from gateway.hosting.executor import data_part
from gateway.spec import WebhookTriggerSpec

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
MAX_ID_LENGTH = 200


class WebhookSignatureError(AuthenticationError):
    """A webhook request without a valid signature, or signed too long ago (or ahead)."""

    message = "the webhook signature does not verify"
    reason = "bad-webhook-signature"


def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: ``whsec_<base64>`` decoded, any other secret as its UTF-8 bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def sign(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value of a request (what a sender computes)."""
    signed = f"{event_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(trigger: WebhookTriggerSpec, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The event id of a request with a good signature and a fresh timestamp; else ``WebhookSignatureError``."""
    event_id, stamp, signatures = (headers.get(h, "") for h in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    if not (event_id and stamp and signatures):
        raise WebhookSignatureError(
            f"a signed webhook needs the {ID_HEADER}, {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} headers"
        )
    if len(event_id) > MAX_ID_LENGTH:
        raise WebhookSignatureError(f"{ID_HEADER} is longer than {MAX_ID_LENGTH} characters")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookSignatureError(f"{TIMESTAMP_HEADER} must be Unix seconds, not {stamp[:40]!r}") from None
    if abs(now - timestamp) > trigger.tolerance_s:
        raise WebhookSignatureError(
            f"{TIMESTAMP_HEADER} is {abs(now - timestamp):.0f}s from now, beyond the {trigger.tolerance_s:g}s tolerance"
        )
    expected = sign(secret, event_id, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, s.encode()) for s in signatures.split()):
        raise WebhookSignatureError(f"no signature in {SIGNATURE_HEADER} matches the body under the trigger's secret")
    return event_id


def body_parts(body: bytes, content_type: str) -> tuple[Part, ...]:
    """A request body as message parts: JSON as a data part (an object, else ``{"items"}``), text as text.

    ``ValueError`` for a body that is empty, not UTF-8, or declared JSON and not JSON.
    """
    if not body.strip():
        raise ValueError("the body is empty")
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8 text") from None
    is_json = content_type.split(";")[0].strip().lower() in ("application/json", "") or content_type.endswith("+json")
    if not is_json:
        return (Part(text=text),)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        if content_type:
            raise ValueError(f"the body is not JSON: {exc}") from None
        return (Part(text=text),)
    if isinstance(value, str):
        return (Part(text=value),)
    return (data_part(value if isinstance(value, dict | list) else {"value": value}),)
