"""Starting a run for a trigger's event, at most once per event (``gateway.triggers.ledger``).

The run is an ordinary A2A task of the agent, started through its request handler as a caller's
message would be: owned by the trigger's owner, authorised with the trigger's scopes, and with
``{"trigger": {kind, name, eventId, receivedAt, ...}}`` in the task's metadata (``STARTED_BY``).
``start`` returns once the task is saved and linked to the event (what a NATS message waits for
before its ack); the run goes on in the background, and ``Started.done`` is set when it ends.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any, Protocol

from a2a.auth.user import UnauthenticatedUser, User
from a2a.server.context import ServerCallContext
from a2a.server.events.event_queue import Event
from a2a.server.request_handlers import RequestHandler
from a2a.types.a2a_pb2 import Message, Part, Role, SendMessageRequest
from a2a.utils.errors import A2AError

from gateway.auth.policy import A2ACaller, AuthPolicy, Identity
from gateway.errors import EventBusyError, InvalidEventError
from gateway.spec import AgentSpec, TriggerSpec
from gateway.store.database import Database
from gateway.store.tasks import STARTED_BY
from gateway.telemetry import metrics
from gateway.triggers.ledger import CLAIM_STALE_S, Entry, EventKey, TriggerLedger

logger = logging.getLogger(__name__)


class TriggerHost(Protocol):
    """What triggers use of the gateway."""

    @property
    def db(self) -> Database:
        """The gateway's database."""
        ...

    @property
    def auth(self) -> AuthPolicy:
        """The inbound auth policy: a trigger's runs are checked as a caller's would be."""
        ...

    def handler(self, name: str) -> RequestHandler:
        """The request handler of hosted agent ``name``."""
        ...

    def spec(self, name: str) -> AgentSpec | None:
        """The spec of hosted agent ``name``."""
        ...


@dataclass(frozen=True)
class TriggerEvent:
    """One event a trigger received: its id (idempotency key), the message parts it becomes, what to record."""

    agent: str
    trigger: TriggerSpec
    event_id: str
    parts: tuple[Part, ...]
    detail: dict[str, Any] = field(default_factory=dict)
    payload: bytes = b""

    @property
    def key(self) -> EventKey:
        """The event's ledger key."""
        return EventKey(self.agent, self.trigger.name, self.event_id)


@dataclass(frozen=True)
class Started:
    """What became of an event: the run it started (now or by an earlier delivery), or why it is dead."""

    task_id: str
    context_id: str
    duplicate: bool
    dead: bool = False
    reason: str = ""
    done: asyncio.Event = field(default_factory=asyncio.Event, compare=False, repr=False)
    """Set once the run ends (at once for a duplicate or a dead letter)."""

    def to_json(self) -> dict[str, Any]:
        """The answer to the sender of the event."""
        if self.dead:
            return {"deadLetter": True, "reason": self.reason, "duplicate": self.duplicate}
        return {"taskId": self.task_id, "contextId": self.context_id, "duplicate": self.duplicate}


def _finished(task_id: str, context_id: str, *, dead: bool = False, reason: str = "") -> Started:
    started = Started(task_id, context_id, duplicate=True, dead=dead, reason=reason)
    started.done.set()
    return started


def count_event(agent: str, trigger: TriggerSpec, outcome: str) -> None:
    """One more event of ``trigger`` in ``/metrics``: started, repeat, dead or refused."""
    metrics.TRIGGER_EVENTS.labels(agent, trigger.name, trigger.kind, outcome).inc()


def trigger_owner(agent: str, trigger: TriggerSpec, auth: AuthPolicy) -> str:
    """Who owns the runs of ``trigger``: its ``owner``, else anonymous without auth, else ``trigger:<agent>/<name>``."""
    if trigger.owner:
        return trigger.owner
    return f"trigger:{agent}/{trigger.name}" if auth.enabled else ""


class TriggerRuns:
    """Starts the runs of every trigger's events (see the module)."""

    def __init__(self, host: TriggerHost) -> None:
        self.host = host
        self.ledger = TriggerLedger(host.db)
        self._starting: dict[EventKey, asyncio.Lock] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self.recorded = asyncio.Condition()
        """Notified after each event is recorded (started, a duplicate, or dead-lettered)."""
        self.count = 0
        """Events recorded since the gateway started (each delivery counts)."""

    async def note_recorded(self) -> None:
        """Count one more event recorded, and wake whoever waits on ``recorded``."""
        async with self.recorded:
            self.count += 1
            self.recorded.notify_all()

    def owner(self, agent: str, trigger: TriggerSpec) -> str:
        """The owner of the runs of ``trigger``."""
        return trigger_owner(agent, trigger, self.host.auth)

    def _user(self, agent: str, trigger: TriggerSpec) -> User:
        owner = self.owner(agent, trigger)
        if not owner:
            return UnauthenticatedUser()
        return A2ACaller(Identity(name=owner, scopes=frozenset(trigger.scopes)))

    async def start(self, event: TriggerEvent) -> Started:
        """Start the event's run, or answer with what an earlier delivery of it started (see the module).

        ``InvalidEventError`` when the event cannot run (it is dead-lettered); ``EventBusyError``
        while another delivery of it is starting; any other error (a retryable refusal such as
        ``AgentBusyError`` among them) leaves the event unclaimed, for a later delivery.
        """
        key = event.key
        lock = self._starting.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                started = await self._start(event)
        except InvalidEventError:
            count_event(event.agent, event.trigger, "dead")
            await self.note_recorded()  # dead-lettered: recorded too
            raise
        finally:
            if not lock.locked():
                self._starting.pop(key, None)
        count_event(
            event.agent, event.trigger, "dead" if started.dead else "repeat" if started.duplicate else "started"
        )
        await self.note_recorded()
        return started

    async def _start(self, event: TriggerEvent) -> Started:
        key, owner = event.key, self.owner(event.agent, event.trigger)
        entry = await self.ledger.claim(key, owner, event.payload)
        if entry is not None:
            earlier = await self._earlier(entry, owner)
            if earlier is not None:
                return earlier
        refusal = self._refusal(event)
        if refusal:
            await self.ledger.dead_letter(key, owner, refusal, event.payload)
            raise InvalidEventError(refusal)
        return await self._run(event)

    async def _earlier(self, entry: Entry, owner: str) -> Started | None:
        """What an earlier delivery of the event started; None when its claim is stale and now ours."""
        key = entry.key
        if entry.state == "started":
            return _finished(entry.task_id, key.context_id)
        if entry.state == "dead":
            return _finished("", key.context_id, dead=True, reason=entry.reason)
        saved = await self.ledger.saved_task(key, owner)
        if saved is not None:  # its process died after the task was saved, before the link
            await self.ledger.link(key, saved)
            return _finished(saved, key.context_id)
        stale = time.time_ns() - entry.claimed_ns > CLAIM_STALE_S * 1e9
        if stale and await self.ledger.take_over(entry):
            return None
        raise EventBusyError(f"event {key.event_id!r} of trigger {key.trigger!r} is being started elsewhere")

    def _refusal(self, event: TriggerEvent) -> str:
        """Why the trigger may not start this agent (unknown, or its scopes fall short), or ''."""
        spec = self.host.spec(event.agent)
        if spec is None:
            return f"no agent named {event.agent!r} is hosted here"
        user = self._user(event.agent, event.trigger)
        caller = user.caller if isinstance(user, A2ACaller) else None
        return self.host.auth.may_call(caller, spec, skill=event.trigger.skill or None) or ""

    async def _run(self, event: TriggerEvent) -> Started:
        key = event.key
        message = Message(
            role=Role.ROLE_USER,
            message_id=f"{key.context_id}:{key.event_id}"[:200],
            context_id=key.context_id,
            parts=list(event.parts),
        )
        if event.trigger.skill:
            message.metadata.update({"skill": event.trigger.skill})
        received = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        provenance = {"kind": event.trigger.kind, "name": event.trigger.name, "eventId": key.event_id}
        context = ServerCallContext(
            user=self._user(event.agent, event.trigger),
            state={STARTED_BY: {**provenance, "receivedAt": received, **event.detail}},
        )
        stream = self.host.handler(event.agent).on_message_send_stream(SendMessageRequest(message=message), context)
        try:
            first = await anext(stream)
        except A2AError as exc:  # the agent refused the message before any task existed: not valid input
            await stream.aclose()
            if getattr(exc, "retryable", False) is True:  # busy, or the store is away: a later delivery may run
                await self.ledger.release(key)
                raise
            reason = f"{type(exc).__name__}: {getattr(exc, 'message', '') or exc}"
            await self.ledger.dead_letter(key, self.owner(event.agent, event.trigger), reason, event.payload)
            raise InvalidEventError(reason) from exc
        except BaseException:
            await stream.aclose()
            await self.ledger.release(key)
            raise
        task_id = _task_id(first)
        await self.ledger.link(key, task_id)
        started = Started(task_id, key.context_id, duplicate=False)
        run = asyncio.ensure_future(self._follow(stream, started))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        return started

    async def _follow(self, stream: AsyncGenerator[Event, None], started: Started) -> None:
        """Read the run's events to its end (the run itself is detached from this reader), then set ``done``."""
        try:
            async for _ in stream:
                pass
        except Exception as exc:
            logger.warning("triggered run %s ended with an error: %s: %s", started.task_id, type(exc).__name__, exc)
        finally:
            started.done.set()
            await stream.aclose()

    async def aclose(self) -> None:
        """Stop following runs (the runs themselves belong to their agents' handlers)."""
        for run in list(self._runs):
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)


def _task_id(event: Event) -> str:
    task_id = getattr(event, "task_id", "") or getattr(event, "id", "")
    return str(task_id)
