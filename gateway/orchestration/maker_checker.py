"""Maker-checker: a maker produces, a checker checks, until the checker approves or the cap.

The two-party case of group chat, on its ``Chat`` (transcript, turns, agreement): the maker first
gets the request as sent; the checker gets the maker's output as its message (the maker's text,
its data, and a ``maker_checker`` part with the request); on a later iteration the maker gets the
checker's feedback and its own last output (text for a model, a ``maker_checker`` data part with
``feedback`` and ``previous_output`` for a program). The checker approves with a keyword (default
``APPROVED``) or a true ``approved``/``clean`` flag; a false flag refuses even beside the keyword.

Not approved after ``max_iterations`` ends the run ``failed``, the last output and feedback in its
data. An iteration is a round: one past ``run.limits.max_rounds`` raises ``LimitExceededError``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult
from gateway.orchestration.group_chat import Chat
from gateway.orchestration.turns import clip, guard_round, require_participants, unfinished

FEEDBACK_CHARS = 2000


class MakerCheckerOptions(PatternOptions):
    """Who makes, who checks, how often, and what counts as approval."""

    maker: str = ""  # default: the first participant
    checker: str = ""  # default: the first other participant
    max_iterations: int = Field(default=3, ge=1)
    keywords: tuple[str, ...] = ("APPROVED",)
    flags: tuple[str, ...] = ("approved", "clean")

    @model_validator(mode="after")
    def _two_parties(self) -> MakerCheckerOptions:
        if self.maker and self.maker == self.checker:
            raise ValueError("maker and checker must be different agents")
        if not (self.keywords or self.flags):
            raise ValueError("the checker needs a keyword or a flag to approve with")
        return self


def roles(participants: tuple[str, ...], options: MakerCheckerOptions) -> tuple[str, str]:
    """The maker and the checker: as named, else the first two participants."""
    maker = options.maker or participants[0]
    checker = options.checker or next((name for name in participants if name != maker), "")
    return maker, checker


def check(options: MakerCheckerOptions, participants: tuple[str, ...]) -> None:
    """At load: the maker and the checker are participants, and there is a checker."""
    require_participants(participants, (options.maker, options.checker), "maker/checker")
    if not roles(participants, options)[1]:
        raise ValueError("maker-checker needs a checker: a participant other than the maker")


def _output(result: StepResult) -> dict[str, Any]:
    return {"agent": result.agent, "text": result.text, "data": result.data}


def maker_input(request: StepInput, iteration: int, made: StepResult | None, checked: StepResult | None) -> StepInput:
    """The maker's message: the request first, then the checker's feedback with the maker's last output."""
    if made is None or checked is None:
        return request
    text = (
        f"The checker's feedback on your last output:\n{checked.text}\n\n"
        f"Your last output:\n{made.text}\n\nRevise it. The request was:\n{request.text}"
    )
    revision = {
        "iteration": iteration,
        "request": request.text,
        "feedback": _output(checked),
        "previous_output": _output(made),
    }
    return StepInput(text, ({"maker_checker": revision},))


def checker_input(request: StepInput, iteration: int, made: StepResult) -> StepInput:
    """The checker's message: the maker's output itself, the request beside it in data."""
    own = (made.data,) if isinstance(made.data, dict) else ({"output": made.data},) if made.data is not None else ()
    context = {"maker_checker": {"iteration": iteration, "request": request.text, "maker": made.agent}}
    return StepInput(made.text, (*own, context))


async def run(run: Run, options: MakerCheckerOptions) -> Outcome:
    """Alternate maker and checker until the checker approves or ``max_iterations`` is reached."""
    maker, checker = roles(run.participants, options)
    chat = Chat(run.request, options.keywords, options.flags)
    made: StepResult | None = None
    checked: StepResult | None = None
    for iteration in range(1, options.max_iterations + 1):
        guard_round(run, iteration, "maker-checker")
        message = maker_input(run.request, iteration, made, checked)
        made = await chat.speak(run, maker, message, iteration, "making")
        stop = unfinished(made, f"making (iteration {iteration})", _data(chat, iteration, made, checked, False))
        if stop is not None:
            return stop
        checked = await chat.speak(run, checker, checker_input(run.request, iteration, made), iteration, "checking")
        approved = chat.turns[-1].agrees
        data = _data(chat, iteration, made, checked, approved)
        stop = unfinished(checked, f"checking (iteration {iteration})", data)
        if stop is not None:
            return stop
        if approved:
            await run.progress(f"round {iteration}: {checker} approved")
            return Outcome("completed", made.text, data)
        await run.progress(f"round {iteration}: {checker} asked for changes")
    assert made is not None and checked is not None  # max_iterations >= 1
    feedback = clip(checked.text, FEEDBACK_CHARS)
    text = f"{checker} did not approve after {options.max_iterations} iterations; last feedback:\n{feedback}"
    return Outcome("failed", text, _data(chat, options.max_iterations, made, checked, False))


def _data(chat: Chat, iteration: int, made: StepResult, checked: StepResult | None, approved: bool) -> dict[str, Any]:
    return {
        "iterations": iteration,
        "approved": approved,
        "final_output": _output(made),
        "feedback": _output(checked) if checked is not None else None,
        "transcript": chat.transcript(),
    }


SPEC = PatternSpec(name="maker-checker", run=run, options=MakerCheckerOptions, min_participants=2, check=check)
