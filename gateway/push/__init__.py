"""Push notifications, delivered durably: an outbox in the database, a worker that retries, a checked address.

``send_notification`` (the SDK's sender interface, ``sender``) writes each task event to the
outbox (``gateway.store.outbox``); the worker (``delivery``) posts it, retrying with backoff
(``retry``), resolving and checking the receiver's address before every try (``addresses``).
"""

from __future__ import annotations

from gateway.push.addresses import PushAddressPolicy
from gateway.push.delivery import DeliveryOptions, PushDelivery
from gateway.push.retry import RetryPolicy
from gateway.push.sender import OutboxPushSender, queue_stored_tasks
from gateway.settings import Settings
from gateway.store.database import Database


def create_push_delivery(settings: Settings, db: Database) -> PushDelivery:
    """The delivery worker configured by ``settings`` (``push_*``, ``allow_private_push_urls``)."""
    retry = RetryPolicy(
        max_attempts=settings.push_max_attempts,
        base_s=settings.push_retry_base_s,
        max_s=settings.push_retry_max_s,
        retry_after_max_s=settings.push_retry_after_max_s,
    )
    options = DeliveryOptions(
        retry=retry,
        timeout_s=settings.push_timeout_s,
        concurrency=settings.push_concurrency,
        poll_s=settings.push_poll_s,
        ca_file=str(settings.push_ca_file) if settings.push_ca_file else None,
    )
    return PushDelivery(db, PushAddressPolicy(allow_private=settings.allow_private_push_urls), options)


__all__ = ["OutboxPushSender", "PushAddressPolicy", "PushDelivery", "create_push_delivery", "queue_stored_tasks"]
