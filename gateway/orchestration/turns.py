"""What patterns share about one agent turn: reading its verdict or its JSON, ending a run on a
turn that did not complete, and the round limit every round counts against.

Limits, one rule for every pattern: a *run* limit (``run.limits``) is never turned into an
outcome. ``run.step`` raises ``LimitExceededError`` for steps, time and budget, and a pattern
raises it itself (``guard_round``) before it would start a round past ``limits.max_rounds``;
nothing here catches it, so the engine fails the run with the limit's message. A pattern's own
cap (an option such as ``max_iterations``) ends the pattern with an ``Outcome`` instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gateway.errors import PermissionDeniedError
from gateway.orchestration.api import LimitExceededError, Outcome, Run, StepResult

# "NOT APPROVED", "never DONE", "isn't APPROVED": a keyword right after a negation does not count.
_NEGATION = re.compile(r"(?:\bnot|\bnever|n't)\W*$", re.IGNORECASE)
_MAX_JSON_STARTS = 50


def _whole_word(word: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])")


def has_keyword(text: str, keywords: Iterable[str]) -> bool:
    """Whether ``text`` says one of ``keywords`` as a whole word (case-sensitive), not negated."""
    for keyword in filter(None, keywords):
        for match in _whole_word(keyword).finditer(text):
            if not _NEGATION.search(text[max(0, match.start() - 12) : match.start()]):
                return True
    return False


def first_named(text: str, names: Iterable[str]) -> str:
    """Of ``names``, the one ``text`` mentions first as a whole word; empty when none."""
    found = [(match.start(), name) for name in filter(None, names) if (match := _whole_word(name).search(text))]
    return min(found)[1] if found else ""


def flag(data: object, names: Iterable[str]) -> bool | None:
    """The first of ``names`` that ``data`` (a reply's structured data) holds as a boolean, else ``None``."""
    if isinstance(data, Mapping):
        for name in names:
            value = data.get(name)
            if isinstance(value, bool):
                return value
    return None


def says_yes(result: StepResult, keywords: Iterable[str], flags: Iterable[str]) -> bool:
    """Whether a completed reply agrees: a boolean flag in its data decides, else a keyword in its text."""
    if not result.ok:
        return False
    decided = flag(result.data, flags)
    return has_keyword(result.text, keywords) if decided is None else decided


def json_object(result: StepResult) -> dict[str, Any] | None:
    """The reply's data when it is an object, else the first JSON object in its text (fenced or bare)."""
    if isinstance(result.data, dict):
        return result.data
    decoder = json.JSONDecoder()
    starts = [index for index, char in enumerate(result.text) if char == "{"][:_MAX_JSON_STARTS]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(result.text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def unfinished(result: StepResult, doing: str, data: dict[str, Any]) -> Outcome | None:
    """How the run ends when ``result`` did not complete, ``None`` when it did.

    An agent that asks for input pauses the run (``input-required``, its question as the text);
    any other state fails it with a message naming the agent, what it was doing and why.
    """
    return None if result.ok else ended(result, doing, data)


def ended(result: StepResult, doing: str, data: dict[str, Any]) -> Outcome:
    """How the run ends on ``result``, a step that did not complete (see ``unfinished``)."""
    if result.state == "input-required":
        question = result.text or f"{result.agent} needs more input"
        return Outcome("input-required", question, {**data, "waiting_on": result.agent})
    why = result.error or result.text or "no detail"
    return Outcome("failed", f"{result.agent} {result.state} while {doing}: {why}", data)


def guard_round(run: Run, number: int, what: str) -> None:
    """Raise ``LimitExceededError("round", ...)`` when round ``number`` would pass the run's limit."""
    if number > run.limits.max_rounds:
        raise LimitExceededError("round", f"{what} needs round {number} but the run allows {run.limits.max_rounds}")


def runnable(run: Run, agents: Sequence[str], what: str) -> tuple[str, ...]:
    """Those of ``agents`` (``what`` names them: "the team") the run's caller may run (``Run.may_run``).

    What a model choosing the next agent is shown, so it routes around an agent the caller may not run instead
    of picking it and failing the run. Raises ``PermissionDeniedError`` with every reason when none is left.
    """
    refusals = {agent: run.may_run(agent) for agent in dict.fromkeys(agents)}
    allowed = tuple(agent for agent, refusal in refusals.items() if refusal is None)
    if not allowed:
        reasons = "; ".join(f"{agent}: {refusal}" for agent, refusal in refusals.items())
        raise PermissionDeniedError(f"this caller may run none of {what} ({reasons})")
    return allowed


def require_participants(participants: Sequence[str], names: Iterable[str], what: str) -> None:
    """At load: raise ``ValueError`` naming those of ``names`` (``what`` names the option) that are not participants.

    A pattern's ``check`` calls it for every agent its options name, so a workflow file naming an unknown
    agent stops the gateway from starting instead of failing its first run.
    """
    missing = [name for name in dict.fromkeys(names) if name and name not in participants]
    if missing:
        raise ValueError(
            f"{what} names agents that are not participants: {', '.join(missing)} "
            f"(participants: {', '.join(participants)})"
        )


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked when cut (prompt context stays compact)."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
