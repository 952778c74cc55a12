"""Handoff (triage, routing): one agent at a time works on the request, then passes it on.

The run starts at ``entry`` (default: the first participant) or, with ``route_first``, at the
participant whose card best matches the request (``matching``) of those the run's caller may run
(``turns.runnable``: a caller who may run none fails the run at once); when none reaches ``min_score``
the run goes to ``fallback_agent``, or fails listing the candidates. After each step the next agent
is the ``to`` of the first rule matching the result (``when``, a substring or a ``regex``, found
``in`` its text or a data key), else the agent the step handed off to itself (``handoff_to``: an llm
agent's ``transfer_to_<agent>`` call), else the run completes with that step's result.

The first agent gets the request as sent. Each next agent gets the request's text, data and files
plus a handoff envelope, as a ``{"handoff": {...}}`` data part and as readable text after the
request: who handed off and why (``note``), the work done so far and its findings, the remaining
work and the success criteria. ``input_filter`` compacts the history it carries: ``full``,
``last`` (only the last result), ``summary`` (each summary cut to ``summary_chars``), ``none``, or
``compact``: when the history is longer than ``compact_tokens`` (at ``CHARS_PER_TOKEN``), a model
summarises it to that budget first, as a step of the run (so its usage counts against the run's
budget, it is checkpointed and replayed like any step): ``compact_agent``, by default the agent the
work is handed to (its own model). The summary stands in for the history, cut to the budget should the
model overrun it; a failed summary falls back to ``summary`` cuts, saying so in the progress.

Handing off to an agent already on the path raises ``HandoffCycleError`` naming the path, unless
``allow_revisit``; a hop past ``min(max_hops, run.limits.max_hops)`` raises
``LimitExceededError("hop", ...)``; a handoff to a non-participant fails the run naming it.

The outcome's text is the last agent's. Its data holds the ``path``, the number of ``hops``, the
whole ``envelope`` (unfiltered, every agent's work in it) and the ``final`` agent's data; a routed
run adds each candidate's score under ``routing``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.orchestration.api import (
    HandoffCycleError,
    LimitExceededError,
    Outcome,
    PatternOptions,
    PatternSpec,
    Run,
    StepInput,
    StepResult,
)
from gateway.orchestration.matching import Match, rank
from gateway.orchestration.turns import clip, require_participants, runnable, unfinished

ARROW = " → "
CANDIDATE_CHARS = 120


class HandoffRule(BaseModel):
    """Hand off ``to`` an agent when the last result holds ``when`` ``in`` its text or a data key.

    ``when`` is a case-insensitive substring, or a regex with ``regex: true``; ``in`` is ``text`` or
    a key of the result's data (dots reach into nested objects; a non-string value is matched as JSON).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    when: str = Field(min_length=1)
    to: str = Field(min_length=1)
    in_: str = Field(default="text", alias="in", min_length=1)
    regex: bool = False
    note: str = ""

    @model_validator(mode="after")
    def _compiles(self) -> HandoffRule:
        if self.regex:
            try:
                re.compile(self.when)
            except re.error as exc:
                raise ValueError(f"rule to {self.to!r}: 'when' is not a valid regex: {exc}") from exc
        return self

    def matches(self, result: StepResult) -> bool:
        """Whether the rule fires on ``result``."""
        value = result.text if self.in_ == "text" else _lookup(result.data, self.in_)
        if value is None:
            return False
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        return bool(re.search(self.when, text)) if self.regex else self.when.lower() in text.lower()


def _lookup(data: object, path: str) -> object:
    for key in path.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


class HandoffOptions(PatternOptions):
    """Where the run starts, how the next agent is chosen, what it is told, and the loop guards."""

    entry: str = ""  # default: the first participant
    route_first: bool = False
    min_score: float = Field(default=3.0, ge=0)
    fallback_agent: str = ""
    rules: tuple[HandoffRule, ...] = ()
    input_filter: Literal["full", "last", "summary", "none", "compact"] = "full"
    summary_chars: int = Field(default=500, ge=1)
    compact_tokens: int = Field(default=500, ge=16)  # input_filter compact: the history's budget
    compact_agent: str = ""  # input_filter compact: who summarises (default: the agent handed to)
    success_criteria: str = ""
    allow_revisit: bool = False
    max_hops: int | None = Field(default=None, ge=0)  # default: the run's limit

    @model_validator(mode="after")
    def _consistent(self) -> HandoffOptions:
        if self.route_first and self.entry:
            raise ValueError("entry and route_first exclude each other: route_first picks the entry")
        if self.fallback_agent and not self.route_first:
            raise ValueError("fallback_agent applies only with route_first")
        return self


@dataclass(frozen=True)
class Work:
    """What one agent on the path did."""

    agent: str
    summary: str
    findings: tuple[Any, ...] = ()

    @classmethod
    def of(cls, result: StepResult) -> Work:
        """The work ``result`` records: its text (or error) and the findings in its data."""
        found = result.data.get("findings") if isinstance(result.data, dict) else None
        return cls(result.agent, result.text or result.error, tuple(found) if isinstance(found, list) else ())


@dataclass(frozen=True)
class Hop:
    """Where the run goes next and why; an empty ``to`` ends it."""

    to: str = ""
    note: str = ""
    remaining_work: str = ""


def next_hop(result: StepResult, rules: tuple[HandoffRule, ...]) -> Hop:
    """The first matching rule's agent, else the agent the step handed off to, else none."""
    remaining = result.data.get("remaining_work") if isinstance(result.data, dict) else None
    remaining = remaining if isinstance(remaining, str) else ""
    for number, rule in enumerate(rules, start=1):
        if rule.matches(result):
            note = rule.note or f"rule {number} matched ({rule.when!r} in {rule.in_})"
            return Hop(rule.to, note, remaining or rule.note)
    if result.handoff_to:
        return Hop(result.handoff_to, result.handoff_note, remaining or result.handoff_note)
    return Hop()


def envelope(run: Run, options: HandoffOptions, work: list[Work], hop: Hop) -> dict[str, Any]:
    """The handoff envelope for the next agent, its history compacted by ``input_filter`` (but ``compact``)."""
    kept = {"full": work, "last": work[-1:], "summary": work, "none": [], "compact": work}[options.input_filter]
    limit = options.summary_chars if options.input_filter == "summary" else None
    return {
        "original_request": run.request.text,
        "from": work[-1].agent if work else "",
        "work_done": [{"agent": item.agent, "summary": _cut(item.summary, limit)} for item in kept],
        "findings": [finding for item in kept for finding in item.findings],
        "remaining_work": hop.remaining_work,
        "success_criteria": options.success_criteria,
        "note": hop.note,
    }


def _cut(text: str, limit: int | None) -> str:
    return text if limit is None else clip(text, limit)


CHARS_PER_TOKEN = 4
"""The rough size of a token, for a budget given in tokens (no tokenizer: the model's own is unknown here)."""


def history_text(work: list[dict[str, Any]]) -> str:
    """The work done so far as the next agent reads it."""
    return "\n".join(f"[{item['agent']}]\n{item['summary']}" for item in work)


async def compact(run: Run, options: HandoffOptions, handed: dict[str, Any], to: str, label: str) -> dict[str, Any]:
    """``handed`` with its history summarised to ``compact_tokens`` by a model when it is longer."""
    budget = options.compact_tokens * CHARS_PER_TOKEN
    history = history_text(handed["work_done"])
    if len(history) <= budget:
        return handed
    summariser = options.compact_agent or to
    ask = (
        f"Summarise the work below for {to}, who takes over the request, in at most {options.compact_tokens} tokens. "
        "Keep decisions, results, open questions and anything the next agent must not redo; drop the rest. "
        "Answer with the summary only.\n\n"
        f"Request: {run.request.text}\n\nWork done so far:\n{history}"
    )
    request = StepInput(ask, ({"compact": {"max_tokens": options.compact_tokens, "for": to}},))
    result = await run.step(summariser, request, label=f"{label}: compact for {to}")
    if result.ok and result.text.strip():
        summary = clip(result.text.strip(), budget)
        return {**handed, "work_done": [{"agent": f"summary by {summariser}", "summary": summary}]}
    await run.progress(f"{label}: compact by {summariser} {result.state}; history cut to {budget} characters instead")
    cut = [
        {**item, "summary": clip(item["summary"], budget // len(handed["work_done"]))} for item in handed["work_done"]
    ]
    return {**handed, "work_done": cut}


def handoff_input(run: Run, handed: dict[str, Any], to: str) -> StepInput:
    """The next agent's message: the request as sent, then the envelope as text and as a data part."""
    lines = [run.request.text, "", f"--- handed off from {handed['from']} to {to} ---"]
    if handed["note"]:
        lines.append(f"Note: {handed['note']}")
    if handed["work_done"]:
        lines += ["", "Work done so far:"]
        lines.append(history_text(handed["work_done"]))
    if handed["findings"]:
        lines += ["", f"Findings so far: {len(handed['findings'])} (in the handoff data part)"]
    if handed["remaining_work"]:
        lines += ["", f"Remaining work: {handed['remaining_work']}"]
    if handed["success_criteria"]:
        lines += ["", f"Success criteria: {handed['success_criteria']}"]
    return StepInput("\n".join(lines), ({"handoff": handed}, *run.request.data), run.request.files)


def hop_limit(run: Run, options: HandoffOptions) -> int:
    """How many handoffs the run may make: the option, bounded by the run's limit."""
    limit = run.limits.max_hops
    return limit if options.max_hops is None else min(options.max_hops, limit)


def check_hop(run: Run, options: HandoffOptions, path: list[str], to: str) -> str:
    """A message when ``to`` is not a participant; raises on a cycle or past the hop limit."""
    if to not in run.participants:
        known = ", ".join(run.participants)
        return f"{path[-1]} handed off to {to!r}, which is not a participant of this run (participants: {known})"
    route = ARROW.join([*path, to])
    if to in path and not options.allow_revisit:
        raise HandoffCycleError(f"handoff cycle: {route} (allow_revisit permits returning to an agent)")
    limit = hop_limit(run, options)
    if len(path) > limit:
        raise LimitExceededError("hop", f"handoff {route} needs hop {len(path)} but the run allows {limit}")
    return ""


async def first_agent(run: Run, options: HandoffOptions) -> tuple[str, list[Match]]:
    """Where the run starts (empty when routing found no agent) and, when routed, every candidate's score."""
    if not options.route_first:
        entry = options.entry or run.participants[0]
        await run.progress(f"start: {entry}")
        return entry, []
    infos = [replace(run.describe(name), name=name) for name in runnable(run, run.participants, "the candidates")]
    ranked = rank(run.request.text, infos)
    top = ranked[0] if ranked and ranked[0].score >= options.min_score else None
    if top is not None:
        await run.progress(f"routed to {top.agent} (score {top.score:g}: {', '.join(top.terms) or 'named'})")
        return top.agent, ranked
    if options.fallback_agent:
        await run.progress(f"no agent matches this request; falling back to {options.fallback_agent}")
    return options.fallback_agent, ranked


def no_match(run: Run, options: HandoffOptions, ranked: list[Match]) -> Outcome:
    """The failed outcome when routing found no agent: every candidate, with its score and what it does."""
    scores = {match.agent: match.score for match in ranked}
    lines = [f"no agent matches this request (minimum score {options.min_score:g}); candidates:"]
    for name in runnable(run, run.participants, "the candidates"):
        description = clip(" ".join(run.describe(name).description.split()), CANDIDATE_CHARS)
        lines.append(f"- {name} (score {scores.get(name, 0):g}): {description}")
    return Outcome("failed", "\n".join(lines), {"path": [], "routing": _routing(ranked)})


def _routing(ranked: list[Match]) -> list[dict[str, Any]]:
    return [{"agent": match.agent, "score": match.score, "terms": list(match.terms)} for match in ranked]


def check(options: HandoffOptions, participants: tuple[str, ...]) -> None:
    """At load: the agents the options name are participants (a transfer an agent asks for is checked as it comes)."""
    named = (options.entry, options.fallback_agent, options.compact_agent, *(rule.to for rule in options.rules))
    require_participants(participants, named, "entry/fallback_agent/compact_agent/rules")


async def run(run: Run, options: HandoffOptions) -> Outcome:
    """Start at the entry (or the best match), then follow rules and transfers until an agent ends it."""
    agent, ranked = await first_agent(run, options)
    if not agent:
        return no_match(run, options, ranked)
    path, hop = [agent], Hop()
    work: list[Work] = []
    extra = {"routing": _routing(ranked)} if options.route_first else {}
    message = run.request
    while True:
        label = f"hop {len(path) - 1}: {agent}" if len(path) > 1 else f"start: {agent}"
        result = await run.step(agent, message, label=label)
        work.append(Work.of(result))
        stop = unfinished(result, f"handling the request ({label})", _data(run, options, path, work, hop, extra))
        if stop is not None:
            return stop
        hop = next_hop(result, options.rules)
        if not hop.to:
            final = {"final": {"agent": agent, "data": result.data}}
            return Outcome("completed", result.text, {**_data(run, options, path, work, hop, extra), **final})
        problem = check_hop(run, options, path, hop.to)
        if problem:
            return Outcome("failed", f"handoff: {problem}", _data(run, options, path, work, hop, extra))
        await run.progress(f"hop {len(path)}: {agent}{ARROW}{hop.to}")
        handed = envelope(run, options, work, hop)
        if options.input_filter == "compact":
            handed = await compact(run, options, handed, hop.to, f"hop {len(path)}")
        message = handoff_input(run, handed, hop.to)
        agent = hop.to
        path.append(agent)


def _data(
    run: Run, options: HandoffOptions, path: list[str], work: list[Work], hop: Hop, extra: dict[str, Any]
) -> dict[str, Any]:
    # The outcome keeps the whole record, whatever the filter handed on.
    record = envelope(run, options.model_copy(update={"input_filter": "full"}), work, hop)
    return {"path": list(path), "hops": len(path) - 1, "envelope": record, **extra}


SPEC = PatternSpec(name="handoff", run=run, options=HandoffOptions, min_participants=1, check=check)
