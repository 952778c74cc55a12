"""Property: a run interrupted at any checkpoint and resumed (once, or twice) ends as the uninterrupted run did.

Random workflows of every pattern, over agents whose answers are a function of who is asked what
(``scripted_agents``): each answer is its own (it names the agent and a digest of its input, so a
result handed to the wrong step shows), and comes some event-loop passes late, so steps started
together finish in another order than they started. Some answers fail (some retryably: the
engine retries, then a fallback takes over), some ask for input (the run pauses), some hand off,
approve, vote or plan, bid (some bids malformed, declined or left to be derived) or write to a
blackboard (some writes stale, so refused and retried). The uninterrupted run keeps every
checkpoint it wrote; the run is resumed from one of them, as a gateway killed right after that
checkpoint committed resumes it, and the resumed run may be interrupted and resumed again. The
outcome (state, text and data) must be the same, and a step finished before the interruption
must not reach its agent again.

Left out: ``first-success`` and ``fail_fast`` of the concurrent pattern, whose outcome depends on
which step finishes first, also without any interruption (``engine`` module docstring).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import random
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.orchestration.api import Limits
from gateway.orchestration.checkpoints import RunRecord
from gateway.orchestration.workflows import WorkflowPlan
from tests.orchestration.replay_harness import Answer, Execution, Script, execute, new_record, plan, resume

NAMES = ("ann", "bob", "cy", "dee")
PATTERNS = (
    "sequential",
    "concurrent",
    "supervisor",
    "handoff",
    "group-chat",
    "maker-checker",
    "magentic",
    "work-queue",
    "graph",
    "contract-net",
    "blackboard",
)
RACING = ("work-queue", "work-queue", "concurrent")  # drawn more often: steps run at once and finish out of order
ITEMS = ("alpha", "beta", "gamma", "delta", "epsilon")


@dataclass(frozen=True)
class Scenario:
    """A random workflow, its request, and how often its agents fail, retryably fail or ask for input."""

    pattern: str
    participants: tuple[str, ...]
    options: dict[str, Any]
    fallbacks: dict[str, list[str]]
    retries: int
    request: str
    seed: int
    fail_rate: float
    ask_rate: float

    def plan(self) -> WorkflowPlan:
        limits = Limits(max_steps=60, max_rounds=10, retries=self.retries, backoff_base_s=0.0, breaker_threshold=10**6)
        return plan(self.pattern, self.participants, self.options, limits, self.fallbacks)


def _options(draw: st.DrawFn, pattern: str, agents: tuple[str, ...]) -> dict[str, Any]:
    if pattern == "sequential":
        exits = draw(st.sampled_from([["failure"], [], ["DONE"], ["failure", "DONE"]]))
        skips = draw(st.sampled_from([{}, {agents[-1]: "REVISE"}]))
        return {"early_exit_on": exits, "skip_if": skips}
    if pattern == "concurrent":
        merge = draw(st.sampled_from(["concatenate", "majority-vote", "confidence-weighted", "synthesis"]))
        workers = len(agents) - (merge == "synthesis")
        chosen = {"merge": merge, "min_successes": draw(st.integers(1, workers))}
        return {**chosen, "synthesizer": agents[-1]} if merge == "synthesis" else chosen
    if pattern == "supervisor":
        return {
            "max_revisions": draw(st.integers(0, 2)),
            "on_worker_failure": draw(st.sampled_from(["fail", "continue"])),
        }
    if pattern == "handoff":
        return {
            "max_hops": draw(st.integers(1, 4)),
            "allow_revisit": draw(st.booleans()),
            "input_filter": draw(st.sampled_from(["full", "last", "summary", "none"])),
        }
    if pattern == "group-chat":
        selection = draw(st.sampled_from(["round-robin", "manager"]))
        speakers = len(agents) - (selection == "manager")
        return {
            "speaker_selection": selection,
            "max_rounds": draw(st.integers(1, 4)),
            "consensus": draw(st.integers(0, min(2, speakers))),
            "on_speaker_failure": draw(st.sampled_from(["fail", "skip"])),
        }
    if pattern == "maker-checker":
        return {"max_iterations": draw(st.integers(1, 3))}
    if pattern == "graph":
        return _graph(draw, agents)
    if pattern == "contract-net":
        return {
            "award": draw(st.integers(1, min(2, len(agents)))),
            "max_announcements": draw(st.integers(1, 3)),
            "derive_bids_for": draw(st.sampled_from([[], [agents[-1]]])),
        }
    if pattern == "blackboard":
        return {
            "parallel": draw(st.integers(1, 3)),
            "max_conflict_retries": draw(st.integers(0, 2)),
            "on_failure": draw(st.sampled_from(["fail", "skip"])),
            "done_when": draw(st.sampled_from([None, {"field": "approved", "op": "eq", "value": True}])),
        }
    if pattern == "magentic":
        return {
            "max_iterations": draw(st.integers(1, 4)),
            "max_stalls": draw(st.integers(1, 2)),
            "max_replans": draw(st.integers(0, 1)),
        }
    return {
        "agents": draw(st.sampled_from([[], [agents[0]]])),  # one agent: every retry of every item goes to it
        "concurrency": draw(st.integers(1, 3)),
        "max_attempts": draw(st.integers(1, 3)),
        "fail_run_if_any_failed": draw(st.booleans()),
        # least-loaded hands an unfinished item to whichever agent is idle at the resume: not the same run
        "assign": "in-turn",
    }


def _graph(draw: st.DrawFn, agents: tuple[str, ...]) -> dict[str, Any]:
    """A chain of the agents, looping back from the last while ``approved`` is false; maybe a fan-in to the last."""
    first, last = agents[0], agents[-1]
    edges: list[dict[str, Any]] = [{"from": a, "to": b} for a, b in itertools.pairwise(agents)]
    fan = len(agents) >= 3 and draw(st.booleans())
    if fan:
        edges.append({"from": first, "to": last})
    approved = {"field": "approved", "op": "eq", "value": False}
    edges += [{"from": last, "to": first, "when": approved}, {"from": last, "to": "end", "when": {"not": approved}}]
    nodes = {a: {"agent": a, "join": fan and a == last} for a in agents}
    return {"start": first, "nodes": nodes, "edges": edges}


def _turn(agent: str, tag: str, data: tuple[dict[str, Any], ...], choose: random.Random, delay: int) -> Answer | None:
    """A contract-net bid or a blackboard write, when the step asks for one (None for every other step)."""
    for part in data:
        phase = part.get("contract_net")
        if isinstance(phase, dict) and phase.get("phase") == "call-for-bids":
            kind = choose.random()
            bid: Any = {"capability": round(choose.random(), 2), "cost": choose.randint(0, 5), "confidence": 0.5}
            if kind < 0.1:
                bid = {"cost": -1}  # malformed
            elif kind < 0.2:
                bid = None  # declines
            elif kind < 0.3:
                return Answer(f"{agent} cannot bid on {tag}", data={"note": tag}, delay=delay)  # derived
            return Answer(f"{agent} bids on {tag}", data={"bid": bid}, delay=delay)
        view = part.get("blackboard")
        if isinstance(view, dict):
            if choose.random() < 0.4:
                return Answer(f"{agent} passes on {tag}", data={"write": None}, delay=delay)
            stale = choose.random() < 0.3 and view["version"] > 0
            change = {"draft": f"{agent} on {tag}", "approved": choose.random() < 0.5}
            write = {"base_version": view["version"] - stale, "set": change}
            return Answer(f"{agent} writes {tag}", data={"write": write}, delay=delay)
    return None


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    pattern = draw(st.sampled_from(PATTERNS + RACING))
    agents = NAMES[: draw(st.integers(2, len(NAMES)))]
    fallbacks = draw(st.sampled_from([{}, {agents[0]: [agents[1]]}]))
    if pattern == "work-queue":
        request = "\n".join(ITEMS[: draw(st.integers(2, len(ITEMS)))])
    else:
        request = f"review change {draw(st.integers(1, 99))}"
    return Scenario(
        pattern=pattern,
        participants=agents,
        options=_options(draw, pattern, agents),
        fallbacks=fallbacks,
        retries=draw(st.integers(0, 2)),
        request=request,
        seed=draw(st.integers(0, 2**16)),
        fail_rate=draw(st.sampled_from([0.0, 0.15, 0.35, 0.5])),
        ask_rate=draw(st.sampled_from([0.0, 0.0, 0.05])),
    )


def scripted_agents(scenario: Scenario) -> Script:
    """Agents whose answer depends only on who is asked what (and the scenario's seed)."""

    def answer(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        asked = json.dumps([scenario.seed, agent, text, data], sort_keys=True)
        digest = hashlib.sha256(asked.encode()).hexdigest()
        choose = random.Random(digest)
        tag, delay, roll = digest[:8], choose.randrange(8), choose.random()
        if roll < scenario.fail_rate:
            retryable = choose.random() < 0.5
            return Answer(f"{agent} cannot do {tag}", "failed", retryable=retryable, delay=delay)
        if roll < scenario.fail_rate + scenario.ask_rate:
            return Answer(f"{agent} asks which one for {tag}?", "input-required", delay=delay)
        turn = _turn(agent, tag, data, choose, delay)
        if turn is not None:
            return turn
        approve = choose.random() < 0.5
        others = scenario.participants
        steps = [{"agent": choose.choice(others), "task": f"part {n} of {tag}"} for n in range(choose.randint(1, 2))]
        reply = {
            "answer": choose.choice(["yes", "no", "maybe"]),
            "confidence": round(choose.random(), 2),
            "approved": approve,
            "done": approve,
            "steps": steps,
            "plan": [step["task"] for step in steps],
            "next_speaker": choose.choice(others),
            "is_request_satisfied": choose.random() < 0.3,
            "instruction_or_question": f"look into {tag}",
        }
        said = f"{agent} on {tag}: " + ("DONE, APPROVED" if approve else "REVISE this")
        handoff = choose.choice(others) if choose.random() < 0.4 else ""
        return Answer(said, data=reply, handoff_to=handoff, delay=delay)

    return answer


def finished_steps(row: tuple[Any, ...]) -> int:
    return len(RunRecord.from_row(row).steps)


async def interrupted_and_resumed(scenario: Scenario, first: float, second: float | None) -> tuple[Execution, ...]:
    flow, script = scenario.plan(), scripted_agents(scenario)
    whole = await execute(flow, new_record(scenario.request), script)
    assert whole.checkpoints, "every run checkpoints"
    row = whole.checkpoints[int(first * len(whole.checkpoints))]
    once = await resume(flow, row, script)
    assert len(once.calls) <= len(whole.calls)
    if row is whole.checkpoints[-1]:
        assert once.calls == [], "every step was in the last checkpoint"
    if second is None or not once.checkpoints:
        return whole, once
    twice = await resume(flow, once.checkpoints[int(second * len(once.checkpoints))], script)
    return whole, once, twice


fractions = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


# derandomize: the same 600 cases on every run (a failure is reproducible); raise max_examples locally to explore.
@settings(
    max_examples=600, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(scenario=scenarios(), first=fractions, second=st.none() | fractions)
def test_a_run_resumed_from_any_checkpoint_ends_as_the_uninterrupted_run(
    scenario: Scenario, first: float, second: float | None
) -> None:
    whole, *resumed = asyncio.run(interrupted_and_resumed(scenario, first, second))

    for execution in resumed:
        assert execution.outcome == whole.outcome
