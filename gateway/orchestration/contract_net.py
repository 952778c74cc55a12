"""Contract-net: the run announces the task, the participants bid, the best bids win the contract.

Each round (an announcement) asks every bidder still in the running at once, as child tasks, with
the request and a data part ``{"contract_net": {"phase": "call-for-bids", "round", "task",
"required_capabilities", "deadline_s"}}``; bidders named in ``derive_bids_for`` are not asked:
their bids are derived (``bids``). Bids that have not arrived ``bid_deadline_s`` after the
announcement are late: their steps are canceled, and they take no part in the round. Each bid is
read (``bids.read_bid``: a bid, a decline, a malformed bid refused with the reason, or a derived
bid for an agent that answered without one) and scored; the ``award`` best eligible ones win.

The winners (a coalition when ``award`` > 1) each get the task with a data part ``{"contract_net":
{"phase": "award", "round", "bid", "coalition"}}``, at once. A contractor that fails is dropped and
the task is announced again to the bidders left, for the places that failed, up to
``max_announcements`` (and the run's ``max_rounds``). A contractor that asks for input pauses the
run. The run completes with its contractors' results (one contractor's text, or each one's as
``agent: text``); its data holds every round's bids, scores, awards and failures.

A resumed run replays the bids and awards its checkpoint holds; a bidder that was late in the
interrupted run is asked again, under a new deadline, and may win this time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from pydantic import Field

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.bids import BidReport, Weights, capability_of, derive, rank_bids, read_bid, winners
from gateway.orchestration.concurrent import fan_out, summary
from gateway.orchestration.turns import ended, guard_round, require_participants

PHASE_KEY = "contract_net"


class ContractNetOptions(PatternOptions):
    """Who is asked, how bids are judged, how many win, and how long bidding lasts."""

    required_capabilities: tuple[str, ...] = Field(default=(), description="announced; bids are scored on them")
    award: int = Field(default=1, ge=1, description="contractors per task (more than one: a coalition)")
    bid_deadline_s: float = Field(default=10.0, gt=0, description="bids arriving later are late and ignored")
    max_announcements: int = Field(default=3, ge=1, description="rounds of bidding, counting re-announcements")
    min_capability: float = Field(default=0.0, ge=0, le=1, description="bids below it are ineligible")
    max_cost: float | None = Field(default=None, ge=0, description="bids above it are ineligible")
    weights: Weights = Weights()
    derive_bids_for: tuple[str, ...] = Field(default=(), description="participants that cannot bid: bids derived")
    derived_cost: float = Field(default=1.0, ge=0, description="the cost a derived bid states")


def check(options: ContractNetOptions, participants: tuple[str, ...]) -> None:
    """At load: derived bidders are participants, and there are enough bidders for the award."""
    require_participants(participants, options.derive_bids_for, "derive_bids_for")
    if options.award > len(participants):
        raise ValueError(f"award is {options.award} but only {len(participants)} participants can bid")


class ContractNet:
    """One run's rounds of bidding and awards."""

    def __init__(self, run: Run, options: ContractNetOptions) -> None:
        self.run = run
        self.options = options
        self.order = {name: index for index, name in enumerate(run.participants)}
        self.rounds: list[dict[str, Any]] = []
        self.results: list[StepResult] = []
        self.dropped: set[str] = set()  # contractors that failed
        self.failures: dict[str, int] = {}

    def data(self) -> dict[str, Any]:
        """The run's data: every round, the contractors and their results."""
        output = self.results[0].data if len(self.results) == 1 else None
        return {
            "rounds": self.rounds,
            "contractors": [r.agent for r in self.results],
            "results": [summary(r) for r in self.results],
            "output": output,
        }

    def call_for_bids(self, number: int) -> StepInput:
        """What each bidder is asked in round ``number``."""
        request, options = self.run.request, self.options
        announcement = {
            "phase": "call-for-bids",
            "round": number,
            "task": request.text,
            "required_capabilities": list(options.required_capabilities),
            "deadline_s": options.bid_deadline_s,
        }
        return StepInput(text=request.text, data=(*request.data, {PHASE_KEY: announcement}), files=request.files)

    async def collect(self, number: int, bidders: Sequence[str]) -> list[BidReport]:
        """Every bidder's report for round ``number``: asked ones until the deadline, then derived ones."""
        asked = [name for name in bidders if name not in self.options.derive_bids_for]
        request = self.call_for_bids(number)
        steps = [
            asyncio.create_task(self.run.step(name, request, label=f"bid {name} (round {number})")) for name in asked
        ]
        try:
            done: set[asyncio.Task[StepResult]] = set()
            if steps:
                done, _ = await asyncio.wait(steps, timeout=self.options.bid_deadline_s)
            errors = [task.exception() for task in done if task.exception() is not None]
            if errors:
                raise errors[0]  # type: ignore[misc]  # a run limit, a refusal: the run ends on it
        finally:
            late = [task for task in steps if not task.done()]
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        reports = []
        for name, task in zip(asked, steps, strict=True):
            if task in done:
                report = read_bid(task.result(), self.options.required_capabilities)
                report.agent = name  # the bidder's bid, also when a fallback of it answered
                reports.append(report)
            else:
                why = f"no bid within the {self.options.bid_deadline_s:g}s deadline"
                reports.append(BidReport(name, "late", reason=why))
        reports += [BidReport(name, "derived") for name in bidders if name in self.options.derive_bids_for]
        for report in reports:
            if report.status == "derived":
                self.derive(report)
        reports.sort(key=lambda r: self.order[r.agent])
        options = self.options
        rank_bids(reports, options.weights, options.min_capability, options.max_cost)
        return reports

    def derive(self, report: BidReport) -> None:
        """Fill in the derived bid of an agent that cannot bid."""
        options = self.options
        info = self.run.describe(report.agent)
        failures = self.failures.get(report.agent, 0)
        bid = derive(info, self.run.request.text, options.required_capabilities, options.derived_cost, failures)
        if bid is None:
            report.status, report.reason = "ineligible", f"its circuit is {info.circuit}: recent calls failed"
            return
        report.bid, report.capability = bid, capability_of(bid, options.required_capabilities)

    def award_input(self, number: int, report: BidReport, coalition: Sequence[str]) -> StepInput:
        """What a contractor is asked: the task, with its bid and the coalition it is part of."""
        request = self.run.request
        bid = report.bid.model_dump() if report.bid is not None else None
        award = {"phase": "award", "round": number, "bid": bid, "coalition": list(coalition)}
        return StepInput(text=request.text, data=(*request.data, {PHASE_KEY: award}), files=request.files)

    async def announce(self, number: int, places: int) -> Outcome | int:
        """One round: bids, awards, the contractors' work; the run's end, or how many places failed."""
        guard_round(self.run, number, "announcing the task again")
        taken = {r.agent for r in self.results}
        bidders = [name for name in self.run.participants if name not in self.dropped | taken]
        reports = await self.collect(number, bidders)
        chosen = winners(reports, places, self.order)
        entry: dict[str, Any] = {"round": number, "bids": [r.to_json() for r in reports], "awarded": [], "failed": []}
        self.rounds.append(entry)
        if not chosen:
            why = "; ".join(f"{r.agent}: {r.status}{' (' + r.reason + ')' if r.reason else ''}" for r in reports)
            return Outcome("failed", f"round {number}: no eligible bid ({why or 'no bidder left'})", self.data())
        entry["awarded"] = [r.agent for r in chosen]
        scores = ", ".join(f"{r.agent} ({r.score:.2f})" for r in chosen)
        await self.run.progress(f"contract-net round {number}: {len(reports)} bidders; awarded to {scores}")
        coalition = [r.agent for r in chosen]
        jobs = [(r.agent, self.award_input(number, r, coalition), f"award {r.agent} (round {number})") for r in chosen]
        outcomes = await fan_out(self.run, jobs, lambda result: False)
        failed = 0
        for result in (r for r in outcomes if r is not None):
            if result.state == "input-required":
                return ended(result, f"doing the task awarded in round {number}", self.data())
            if result.ok:
                self.results.append(result)
                continue
            failed += 1
            self.dropped.add(result.agent)
            self.failures[result.agent] = self.failures.get(result.agent, 0) + 1
            entry["failed"].append({"agent": result.agent, "reason": result.error or result.text or result.state})
            await self.run.progress(
                f"contract-net round {number}: {result.agent} failed the contract; announcing again"
            )
        return failed

    async def execute(self) -> Outcome:
        """Announce until every place is filled or the announcements run out."""
        places = self.options.award
        for number in range(1, self.options.max_announcements + 1):
            outcome = await self.announce(number, places)
            if isinstance(outcome, Outcome):
                return outcome
            places = outcome
            if not places:
                return self.completed()
        failed = ", ".join(sorted(self.dropped, key=self.order.__getitem__))
        text = f"every contractor failed after {self.options.max_announcements} announcement(s): {failed}"
        return Outcome("failed", text, self.data())

    def completed(self) -> Outcome:
        """The run's outcome once every place is filled."""
        self.results.sort(key=lambda r: self.order[r.agent])
        if len(self.results) == 1:
            return Outcome("completed", self.results[0].text, self.data())
        text = "\n\n".join(f"{r.agent}: {r.text}" if r.text else r.agent for r in self.results)
        return Outcome("completed", text, self.data())


async def run(run: Run, options: ContractNetOptions) -> Outcome:
    """Run the contract net (see the module docstring)."""
    return await ContractNet(run, options).execute()


SPEC = PatternSpec(name="contract-net", run=run, options=ContractNetOptions, min_participants=1, check=check)
