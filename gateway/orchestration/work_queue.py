"""Work queue (swarm): a batch of items shared out over a pool of agents.

Items come from ``{"items": [...]}`` in the request's data, else one per non-empty line of its
text. An object item's ``priority`` (a number, default 0) orders the queue: higher first, then in
the order given; a failed item is re-queued behind the items of its own priority. At most
``concurrency`` items are in flight (an ``asyncio.Semaphore``).

Who takes an attempt (``assign``): ``least-loaded`` (the default) gives it to the agent with the
fewest of this batch's items in flight among those that have not tried the item yet (any, once
all have), ties going to the item's turn round the pool; ``in-turn`` gives item ``i`` to the
``i``-th agent. Either way a resumed run (``engine``) first asks ``run.recorded`` which agent's
finished result the checkpoint holds for the attempt, so a replayed attempt goes to that agent and
is not done again, whatever the load is now.

With ``distribute`` and replicas sharing PostgreSQL, each attempt of an in-process agent is posted
as a row any replica may claim (``SKIP LOCKED``) and run (``gateway.hosting.work_items``); the
engine waits for its result as for any child, so timeouts, retries, fallbacks, budgets,
checkpoints and cancel apply unchanged. Elsewhere (SQLite, one process) it changes nothing.

An item still failing after ``max_attempts`` is dead-lettered: the outcome's ``dead_letter`` lists
it with every attempt's agent and error, and the progress says so. ``/metrics`` counts items by the
workflow's name and event (``switchboard_work_queue_items_total``: queued, claimed, requeued,
completed, dead_lettered) and how long each waited in the queue before an attempt took it. The outcome lists every item
(status, agent, attempts, output) with counts. It completes unless no item succeeded, or one failed
and ``fail_run_if_any_failed`` is set. More items than ``run.limits.max_steps`` raises
``LimitExceededError`` before any work starts; the engine raises it mid-batch when retries run out
of steps.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from gateway.orchestration.api import (
    LimitExceededError,
    Outcome,
    PatternOptions,
    PatternSpec,
    Run,
    StepInput,
    StepResult,
)
from gateway.orchestration.turns import clip, require_participants
from gateway.telemetry import metrics

SUMMARY_CHARS = 200


class WorkQueueOptions(PatternOptions):
    """The pool, its concurrency, retries and failure policy."""

    agents: tuple[str, ...] = ()  # default: every participant
    concurrency: int = Field(default=4, ge=1)
    max_attempts: int = Field(default=2, ge=1)
    fail_run_if_any_failed: bool = False
    assign: Literal["least-loaded", "in-turn"] = "least-loaded"
    distribute: bool = False
    """On PostgreSQL, post each attempt as a shared work item that any replica may claim and run."""


def check(options: WorkQueueOptions, participants: tuple[str, ...]) -> None:
    """At load: the pool's agents are participants."""
    require_participants(participants, options.agents, "agents")


@dataclass
class Item:
    """One item of the batch and what happened to it."""

    index: int
    value: Any
    attempts: list[dict[str, str]] = field(default_factory=list)
    result: StepResult | None = None
    queued_at: float = 0.0  # monotonic: when it was last (re)queued

    @property
    def priority(self) -> float:
        """The item's ``priority`` when it is an object with a number there, else 0 (higher goes first)."""
        value = self.value.get("priority") if isinstance(self.value, dict) else None
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0

    @property
    def tried(self) -> set[str]:
        """The agents that already tried this item."""
        return {attempt["agent"] for attempt in self.attempts}

    @property
    def status(self) -> str:
        """``done``, ``failed`` or ``pending``."""
        if self.result is None:
            return "pending"
        return "done" if self.result.ok else "failed"

    def to_dict(self) -> dict[str, Any]:
        """The item's report."""
        result = self.result
        report: dict[str, Any] = {"index": self.index, "item": self.value, "status": self.status}
        report["agent"] = result.agent if result else ""
        report["attempts"] = self.attempts
        report["output"] = (result.text if result.ok else result.error or result.text) if result else ""
        if result is not None and result.data is not None:
            report["data"] = result.data
        return report


def items_of(request: StepInput) -> list[Any]:
    """The batch: ``items`` of the first data part that has a list of them, else the text's non-empty lines."""
    for part in request.data:
        if isinstance(part.get("items"), list):
            return list(part["items"])
    return [line.strip() for line in request.text.splitlines() if line.strip()]


def item_input(request: StepInput, item: Item, total: int) -> StepInput:
    """One item's message: its text (a string item, an object's ``text``, else its JSON) and the item as data."""
    value = item.value
    if isinstance(value, str):
        text = value
    elif isinstance(value, dict) and isinstance(value.get("text"), str):
        text = value["text"]
    else:
        text = json.dumps(value)
    context: dict[str, Any] = {"item": value, "index": item.index, "total": total}
    if request.data and request.text.strip():
        context["instruction"] = request.text
    return StepInput(text, ({"work_queue": context},))


@dataclass(frozen=True)
class Pool:
    """Which agent gets an item's next attempt (see the module docstring)."""

    agents: tuple[str, ...]
    least_loaded: bool = True

    def preference(self, item: Item, load: Counter[str]) -> list[str]:
        """Every agent, the one to ask first first: untried before tried, then the least loaded, then in turn."""
        start = (item.index + len(item.attempts)) % len(self.agents)
        order = self.agents[start:] + self.agents[:start]
        turn = {agent: place for place, agent in enumerate(order)}
        busy = load if self.least_loaded else Counter[str]()
        return sorted(order, key=lambda agent: (agent in item.tried, busy[agent], turn[agent]))


@dataclass
class Batch:
    """A batch in progress: the queue, the pool, and who is waiting for what."""

    run: Run
    options: WorkQueueOptions
    items: list[Item]
    pool: Pool
    queue: list[tuple[float, int, int]] = field(default_factory=list)  # a heap of (-priority, arrival, item index)
    arrivals: itertools.count[int] = field(default_factory=itertools.count)
    load: Counter[str] = field(default_factory=Counter)  # items in flight per agent
    finished: int = 0
    in_flight: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def enqueue(self, item: Item) -> None:
        """Queue ``item`` behind the items of its priority that are already queued."""
        heapq.heappush(self.queue, (-item.priority, next(self.arrivals), item.index))
        item.queued_at = time.monotonic()
        self.count("requeued" if item.attempts else "queued")

    def count(self, event: str) -> None:
        """One item ``event`` of this run's workflow on ``/metrics``."""
        metrics.WORK_QUEUE_ITEMS.labels(self.run.name, event).inc()

    def claimed(self, item: Item) -> None:
        """``item`` leaves the queue for an attempt: counted, and how long it waited."""
        self.count("claimed")
        metrics.WORK_QUEUE_WAIT.labels(self.run.name).observe(time.monotonic() - item.queued_at)

    def pick(self, item: Item, message: StepInput) -> str:
        """The agent for ``item``'s next attempt: whose result a resumed run holds for it, else by preference."""
        preference = self.pool.preference(item, self.load)
        return self.run.recorded(preference, message, self._label(item)) or preference[0]

    async def process(self) -> None:
        """Work through the queue, ``concurrency`` items at a time, until every item is done or out of attempts."""
        gate = asyncio.Semaphore(self.options.concurrency)
        for item in self.items:
            self.enqueue(item)
        async with asyncio.TaskGroup() as group:
            while self.queue or self.in_flight:
                if not self.queue:
                    self.changed.clear()
                    await self.changed.wait()
                    continue
                await gate.acquire()
                item = self.items[heapq.heappop(self.queue)[2]]
                self.claimed(item)
                message = item_input(self.run.request, item, len(self.items))
                agent = self.pick(item, message)
                self.in_flight += 1
                self.load[agent] += 1
                group.create_task(self.attempt(item, agent, message, gate))

    async def attempt(self, item: Item, agent: str, message: StepInput, gate: asyncio.Semaphore) -> None:
        """One attempt at ``item`` by ``agent``; a failure is re-queued while attempts remain."""
        try:
            result = await self.run.step(agent, message, label=self._label(item))
        finally:
            gate.release()
            self.load[agent] -= 1
        item.attempts.append({"agent": agent, "state": result.state, "error": result.error})
        retry = not result.ok and len(item.attempts) < self.options.max_attempts
        if retry:
            self.enqueue(item)
        else:
            item.result = result
            self.finished += 1
            self.count("completed" if result.ok else "dead_lettered")
        self.in_flight -= 1
        self.changed.set()
        await self.run.progress(self._news(item, agent, result, retry))

    def _news(self, item: Item, agent: str, result: StepResult, retry: bool) -> str:
        head = f"item {item.index + 1}/{len(self.items)}"
        if retry:
            tries = f"attempt {len(item.attempts)}/{self.options.max_attempts}"
            return f"{head} {result.state} on {agent} ({tries}); re-queued"
        if item.status == "failed":
            return f"{head} dead-lettered after {len(item.attempts)} attempts, last by {agent}: {result.error}"
        return f"{head} {item.status} by {agent} ({self.finished} of {len(self.items)} finished)"

    def _label(self, item: Item) -> str:
        return f"item {item.index + 1}/{len(self.items)}, attempt {len(item.attempts) + 1}"

    def outcome(self) -> Outcome:
        """The aggregated result."""
        reports = [item.to_dict() for item in self.items]
        failed = [report["index"] for report in reports if report["status"] != "done"]
        done = len(reports) - len(failed)
        counts = {"total": len(reports), "done": done, "failed": len(failed)}
        lines = [f"{len(reports)} items: {done} done, {len(failed)} failed"]
        lines += [
            f"{r['index'] + 1}. {r['status']} ({r['agent']}): {clip(r['output'], SUMMARY_CHARS)}" for r in reports
        ]
        failing = not done or (bool(failed) and self.options.fail_run_if_any_failed)
        dead = [
            {"index": item.index, "item": item.value, "attempts": item.attempts}
            for item in self.items
            if item.status != "done"
        ]
        data = {"items": reports, "counts": counts, "failed": failed, "dead_letter": dead}
        return Outcome("failed" if failing else "completed", "\n".join(lines), data)


async def run(run: Run, options: WorkQueueOptions) -> Outcome:
    """Process every item of the request with the pool and report each one."""
    agents = options.agents or run.participants
    values = items_of(run.request)
    if not values:
        return Outcome("failed", 'work queue: no items; send {"items": [...]} as data or one item per line of text')
    if len(values) > run.limits.max_steps:
        raise LimitExceededError("step", f"{len(values)} items but the run allows {run.limits.max_steps} steps")
    pool = Pool(tuple(agents), least_loaded=options.assign == "least-loaded")
    batch = Batch(run, options, [Item(index, value) for index, value in enumerate(values)], pool)
    await run.progress(f"{len(values)} items over {len(agents)} agents, {options.concurrency} at a time")
    try:
        await batch.process()
    except* Exception as errors:
        # The first failure (a LimitExceededError, typically) is the run's, as it would be without the group.
        raise errors.exceptions[0] from None
    return batch.outcome()


SPEC = PatternSpec(name="work-queue", run=run, options=WorkQueueOptions, min_participants=1, check=check)
