"""Blackboard: contributors read and write one shared, versioned board until it is done or quiet.

The board (``board``) starts with the request's text under ``request``, the request's first data
part's members, and ``options.initial``, all at version 0. Each round the controller picks the
contributors with something new to react to: a key they watch (``contributors: {agent: {watches:
[key]}}``; no entry, or no keys, watches every key) changed since their last turn by someone else.
The ``parallel`` of them served least recently (ties in participant order) take a turn at once,
as child tasks, each getting the request's text and a data part ``{"blackboard": {"version",
"board", "changed", "round"}}``, and answering with a write (``board.Write``) or none.

Writes are applied in participant order, not in the order turns finished, so a resumed run
replays them alike. A write made on a version older than a change to a key it touches is refused
as a conflict and its contributor is asked again with the board as it is now (a new child task),
up to ``max_conflict_retries`` times; a malformed write is refused with the reason and changes
nothing. Each applied write, and each round's end, replaces the run's ``blackboard`` artifact
(``{version, board, events}``), so A2A subscribers and MCP ``run://{run_id}/artifacts/blackboard``
subscribers see the board live.

The run completes when ``done_when`` (a condition on the board, as a graph's edges have:
``graph_model``) holds, or when no contributor has anything new to react to; its text is the
board's ``answer_key`` (when set and present), its data the board, its version and its whole
history. A contributor that fails ends the run failed, unless ``on_failure: skip``; one that asks
for input pauses it. Rounds count against ``max_rounds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.board import Board, Write, WriteConflictError, read_write
from gateway.orchestration.concurrent import fan_out
from gateway.orchestration.graph_model import Condition, also_text, compare_problem, comparisons, holds
from gateway.orchestration.turns import ended, guard_round, require_participants

ARTIFACT = "blackboard"
REQUEST_KEY = "request"


class Contributor(BaseModel):
    """What calls a contributor: changes to the keys it watches (every key, when none is named)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    watches: tuple[str, ...] = ()


class BlackboardOptions(PatternOptions):
    """The board's start, its contributors, and when it is done."""

    contributors: dict[str, Contributor] = Field(default={}, description="agent -> {watches: [key]}")
    initial: dict[str, Any] = Field(default={}, description="the board's content at version 0, beside the request")
    done_when: Condition | None = Field(
        default=None, description="a condition on the board that ends the run", json_schema_extra=also_text
    )
    answer_key: str = Field(default="", description="the board key whose value is the run's answer")
    parallel: int = Field(default=1, ge=1, description="contributors taking a turn at once")
    max_conflict_retries: int = Field(default=2, ge=0, description="times a refused stale write is retried")
    on_failure: Literal["fail", "skip"] = "fail"

    @model_validator(mode="after")
    def _done_when_can_hold(self) -> BlackboardOptions:
        for compare in comparisons(self.done_when):
            problem = compare_problem(compare, {})  # the board is untyped: only what can never hold is refused
            if problem:
                raise ValueError(f"done_when: {problem}")
        return self


def check(options: BlackboardOptions, participants: tuple[str, ...]) -> None:
    """At load: contributors named in the options are participants."""
    require_participants(participants, options.contributors, "contributors")


class BlackboardRun:
    """One run's board and its controller."""

    def __init__(self, run: Run, options: BlackboardOptions) -> None:
        self.run = run
        self.options = options
        given = next(iter(run.request.data), {})
        self.board = Board.start({REQUEST_KEY: run.request.text, **given, **options.initial})
        self.seen = dict.fromkeys(run.participants, -1)  # the version each contributor last worked on
        self.turns = dict.fromkeys(run.participants, 0)  # the round of each one's last turn
        self.round = 0

    def watches(self, agent: str) -> tuple[str, ...]:
        contributor = self.options.contributors.get(agent)
        return contributor.watches if contributor else ()

    def due(self) -> list[str]:
        """The contributors with a change to react to, least recently served first."""
        waiting = [a for a in self.run.participants if self.board.changed_for(a, self.seen[a], self.watches(a))]
        order = {name: index for index, name in enumerate(self.run.participants)}
        return sorted(waiting, key=lambda a: (self.turns[a], order[a]))

    def turn_input(self, agent: str) -> StepInput:
        board = self.board
        changed = board.changed_for(agent, self.seen[agent], self.watches(agent))
        view = {"version": board.version, "board": board.state, "changed": changed, "round": self.round}
        return StepInput(text=self.run.request.text, data=({ARTIFACT: view},), files=self.run.request.files)

    def data(self, reason: str) -> dict[str, Any]:
        return {**self.board.view(), "rounds": self.round, "reason": reason}

    async def publish(self) -> None:
        await self.run.artifact(ARTIFACT, self.board.view())

    async def take(self, agent: str, result: StepResult, base: int) -> Outcome | None:
        """Apply one finished turn (retrying a stale write); the run's end when the turn ends it."""
        self.seen[agent], self.turns[agent] = base, self.round
        for retry in range(self.options.max_conflict_retries + 1):
            if not result.ok:
                return await self.failed(agent, result)
            write, problem = read_write(result.data)
            if problem:
                self.board.record(agent, "malformed", reason=problem, round=self.round)
                await self.run.progress(f"blackboard: {agent}'s write refused: {problem}")
                return None
            if write is None:
                self.board.record(agent, "pass", round=self.round)
                return None
            try:
                await self.applied(agent, write)
                return None
            except WriteConflictError as conflict:
                self.board.record(agent, "conflict", write.touched(), reason=str(conflict), round=self.round)
                await self.run.progress(f"blackboard: {agent}'s write refused ({conflict}); asking again")
            if retry == self.options.max_conflict_retries:
                break
            self.seen[agent] = self.board.version
            label = f"turn {agent} (round {self.round}, retry {retry + 1})"
            result = await self.run.step(agent, self.turn_input(agent), label=label)
        why = f"still stale after {self.options.max_conflict_retries} retries"
        self.board.record(agent, "gave-up", reason=why, round=self.round)
        return None

    async def applied(self, agent: str, write: Write) -> None:
        self.board.apply(agent, write, self.round)
        await self.run.progress(f"blackboard v{self.board.version}: {agent} wrote {', '.join(write.touched())}")
        await self.publish()

    async def failed(self, agent: str, result: StepResult) -> Outcome | None:
        if result.state == "input-required":
            return ended(result, f"taking its turn on the blackboard (round {self.round})", self.data("waiting"))
        self.board.record(agent, "failed", reason=result.error or result.text or result.state, round=self.round)
        if self.options.on_failure == "skip":
            return None
        return ended(result, f"taking its turn on the blackboard (round {self.round})", self.data("failed"))

    async def play(self) -> Outcome:
        """Rounds until the board is done or quiet (see the module docstring)."""
        await self.publish()
        while True:
            if self.options.done_when is not None and holds(self.options.done_when, self.board.state):
                return self.finish("done_when holds")
            chosen = self.due()[: self.options.parallel]
            if not chosen:
                return self.finish("no contributor has anything new to react to")
            self.round += 1
            guard_round(self.run, self.round, "the blackboard")
            outcome = await self.play_round(chosen)
            if outcome is not None:
                return outcome

    async def play_round(self, chosen: Sequence[str]) -> Outcome | None:
        base = self.board.version
        jobs = [(agent, self.turn_input(agent), f"turn {agent} (round {self.round})") for agent in chosen]
        results = await fan_out(self.run, jobs, lambda result: False)
        try:
            for agent, result in zip(chosen, results, strict=True):
                if result is not None:
                    outcome = await self.take(agent, result, base)
                    if outcome is not None:
                        return outcome
            return None
        finally:
            await self.publish()  # the round's refusals and passes too: the live history is the whole history

    def finish(self, reason: str) -> Outcome:
        key = self.options.answer_key
        answer = self.board.state.get(key) if key else None
        text = answer if isinstance(answer, str) else f"the blackboard is at version {self.board.version}: {reason}"
        return Outcome("completed", text, self.data(reason))


async def run(run: Run, options: BlackboardOptions) -> Outcome:
    """Run the blackboard (see the module docstring)."""
    return await BlackboardRun(run, options).play()


SPEC = PatternSpec(name="blackboard", run=run, options=BlackboardOptions, min_participants=1, check=check)
