"""NATS JetStream triggers: a durable pull consumer per trigger (``nats-py``, the ``nats`` extra).

Each message is one event: its ``Nats-Msg-Id`` header when the publisher set one, else its
stream sequence (with the stream's creation time, so a recreated stream's numbers are new
events). A message is acknowledged only once its run is recorded (``TriggerRuns.start``), so a
gateway killed before that gets it again, and the ledger answers a redelivery of a recorded one
without a second run. A message that is not valid input (not JSON, or refused by the agent) is
dead-lettered with its reason (the ledger, and ``dead_letter_subject`` when set) and terminated,
never retried; one that fails for another reason is retried with a backoff until its
``max_deliver``-th delivery, then dead-lettered too. At most ``max_in_flight`` runs started by
the trigger are unfinished at once: the consumer fetches only as many messages as it has room for.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from a2a.types.a2a_pb2 import Part

from gateway.errors import EventBusyError, InvalidEventError
from gateway.hosting.executor import data_part
from gateway.spec import NatsTriggerSpec
from gateway.triggers.runs import TriggerEvent, TriggerRuns, count_event

if TYPE_CHECKING:
    from nats.aio.msg import Msg

logger = logging.getLogger(__name__)

FETCH_WAIT_S = 2.0
RECONNECT_WAIT_S = 2.0
RETRY_DELAY_S = 1.0
REASON_HEADER = "Switchboard-Dead-Letter-Reason"


def durable_name(agent: str, trigger: NatsTriggerSpec) -> str:
    """The consumer's durable name: the trigger's ``durable``, else ``sb-<agent>-<name>``."""
    return trigger.durable or f"sb-{agent}-{trigger.name}"


def message_parts(data: bytes) -> tuple[Part, ...]:
    """A message's payload as parts: a JSON object (or array) as data, a JSON string as text; else ``ValueError``."""
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"the payload is not JSON: {exc}") from None
    if isinstance(value, str) and value.strip():
        return (Part(text=value),)
    if isinstance(value, dict | list) and value:
        return (data_part(value),)
    raise ValueError("the payload must be a non-empty JSON object, array or string")


class NatsConsumer:
    """Runs one NATS trigger until cancelled (see the module)."""

    def __init__(self, url: str, agent: str, trigger: NatsTriggerSpec, runs: TriggerRuns) -> None:
        self.url = url
        self.agent = agent
        self.trigger = trigger
        self.runs = runs
        self._stream_epoch = ""
        self._handling: set[asyncio.Task[None]] = set()
        self._nc: Any = None

    async def run(self) -> None:
        """Consume until cancelled, connecting again after the server goes away."""
        while True:
            try:
                await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the server is down, or the stream is misconfigured: say so, try again
                logger.warning("nats trigger %s of %s: %s: %s", self.trigger.name, self.agent, type(exc).__name__, exc)
            await asyncio.sleep(RECONNECT_WAIT_S)

    async def _consume(self) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        trigger = self.trigger
        nc = self._nc = await nats.connect(
            self.url, name=f"switchboard-{self.agent}-{trigger.name}", max_reconnect_attempts=-1
        )
        try:
            js = nc.jetstream()
            self._stream_epoch = await self._stream(js)
            config = ConsumerConfig(
                durable_name=durable_name(self.agent, trigger),
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                filter_subject=trigger.subject,
                max_deliver=trigger.max_deliver,
                ack_wait=trigger.ack_wait_s,
                max_ack_pending=trigger.max_in_flight * 4,
            )
            sub = await js.pull_subscribe(
                trigger.subject, durable=config.durable_name, stream=trigger.stream, config=config
            )
            slots = asyncio.Semaphore(trigger.max_in_flight)
            while True:
                await slots.acquire()  # room for at least one run
                room = 1
                while room < trigger.max_in_flight and not slots.locked():
                    await slots.acquire()
                    room += 1
                try:
                    messages = await sub.fetch(room, timeout=FETCH_WAIT_S)
                except TimeoutError:
                    messages = []
                for _ in range(room - len(messages)):
                    slots.release()
                for message in messages:
                    handling = asyncio.ensure_future(self._handle(message, slots))
                    self._handling.add(handling)
                    handling.add_done_callback(self._handling.discard)
        finally:
            for handling in list(self._handling):
                handling.cancel()
            await asyncio.gather(*self._handling, return_exceptions=True)
            await nc.close()

    async def _stream(self, js: Any) -> str:
        """The stream's creation time (part of event ids); the stream is created for the subject when missing."""
        from nats.js.errors import NotFoundError

        try:
            info = await js.stream_info(self.trigger.stream)
        except NotFoundError:
            info = await js.add_stream(name=self.trigger.stream, subjects=[self.trigger.subject])
        return str(info.created or "")

    def _event(self, message: Msg) -> TriggerEvent:
        meta = message.metadata
        headers = message.headers or {}
        event_id = headers.get("Nats-Msg-Id") or f"{meta.stream}@{self._stream_epoch}:{meta.sequence.stream}"
        detail = {"subject": message.subject, "streamSequence": meta.sequence.stream, "deliveries": meta.num_delivered}
        # Parts are built by the caller (``_handle``): an event with a payload that is not input is dead-lettered.
        return TriggerEvent(self.agent, self.trigger, event_id, (), detail, message.data)

    async def _handle(self, message: Msg, slots: asyncio.Semaphore) -> None:
        try:
            await self._handle_one(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.warning("nats trigger %s: a message failed: %s: %s", self.trigger.name, type(exc).__name__, exc)
        finally:
            slots.release()

    async def _handle_one(self, message: Msg) -> None:
        event = self._event(message)
        try:
            event = replace(event, parts=message_parts(message.data))
            started = await self.runs.start(event)
        except ValueError as exc:
            await self._dead(message, event, str(exc))
            return
        except InvalidEventError as exc:  # the ledger holds it as dead already
            await self._dead(message, event, exc.detail, recorded=True)
            return
        except EventBusyError:
            await message.nak(delay=RETRY_DELAY_S)
            return
        except Exception as exc:
            if message.metadata.num_delivered >= self.trigger.max_deliver:
                await self._dead(message, event, f"failed on all {self.trigger.max_deliver} deliveries: {exc}")
            else:
                await message.nak(delay=RETRY_DELAY_S * message.metadata.num_delivered)
            return
        await message.ack()
        await started.done.wait()  # the slot is free once the run ends

    async def _dead(self, message: Msg, event: TriggerEvent, reason: str, *, recorded: bool = False) -> None:
        """Dead-letter ``message``: the ledger (unless already), the DLQ subject when set; then never again."""
        if not recorded:
            owner = self.runs.owner(self.agent, self.trigger)
            await self.runs.ledger.dead_letter(event.key, owner, reason, message.data)
        if self.trigger.dead_letter_subject:
            headers = {REASON_HEADER: reason[:1000], "Switchboard-Event-Id": event.event_id}
            await self._nc.publish(self.trigger.dead_letter_subject, message.data, headers=headers)
        logger.warning("nats trigger %s dead-lettered event %s: %s", self.trigger.name, event.event_id, reason)
        await message.term()
        if not recorded:
            count_event(self.agent, self.trigger, "dead")
            await self.runs.note_recorded()
