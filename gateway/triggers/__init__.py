"""Event triggers: what else may start an agent or workflow besides a caller's message.

Declared per agent in its file (``triggers:``): an HTTP ``webhook`` (Standard Webhooks HMAC
signature, replay window, ``gateway.triggers.webhook``), A2A ``push`` notifications from a peer's
task (``gateway.triggers.push``), a NATS JetStream subject (``gateway.triggers.nats``) and a
``schedule`` (``gateway.triggers.schedule``). Every event is recorded in the trigger ledger and
starts at most one run (``gateway.triggers.ledger``, ``gateway.triggers.runs``), an ordinary
task of the agent whose metadata says what started it. Webhooks and pushes arrive at
``POST /triggers/{agent}/{trigger}``; an answer names the run (202 new, 200 a repeat).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from a2a.utils.errors import A2AError, InternalError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.errors import (
    AgentBusyError,
    AuthenticationError,
    EventBusyError,
    GatewayError,
    InvalidEventError,
    PayloadTooLargeError,
    TriggerNotConfiguredError,
    UnknownTriggerError,
    retry_after_seconds,
    wire_for,
)
from gateway.spec import (
    AgentSpec,
    NatsTriggerSpec,
    PushTriggerSpec,
    ScheduleTriggerSpec,
    TriggerSpec,
    WebhookTriggerSpec,
)
from gateway.triggers import push, webhook
from gateway.triggers.runs import (
    Started,
    TriggerEvent,
    TriggerHost,
    TriggerRuns,
    count_event,
)
from gateway.triggers.schedule import ScheduleRunner

logger = logging.getLogger(__name__)

TRIGGER_PATH = "/triggers/{agent}/{trigger}"
PRUNE_EVERY_S = 3600.0
Spawn = Callable[[Coroutine[Any, Any, None], str], None]


def _refusal(
    status: int,
    grpc_status: str,
    reason: str,
    message: str,
    *,
    retry_after_s: float | None = None,
    beside: Mapping[str, Any] | None = None,
) -> Response:
    """Every error answer of the endpoint, in one JSON shape (``beside``'s keys next to ``error``).

    A refusal the sender retries carries ``Retry-After``.
    """
    body = {"error": {"code": status, "status": grpc_status, "reason": reason, "message": message}, **(beside or {})}
    headers = {"Retry-After": str(retry_after_seconds(retry_after_s))} if retry_after_s is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


def _error(
    error: GatewayError, *, retry_after_s: float | None = None, beside: Mapping[str, Any] | None = None
) -> Response:
    wire = wire_for(error)
    return _refusal(
        wire.http_status, wire.grpc_status, error.reason, error.detail, retry_after_s=retry_after_s, beside=beside
    )


def _busy(error: A2AError, status: int, retry_after_s: float) -> Response:
    """A retryable refusal of an event: nothing was recorded, the sender tries again later."""
    message = getattr(error, "message", "") or str(error)
    grpc_status = wire_for(error).grpc_status if isinstance(error, InternalError) else "UNAVAILABLE"
    reason = str((error.data or {}).get("reason", "retry-later")) if isinstance(error.data, dict) else "retry-later"
    return _refusal(status, grpc_status, reason, message, retry_after_s=retry_after_s)


def _answer(started: Started) -> Response:
    if started.dead:
        return _error(InvalidEventError(started.reason), beside=started.to_json())
    return JSONResponse(started.to_json(), status_code=200 if started.duplicate else 202)


class Triggers:
    """Every hosted agent's triggers: the HTTP endpoint, and the consumers and schedules run in the lifespan."""

    def __init__(
        self,
        host: TriggerHost,
        specs: list[AgentSpec],
        *,
        nats_url: str,
        max_body_bytes: int,
        retention_s: float = 7 * 86400.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.runs = TriggerRuns(host)
        self._triggers = {(spec.name, t.name): t for spec in specs for t in spec.triggers}
        self._nats_url = nats_url
        self._max_body = max_body_bytes
        self._retention_s = retention_s
        self._env = env if env is not None else os.environ

    def __len__(self) -> int:
        return len(self._triggers)

    def routes(self) -> list[BaseRoute]:
        """``POST /triggers/{agent}/{trigger}`` for webhooks and A2A pushes."""
        return [Route(TRIGGER_PATH, self.receive, methods=["POST"])] if self._triggers else []

    async def start(self, spawn: Spawn) -> None:
        """Create the ledger's tables; start each NATS consumer and schedule in the background."""
        if not self._triggers:
            return
        await self.runs.ledger.create()
        spawn(self._prune(), "triggers:prune")
        for (agent, name), trigger in self._triggers.items():
            if isinstance(trigger, NatsTriggerSpec):
                from gateway.triggers.nats import NatsConsumer

                spawn(NatsConsumer(self._nats_url, agent, trigger, self.runs).run(), f"trigger:{agent}/{name}")
            elif isinstance(trigger, ScheduleTriggerSpec):
                spawn(
                    ScheduleRunner(agent, trigger, self.runs.ledger, self.runs.start).run(), f"trigger:{agent}/{name}"
                )
            elif self._secret(trigger) is None:
                env = trigger.secret_env if isinstance(trigger, WebhookTriggerSpec) else trigger.token_env
                logger.error("trigger %s of %s refuses every event: the env var %s is not set", name, agent, env)

    async def _prune(self) -> None:
        """Forget events older than the retention, now and every hour."""
        while True:
            before = time.time_ns() - int(self._retention_s * 1e9)
            try:
                pruned = await self.runs.ledger.prune(before)
                if pruned:
                    logger.info("triggers: forgot %d event(s) older than the retention", pruned)
            except Exception as exc:  # a database hiccup: try again at the next round
                logger.warning("triggers: pruning the ledger failed: %s: %s", type(exc).__name__, exc)
            await asyncio.sleep(PRUNE_EVERY_S)

    async def aclose(self) -> None:
        """Stop following the runs triggers started."""
        await self.runs.aclose()

    def _secret(self, trigger: TriggerSpec) -> str | None:
        name = trigger.secret_env if isinstance(trigger, WebhookTriggerSpec) else getattr(trigger, "token_env", "")
        return self._env.get(name) or None

    async def receive(self, request: Request) -> Response:
        """One webhook request or A2A push notification (see the module)."""
        agent, name = request.path_params["agent"], request.path_params["trigger"]
        trigger = self._triggers.get((agent, name))
        if not isinstance(trigger, WebhookTriggerSpec | PushTriggerSpec):
            return _error(UnknownTriggerError(f"agent {agent!r} has no webhook or push trigger named {name!r}"))
        body = await self._body(request)
        if body is None:
            return _error(PayloadTooLargeError(f"the body is over {self._max_body} bytes"))
        secret = self._secret(trigger)
        if secret is None:
            return _error(TriggerNotConfiguredError(f"trigger {name!r} has no secret set"))
        try:
            event = await self._event(agent, trigger, secret, request, body)
            if isinstance(event, str):
                return JSONResponse({"status": event})
            return _answer(await self.runs.start(event))
        except EventBusyError as exc:
            return _error(exc, retry_after_s=1)
        except AgentBusyError as exc:  # the agent is at its caps: the sender retries (Standard Webhooks senders do)
            count_event(agent, trigger, "refused")
            return _busy(exc, 429, exc.retry_after_s)
        except A2AError as exc:  # a retryable refusal (the store is away), the event left for a later delivery
            count_event(agent, trigger, "refused")
            return _busy(exc, 503, 1)
        except InvalidEventError as exc:
            return _error(exc)
        except GatewayError as exc:
            if isinstance(exc, AuthenticationError):
                count_event(agent, trigger, "refused")
            return _error(exc)

    async def _body(self, request: Request) -> bytes | None:
        """The request's body, or None once it is longer than the limit (read no further)."""
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _event(
        self, agent: str, trigger: WebhookTriggerSpec | PushTriggerSpec, secret: str, request: Request, body: bytes
    ) -> TriggerEvent | str:
        if isinstance(trigger, WebhookTriggerSpec):
            event_id = webhook.verify(trigger, secret, request.headers, body, time.time())
            event = TriggerEvent(agent, trigger, event_id, (), {}, body)
            try:
                parts = webhook.body_parts(body, request.headers.get("content-type", ""))
            except ValueError as exc:
                await self.runs.ledger.dead_letter(event.key, self.runs.owner(agent, trigger), str(exc), body)
                raise InvalidEventError(str(exc)) from None
            return TriggerEvent(agent, trigger, event_id, parts, {}, body)
        push.check_token(secret, request.headers)
        try:
            notification = push.parse(body)
            return await push.pushed_event(self.runs.ledger, agent, trigger, notification, body)
        except ValueError as exc:
            raise InvalidEventError(str(exc)) from None


__all__ = ["TRIGGER_PATH", "Triggers"]
