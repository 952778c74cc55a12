"""Schedules: ``every: <n>s|m|h|d`` (slots at multiples of the interval since the Unix epoch) or ``at: HH:MM``.

Times are UTC. A slot's event id is its start (``2026-12-06T09:45:00Z``), so each slot starts one
run whichever replica or restart reaches it first (``gateway.triggers.ledger``). On start, the
latest slot that passed runs if it has not (a gateway down at 02:30 runs the nightly job when it
comes back), but only if the trigger has run before: a new schedule waits for its first slot.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import time
from collections.abc import Awaitable, Callable

from a2a.types.a2a_pb2 import Part

from gateway.errors import EventBusyError
from gateway.hosting.executor import data_part
from gateway.spec import ScheduleTriggerSpec
from gateway.triggers.ledger import TriggerLedger
from gateway.triggers.runs import TriggerEvent

logger = logging.getLogger(__name__)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DAY_S = 86400


def period_and_offset(trigger: ScheduleTriggerSpec) -> tuple[int, int]:
    """The schedule as (period, offset) in seconds: slots are at ``offset + k * period`` since the epoch."""
    if trigger.every:
        return int(trigger.every[:-1]) * _UNITS[trigger.every[-1]], 0
    hours, minutes = trigger.at.split(":")
    return DAY_S, int(hours) * 3600 + int(minutes) * 60


def slot_at_or_before(trigger: ScheduleTriggerSpec, now: float) -> int:
    """The start (Unix seconds) of the latest slot at or before ``now``."""
    period, offset = period_and_offset(trigger)
    return int((now - offset) // period) * period + offset


def slot_id(slot: int) -> str:
    """A slot's event id: its start in UTC."""
    return datetime.datetime.fromtimestamp(slot, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def slot_event(agent: str, trigger: ScheduleTriggerSpec, slot: int) -> TriggerEvent:
    """The event of one slot: the trigger's ``input`` as the message (text, or an object as data)."""
    text_or_data = trigger.input or f"scheduled run {slot_id(slot)}"
    part = Part(text=text_or_data) if isinstance(text_or_data, str) else data_part(text_or_data)
    return TriggerEvent(agent, trigger, slot_id(slot), (part,), detail={"scheduledFor": slot_id(slot)})


Start = Callable[[TriggerEvent], Awaitable[object]]


class ScheduleRunner:
    """Starts one trigger's slots as they come (see the module); ``clock`` and ``sleep`` are for tests."""

    def __init__(
        self,
        agent: str,
        trigger: ScheduleTriggerSpec,
        ledger: TriggerLedger,
        start: Start,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.agent = agent
        self.trigger = trigger
        self._ledger = ledger
        self._start = start
        self._clock = clock
        self._sleep = sleep

    async def catch_up(self) -> int:
        """Run the latest slot that passed if the trigger ran before and not in it; the next slot to wait for."""
        now = self._clock()
        latest = slot_at_or_before(self.trigger, now)
        if await self._ledger.last_event(self.agent, self.trigger.name) is not None:
            await self._fire(latest)
        return latest + period_and_offset(self.trigger)[0]

    async def run(self) -> None:
        """Fire every slot from now on, until cancelled."""
        slot = await self.catch_up()
        while True:
            await self._sleep(max(0.0, slot - self._clock()))
            if self._clock() < slot:
                continue
            await self._fire(slot)
            slot = slot_at_or_before(self.trigger, self._clock()) + period_and_offset(self.trigger)[0]

    async def _fire(self, slot: int) -> None:
        try:
            await self._start(slot_event(self.agent, self.trigger, slot))
        except EventBusyError:  # another replica is starting this slot's run
            logger.debug("schedule %s of %s: slot %s runs elsewhere", self.trigger.name, self.agent, slot_id(slot))
        except Exception as exc:  # one failed slot never stops the schedule
            logger.warning("schedule %s of %s: slot %s: %s", self.trigger.name, self.agent, slot_id(slot), exc)
