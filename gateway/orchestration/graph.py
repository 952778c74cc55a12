"""Graph: nodes (agents or nested workflows) joined by edges whose conditions read a typed state.

The state is a JSON object checked against ``options.state`` (a JSON Schema). It starts as the
request's first data part (its ``state`` member when it has one), with the schema's top-level
defaults filled in. The run goes in steps: every node whose turn it is runs at once, as a child
task, getting the text its predecessors produced (the request's text, for ``start``) and a data
part ``{"state": ..., "graph": {"node", "visit"}}``. Each node's output updates the state: its
data's ``state`` member when it has one (a nested graph's), else its data, key by key, or its
whole data under ``data_to`` (a nested workflow's result), plus its text under ``text_to``.
Two nodes of one step writing different values to one key fail the run (give each branch its own
field), as does a state the schema refuses.

Then each node's edges are tested on the new state (``graph_model``), in file order: every edge
that holds is taken, so two edges that hold fan out to two nodes, which run together in the next
step; ``end`` ends the branch, and a node with no edges ends it too. A node with edges none of
which holds fails the run, naming the node and the state. A ``join`` node (fan-in) waits until
no other node due to run can still reach it, then runs once with every branch's text. The run
completes when no node is due, with the texts of the branches that ended and the final state.

Loops are bounded: a node runs at most ``max_rounds`` times per run, and every node counts
against ``max_steps``. A graph whose cycles could never stop, or that has nodes no path reaches,
is refused when the file loads. Each node's step is checkpointed, so a resumed run replays the
finished nodes and goes on from the state they left.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
from jsonschema.protocols import Validator

from gateway.orchestration.api import (
    LimitExceededError,
    Outcome,
    PatternSpec,
    Run,
    StepInput,
    StepResult,
)
from gateway.orchestration.concurrent import fan_out
from gateway.orchestration.graph_model import END, GraphOptions, Node, check_participants, holds, reachable
from gateway.orchestration.turns import clip, ended

STATE_CHARS = 500


def initial_state(request: StepInput, options: GraphOptions) -> tuple[dict[str, Any], str]:
    """The run's first state, and why it does not match the schema (empty when it does)."""
    given = next(iter(request.data), {})
    state = dict(given["state"] if isinstance(given.get("state"), dict) else given)
    properties = options.state.get("properties")
    for key, declared in properties.items() if isinstance(properties, dict) else ():
        if isinstance(declared, dict) and "default" in declared:
            state.setdefault(key, declared["default"])
    return state, schema_problem(options.validator, state, "the request's state")


def schema_problem(validator: Validator, state: Mapping[str, Any], what: str) -> str:
    """Why ``state`` does not match the schema of ``validator`` (empty when it does)."""
    error = jsonschema.exceptions.best_match(validator.iter_errors(state))
    if error is None:
        return ""
    where = "/".join(str(p) for p in error.absolute_path) or "(the state)"
    return f"{what} does not match the state schema at {where}: {error.message}"


def node_update(node: Node, result: StepResult) -> dict[str, Any]:
    """What a finished node writes to the state (see the module docstring)."""
    if node.data_to:
        update: dict[str, Any] = {node.data_to: result.data}
    else:
        data = result.data if isinstance(result.data, dict) else {}
        update = dict(data["state"]) if isinstance(data.get("state"), dict) else dict(data)
    if node.text_to:
        update[node.text_to] = result.text
    return update


class GraphRun:
    """One run's walk of the graph."""

    def __init__(self, run: Run, options: GraphOptions, state: dict[str, Any]) -> None:
        self.run = run
        self.options = options
        self.state = state
        self.order = options.node_names() or list(run.participants)
        self.graph = {n: [e.to for e in options.edges if e.from_ == n and e.to != END] for n in self.order}
        self.due: dict[str, list[str]] = {options.start: [run.request.text]}
        self.visits: Counter[str] = Counter()
        self.path: list[dict[str, Any]] = []
        self.routes: list[dict[str, Any]] = []
        self.ended: list[str] = []

    def data(self) -> dict[str, Any]:
        """The run's data: final state, every node visit and every edge taken."""
        return {"state": self.state, "path": self.path, "routes": self.routes}

    def ready(self) -> list[str]:
        """The nodes that run in this step: every due node, but a join while another due node can reach it."""
        due = [n for n in self.order if n in self.due]
        ready = [
            n
            for n in due
            if not self.options.node(n).join or not any(n in reachable(o, self.graph) for o in due if o != n)
        ]
        return ready or due[:1]

    def job(self, node: str) -> tuple[str, StepInput, str]:
        """The step of one node's visit: its agent, its input and its label."""
        self.visits[node] += 1
        visit = self.visits[node]
        if visit > self.run.limits.max_rounds:
            raise LimitExceededError(
                "round", f"node {node} would run {visit} times; a node may run max_rounds={self.run.limits.max_rounds}"
            )
        text = "\n\n".join(t for t in self.due.pop(node) if t) or self.run.request.text
        data = {"state": self.state, "graph": {"node": node, "visit": visit}}
        request = StepInput(text=text, data=(data,), files=self.run.request.files)
        return self.options.node(node).agent, request, f"node {node} #{visit}"

    def merge(self, finished: Sequence[tuple[str, StepResult]]) -> str:
        """Apply the step's writes to the state; why they cannot be (empty when they can)."""
        writes: dict[str, tuple[str, Any]] = {}
        for node, result in finished:
            for key, value in node_update(self.options.node(node), result).items():
                if key in writes and writes[key][1] != value:
                    return (
                        f"nodes {writes[key][0]} and {node} wrote different values to {key!r} in the same step; "
                        "give each branch its own field"
                    )
                writes[key] = (node, value)
        state = {**self.state, **{key: value for key, (_, value) in writes.items()}}
        writers = ", ".join(node for node, _ in finished)
        problem = schema_problem(self.options.validator, state, f"the state written by {writers}")
        if not problem:
            self.state = state
        return problem

    async def route(self, node: str, result: StepResult, step: int) -> str:
        """Take the node's edges that hold; why none can be taken (empty when one is)."""
        outgoing = [e for e in self.options.edges if e.from_ == node]
        if not outgoing:
            self.ended.append(result.text)
            return ""
        taken = [e for e in outgoing if holds(e.when, self.state)]
        if not taken:
            shown = clip(json.dumps(self.state, sort_keys=True, default=str), STATE_CHARS)
            return f"no edge from {node} holds on the state {shown}"
        for edge in taken:
            self.routes.append({"step": step, "from": node, "to": edge.to})
            if edge.to == END:
                self.ended.append(result.text)
            else:
                self.due.setdefault(edge.to, []).append(result.text)
        await self.run.progress(f"graph: {node} -> {', '.join(e.to for e in taken)}")
        return ""

    async def walk(self) -> Outcome:
        """Run steps until no node is due (see the module docstring)."""
        step = 0
        while self.due:
            step += 1
            nodes = self.ready()
            jobs = [self.job(node) for node in nodes]
            results = await fan_out(self.run, jobs, lambda r: not r.ok)
            finished = [(n, r) for n, r in zip(nodes, results, strict=True) if r is not None]
            for node, result in finished:
                self.path.append(
                    {"node": node, "visit": self.visits[node], "agent": result.agent, "state": result.state}
                )
            failed = next(((n, r) for n, r in finished if not r.ok), None)
            if failed is not None:
                return ended(failed[1], f"running node {failed[0]}", self.data())
            problem = self.merge(finished)
            for node, result in finished:
                problem = problem or await self.route(node, result, step)
            if problem:
                return Outcome("failed", problem, self.data())
        text = "\n\n".join(t for t in self.ended if t)
        return Outcome("completed", text, self.data())


async def run(run: Run, options: GraphOptions) -> Outcome:
    """Walk the graph from ``start`` (see the module docstring)."""
    state, problem = initial_state(run.request, options)
    if problem:
        return Outcome("failed", problem, {"state": state})
    return await GraphRun(run, options, state).walk()


SPEC = PatternSpec(name="graph", run=run, options=GraphOptions, min_participants=1, check=check_participants)
