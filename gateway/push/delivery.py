"""The delivery worker: sends the outbox's notifications, retries them, and drops them with a reason.

One worker per gateway, run in the app's lifespan. It takes the heads of the outbox's chains that
are due (one notification in flight per task and config), leases each, and posts it as the SDK's
sender would (the event as a ``StreamResponse``, ``X-A2A-Notification-Token``, ``Authorization``),
adding ``X-A2A-Notification-Id``: the row's id, the same on every try of one notification, so a
receiver can tell a retry from a new event. Before each try the config is read again (a deleted
config ends its chain) and its URL's address resolved and checked again (``addresses``).

Outcomes: a 2xx answer deletes the row; a 5xx, 408, 425, 429, a timeout or a connection error
puts it back for later (``retry``), until ``max_attempts`` tries have failed; any other answer
(the receiver refuses it: 3xx are not followed) or a refused address drops it at once. A drop is
logged with its reason and counted in ``stats``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from a2a.types.a2a_pb2 import StreamResponse, TaskPushNotificationConfig
from google.protobuf.json_format import MessageToDict

from gateway.hosting.data_parts import integral
from gateway.push.addresses import PinnedTarget, PushAddressPolicy, Refusal
from gateway.push.retry import RetryPolicy, parse_retry_after, retryable_status
from gateway.store.database import Database
from gateway.store.outbox import OutboxRow, SqlPushOutbox
from gateway.store.tasks import SqlPushConfigStore

logger = logging.getLogger(__name__)

NOTIFICATION_ID_HEADER = "X-A2A-Notification-Id"
TOKEN_HEADER = "X-A2A-Notification-Token"  # as the SDK's BasePushNotificationSender sends it
IDLE_WAIT_S = 0.05  # a head is due but another sender holds it: look again after this


@dataclass
class PushStats:
    """Counters of what the worker did since the gateway started (``dropped`` by reason)."""

    delivered: int = 0
    retried: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition, repr=False)

    async def count(self, what: Literal["delivered", "retried"] | None = None, dropped: str = "") -> None:
        """Add one to a counter and wake whoever waits on the counters."""
        if what is not None:
            setattr(self, what, getattr(self, what) + 1)
        if dropped:
            self.dropped[dropped] += 1
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[PushStats], bool], within_s: float) -> None:
        """Wait until ``predicate(self)`` holds, for at most ``within_s`` seconds (``TimeoutError`` then)."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self))


@dataclass(frozen=True)
class Outcome:
    """What one try came to: ``done``, ``retry`` (later) or ``drop`` (never), with a reason and detail."""

    kind: Literal["done", "retry", "drop"]
    reason: str = ""
    detail: str = ""
    retry_after_s: float | None = None


@dataclass(frozen=True)
class DeliveryOptions:
    """The worker's settings (``push_*`` in ``Settings``)."""

    retry: RetryPolicy
    timeout_s: float = 10.0
    concurrency: int = 16
    poll_s: float = 1.0
    ca_file: str | None = None
    """CA certificates receivers' certificates are checked against (default: certifi's)."""


class PushDelivery:
    """Delivers the outbox; ``run`` is the worker, ``wake`` says a notification was queued."""

    def __init__(self, db: Database, policy: PushAddressPolicy, options: DeliveryOptions) -> None:
        self.outbox = SqlPushOutbox(db)
        self.policy = policy
        self.options = options
        self.stats = PushStats()
        self._configs = SqlPushConfigStore(db)
        self._wake = asyncio.Event()
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def wake(self) -> None:
        """A notification was queued or a chain moved on: look at the outbox now."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until canceled (the gateway stops): what is in flight then is tried again on the next start."""
        # No keep-alive: every try connects to the address checked for it; no proxy from the environment.
        limits = httpx.Limits(max_keepalive_connections=0)
        verify: ssl.SSLContext | bool = True
        if self.options.ca_file:
            verify = ssl.create_default_context(cafile=self.options.ca_file)
        client = httpx.AsyncClient(timeout=self.options.timeout_s, limits=limits, trust_env=False, verify=verify)
        async with client as http:
            if waiting := await self.outbox.pending():
                logger.info("%d push notification(s) waiting for delivery", waiting)
            try:
                while True:
                    self._wake.clear()
                    try:
                        claimed = await self._start_due(http)
                        await self._wait(claimed)
                    except Exception:  # the database failed: keep the worker, look again after a pause
                        logger.exception("push delivery could not read the outbox; trying again")
                        await asyncio.sleep(self.options.poll_s)
            finally:
                await self._stop_inflight()
                stats = self.stats
                dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(stats.dropped.items())) or "none"
                logger.info(
                    "push delivery stopped: %d delivered, %d retried, dropped: %s",
                    stats.delivered,
                    stats.retried,
                    dropped,
                )

    async def _stop_inflight(self) -> None:
        """Cancel the tries in flight and free their rows for the next start (or another replica) at once."""
        held = list(self._inflight)
        for task in self._inflight.values():
            task.cancel()
        await asyncio.gather(*self._inflight.values(), return_exceptions=True)
        if held:
            try:
                async with asyncio.timeout(self.options.timeout_s):
                    await self.outbox.release(held)
            except Exception as exc:  # their leases end by themselves
                logger.warning("push delivery could not release %d notification(s) at stop: %s", len(held), exc)

    async def _start_due(self, http: httpx.AsyncClient) -> int:
        free = self.options.concurrency - len(self._inflight)
        if free <= 0:
            return 0
        now = time.time_ns()
        lease_until = now + int((2 * self.options.timeout_s + 5) * 1e9)
        claimed = 0
        for row in await self.outbox.due(now, free):
            if row.id in self._inflight or not await self.outbox.claim(row.id, now, lease_until):
                continue
            task = asyncio.create_task(self._deliver(http, row), name=f"push:{row.task_id}")
            self._inflight[row.id] = task
            task.add_done_callback(lambda _, row_id=row.id: self._inflight.pop(row_id, None))
            claimed += 1
        return claimed

    async def _wait(self, claimed: int) -> None:
        timeout = self.options.poll_s
        if len(self._inflight) < self.options.concurrency:
            next_due = await self.outbox.next_due()
            if next_due is not None:
                timeout = min(timeout, max(0.0, (next_due - time.time_ns()) / 1e9))
            if timeout == 0.0 and not claimed:
                timeout = IDLE_WAIT_S  # due but held by another sender: do not spin
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _deliver(self, http: httpx.AsyncClient, row: OutboxRow) -> None:
        try:
            outcome = await self._try(http, row)
        except Exception as exc:  # a bug here must not stop the worker: the row is tried again later
            logger.exception("push notification %s for task %s: unexpected failure", row.id, row.task_id)
            outcome = Outcome("retry", "error", f"{type(exc).__name__}: {exc}")
        try:
            await self._settle(row, outcome)
        except Exception:  # the row keeps its lease, and is tried again when it ends
            logger.exception("push notification %s for task %s: its outcome could not be saved", row.id, row.task_id)
        self.wake()

    async def _try(self, http: httpx.AsyncClient, row: OutboxRow) -> Outcome:
        config = await self._configs.get_for_delivery(row.owner, row.task_id, row.config_id)
        if config is None:
            return Outcome("drop", "config-removed", f"push config {row.config_id!r} was deleted")
        target = await self.policy.pin(config.url)
        if isinstance(target, Refusal):
            return Outcome("retry" if target.retryable else "drop", target.reason, target.detail)
        return await self._post(http, row, config, target)

    async def _post(
        self, http: httpx.AsyncClient, row: OutboxRow, config: TaskPushNotificationConfig, target: PinnedTarget
    ) -> Outcome:
        body = notification_body(row.payload)
        headers = {"Host": target.host_header, NOTIFICATION_ID_HEADER: row.id, **_credentials(config)}
        try:
            # Bounded as a whole: httpx's timeout is per read, and a receiver could drip its answer.
            async with asyncio.timeout(2 * self.options.timeout_s):
                response = await _send(http, target, body, headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            return Outcome("retry", "unreachable", f"{type(exc).__name__}: {exc}".rstrip(": "))
        if response.is_success:
            return Outcome("done")
        detail = f"HTTP {response.status_code}"
        if retryable_status(response.status_code):
            retry_after = parse_retry_after(response.headers.get("retry-after"), time.time())
            return Outcome("retry", "http-error", detail, retry_after)
        return Outcome("drop", "refused-by-receiver", detail)

    async def _settle(self, row: OutboxRow, outcome: Outcome) -> None:
        if outcome.kind == "done":
            await self.outbox.remove(row)
            await self.stats.count("delivered")
            return
        attempts = row.attempts + 1
        if outcome.kind == "retry" and attempts < self.options.retry.max_attempts:
            delay = self.options.retry.delay_s(attempts, outcome.retry_after_s)
            await self.outbox.retry_at(row.id, attempts, time.time_ns() + int(delay * 1e9), outcome.detail)
            logger.info(
                "push notification %s for task %s failed (%s), try %d of %d in %.1fs",
                row.id, row.task_id, outcome.detail, attempts + 1, self.options.retry.max_attempts, delay,
            )  # fmt: skip
            await self.stats.count("retried")
            return
        reason = "gave-up" if outcome.kind == "retry" else outcome.reason
        why = f"after {attempts} attempts: {outcome.detail}" if outcome.kind == "retry" else outcome.detail
        await self.outbox.remove(row)
        logger.warning("push notification %s for task %s dropped (%s) %s", row.id, row.task_id, reason, why)
        await self.stats.count(dropped=reason)


async def _send(http: httpx.AsyncClient, target: PinnedTarget, body: Any, headers: dict[str, str]) -> httpx.Response:
    """POST to the first checked address that takes the connection; the answer's body is never read."""
    *others, last = target.urls()
    for url in others:
        try:
            return await _send_to(http, url, target, body, headers)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue  # that address cannot be reached: the next one (a host with a dead IPv6 address)
    return await _send_to(http, last, target, body, headers)


async def _send_to(
    http: httpx.AsyncClient, url: httpx.URL, target: PinnedTarget, body: Any, headers: dict[str, str]
) -> httpx.Response:
    request = http.build_request("POST", url, json=body, headers=headers, extensions=target.extensions)
    response = await http.send(request, stream=True)
    await response.aclose()
    return response


def _credentials(config: TaskPushNotificationConfig) -> dict[str, str]:
    """The config's token and authentication, as the SDK's sender sends them."""
    headers: dict[str, str] = {}
    if config.token:
        headers[TOKEN_HEADER] = config.token
    auth = config.authentication
    if config.HasField("authentication") and auth.scheme and auth.credentials:
        headers["Authorization"] = f"{auth.scheme} {auth.credentials}"
    return headers


def notification_body(payload: bytes) -> dict[str, Any]:
    """The JSON body of a notification: the stored ``StreamResponse``, its data parts' integers kept integers."""
    body: dict[str, Any] = integral(MessageToDict(StreamResponse.FromString(payload)))
    return body
