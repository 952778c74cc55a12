"""Schedule triggers: the syntax, one run per slot (also across a restart), and runs on a real gateway."""

from __future__ import annotations

import asyncio
import calendar
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.spec import ScheduleTriggerSpec
from gateway.testing import RunningGateway, running_gateway
from gateway.triggers.runs import TriggerRuns
from gateway.triggers.schedule import ScheduleRunner, period_and_offset, slot_at_or_before, slot_id
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent
from tests.triggers.agents import MODULE, calls
from tests.triggers.trigger_kit import ended, jsonrpc_client, metadata, with_triggers

T0 = calendar.timegm((2026, 12, 6, 9, 40, 0))  # 09:40:00 UTC


def schedule(name: str = "tick", **rule: object) -> ScheduleTriggerSpec:
    return ScheduleTriggerSpec.model_validate({"kind": "schedule", "name": name, **rule})


def test_every_and_at_name_slots_in_utc() -> None:
    assert period_and_offset(schedule(every="15m")) == (900, 0)
    assert period_and_offset(schedule(at="02:30")) == (86400, 2 * 3600 + 30 * 60)
    assert slot_id(slot_at_or_before(schedule(every="15m"), T0 + 7 * 60)) == "2026-12-06T09:45:00Z"
    assert slot_id(slot_at_or_before(schedule(at="02:30"), T0)) == "2026-12-06T02:30:00Z"
    assert slot_id(slot_at_or_before(schedule(at="23:59"), T0)) == "2026-12-05T23:59:00Z"


@pytest.mark.parametrize(
    "rule", [{}, {"every": "15m", "at": "02:30"}, {"every": "0m"}, {"every": "5w"}, {"at": "24:00"}]
)
def test_a_schedule_that_is_not_exactly_one_valid_rule_is_refused(rule: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        schedule(**rule)


class FakeClock:
    """Time that moves only when the runner sleeps; it stops the runner once past ``until``."""

    def __init__(self, now: float, until: float) -> None:
        self.now = now
        self.until = until

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.now > self.until:
            raise asyncio.CancelledError


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    inbox = python_agent("inbox", f"{MODULE}:inbox", log=str(tmp_path / "calls.jsonl"))
    ticking = with_triggers(inbox, {"kind": "schedule", "name": "tick", "every": "1s", "input": {"job": "sweep"}})
    agents = agents_folder(tmp_path / "agents", [ticking])
    async with running_gateway(make_settings(tmp_path, agents=agents)) as running:
        yield running


async def run_until(runner: ScheduleRunner) -> None:
    with pytest.raises(asyncio.CancelledError):
        await runner.run()


async def test_a_slot_runs_once_across_a_restart_and_a_missed_slot_runs_when_it_comes_back(
    gateway: RunningGateway,
) -> None:
    runs: TriggerRuns = gateway.app.state.triggers.runs
    hourly = schedule("hourly", every="1h", input="hourly job")
    first = FakeClock(T0, until=T0 + 2 * 3600 + 60)  # fires 10:00 and 11:00, stops at 11:41
    await run_until(ScheduleRunner("inbox", hourly, runs.ledger, runs.start, first, first.sleep))
    restarted = FakeClock(T0 + 2 * 3600 + 120, until=T0 + 2 * 3600 + 180)  # 11:42: 11:00 already ran
    await run_until(ScheduleRunner("inbox", hourly, runs.ledger, runs.start, restarted, restarted.sleep))
    back_later = FakeClock(T0 + 3 * 3600 + 600, until=T0 + 3 * 3600 + 700)  # 12:50: 12:00 was missed
    await run_until(ScheduleRunner("inbox", hourly, runs.ledger, runs.start, back_later, back_later.sleep))

    entries = await runs.ledger.entries("inbox", "hourly")
    assert [e.key.event_id for e in entries] == ["2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z", "2026-12-06T12:00:00Z"]
    assert all(e.state == "started" for e in entries)
    assert len({e.task_id for e in entries}) == len(entries)


async def test_a_new_schedule_waits_for_its_first_slot_instead_of_running_at_start(gateway: RunningGateway) -> None:
    runs: TriggerRuns = gateway.app.state.triggers.runs
    nightly = schedule("nightly", at="02:30")
    clock = FakeClock(T0, until=T0 + 60)

    await run_until(ScheduleRunner("inbox", nightly, runs.ledger, runs.start, clock, clock.sleep))

    assert await runs.ledger.entries("inbox", "nightly") == []


async def test_a_schedule_starts_a_run_each_slot_marked_with_its_slot(gateway: RunningGateway, tmp_path: Path) -> None:
    runs: TriggerRuns = gateway.app.state.triggers.runs
    async with asyncio.timeout(10), runs.recorded:
        await runs.recorded.wait_for(lambda: runs.count >= 2)

    entries = [e for e in await runs.ledger.entries("inbox", "tick") if e.state == "started"]
    async with jsonrpc_client(gateway, "inbox") as client:
        tasks = [await ended(client, e.task_id) for e in entries[:2]]
    marks = [metadata(t)["trigger"] for t in tasks]
    assert [m["kind"] for m in marks] == ["schedule", "schedule"]
    assert [m["scheduledFor"] for m in marks] == [e.key.event_id for e in entries[:2]]
    assert marks[0]["scheduledFor"] < marks[1]["scheduledFor"]
    assert calls(tmp_path / "calls.jsonl")[0]["data"] == [{"job": "sweep"}]
