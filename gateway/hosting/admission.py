"""Admission control: per-agent and per-caller concurrency caps, and a bounded queue (``admission:`` in the agent file).

A message that would run the agent takes a slot first (a cache hit runs nothing and takes none).
With ``max_concurrent`` runs going, it waits in the agent's queue, at most ``max_queued`` waiting
and each for at most ``queue_timeout_s``; a caller (the task owner; every anonymous caller is one)
holding ``per_caller_concurrent`` slots, running or queued, may not take another. A message that
gets no slot is refused before any task exists with ``AgentBusyError``: retryable, with the
agent's ``retry_after_s`` as a hint (JSON-RPC error data and REST ``ErrorInfo`` metadata
``retryAfterSeconds``, the REST ``Retry-After`` header, gRPC ``google.rpc.RetryInfo``). A workflow
step refused so goes to the step's fallback agent at once when it has one (degraded mode), and
is retried with backoff when it has none. Slots are counted in this process (per replica).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from a2a.server.context import ServerCallContext
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.errors import AgentBusyError, retry_after_seconds
from gateway.spec import AdmissionSpec
from gateway.telemetry import metrics

T = TypeVar("T")
TICKET_STATE = "switchboard.admission"
"""The ``ServerCallContext.state`` key of a run's slot, released when its run ends."""


@dataclass
class Ticket:
    """One slot taken; ``release`` is idempotent."""

    admission: Admission
    caller: str
    released: bool = field(default=False)

    def release(self) -> None:
        """Give the slot back (once)."""
        if not self.released:
            self.released = True
            self.admission._leave(self.caller)


class Admission:
    """One agent's slots (see the module). A slot freed goes to the longest waiter first."""

    def __init__(self, agent: str, spec: AdmissionSpec) -> None:
        self.agent = agent
        self.spec = spec
        self.running = 0
        self.refused = 0
        self._by_caller: Counter[str] = Counter()
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        """Messages waiting for a slot."""
        return len(self._waiters)

    def _busy(self, why: str) -> AgentBusyError:
        self.refused += 1
        metrics.ADMISSION_REFUSALS.labels(self.agent).inc()
        hint = self.spec.retry_after_s
        return AgentBusyError(f"agent {self.agent!r} is busy: {why}; retry after {hint:g}s", retry_after_s=hint)

    async def enter(self, caller: str) -> Ticket:
        """A slot for ``caller``, perhaps after a wait in the queue; ``AgentBusyError`` when none is to be had."""
        cap = self.spec.per_caller_concurrent
        if cap is not None and self._by_caller[caller] >= cap:
            raise self._busy(f"this caller already has {cap} run(s) of it going, its limit")
        self._by_caller[caller] += 1
        try:
            await self._slot()
        except BaseException:
            self._forget(caller)
            raise
        return Ticket(self, caller)

    async def _slot(self) -> None:
        limit = self.spec.max_concurrent
        if limit is None or (self.running < limit and not self._waiters):
            self.running += 1
            self._show()
            return
        if len(self._waiters) >= self.spec.max_queued:
            raise self._busy(f"{limit} run(s) going and {len(self._waiters)} waiting, its limits")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._show()
        try:
            async with asyncio.timeout(self.spec.queue_timeout_s):
                await waiter  # a slot handed over by ``_free`` (already counted as running)
        except TimeoutError:
            raise self._busy(f"no run of it finished within {self.spec.queue_timeout_s:g}s") from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._free()  # handed a slot at the moment it gave up: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            self._show()

    def _free(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.running -= 1
        self._show()

    def _show(self) -> None:
        metrics.ADMISSION_SLOTS.labels(self.agent, "running").set(self.running)
        metrics.ADMISSION_SLOTS.labels(self.agent, "queued").set(len(self._waiters))

    def _forget(self, caller: str) -> None:
        self._by_caller[caller] -= 1
        if self._by_caller[caller] <= 0:
            del self._by_caller[caller]

    def _leave(self, caller: str) -> None:
        self._forget(caller)
        self._free()

    async def admitted(self, context: ServerCallContext, run: Callable[[], Awaitable[T]]) -> T:
        """``run()`` holding a slot of the caller of ``context`` for its whole length."""
        ticket = await self.enter(context.user.user_name)
        try:
            return await run()
        finally:
            ticket.release()


def build_admission(spec_name: str, spec: AdmissionSpec | None) -> Admission | None:
    """The agent's admission control when its file declares any."""
    return Admission(spec_name, spec) if spec is not None else None


class RetryAfter:
    """An ASGI app answering its 429s with a ``Retry-After`` header (the REST binding's busy refusals).

    A class, not a function: Starlette's ``Route`` would take a function for a request endpoint.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.value = str(retry_after_seconds(seconds)).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve ``scope`` with the header added to a 429 that lacks one."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 429:
                headers = list(message.get("headers", []))
                if not any(key.lower() == b"retry-after" for key, _ in headers):
                    message = {**message, "headers": [*headers, (b"retry-after", self.value)]}
            await send(message)

        await self.app(scope, receive, sending)
