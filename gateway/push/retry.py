"""When to try a push notification again: exponential backoff with jitter, or what ``Retry-After`` asks."""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC

RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""Client-error answers that mean "not now" rather than "never" (and every 5xx)."""


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer means the receiver may take the notification later."""
    return status >= 500 or status in RETRYABLE_STATUSES


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds a ``Retry-After`` header asks to wait (delay-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries a notification gets and how long to wait between them."""

    max_attempts: int
    base_s: float
    max_s: float
    retry_after_max_s: float

    def delay_s(self, attempts: int, retry_after_s: float | None = None) -> float:
        """The wait before the next try, after ``attempts`` failed ones.

        The receiver's ``Retry-After`` when it gave one (up to ``retry_after_max_s``); otherwise
        ``base_s * 2**(attempts-1)`` capped at ``max_s``, of which a random half is waited (so
        senders that failed together do not come back together).
        """
        if retry_after_s is not None:
            return min(retry_after_s, self.retry_after_max_s)
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempts - 1, 62))
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter, not a secret
