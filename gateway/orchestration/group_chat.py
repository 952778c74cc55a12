"""Group chat: participants take turns on a shared transcript until someone ends it.

The next speaker is chosen round-robin, by rules on the last message, or by a manager agent
asked "who speaks next" (told only of the speakers the run's caller may run, ``turns.runnable``;
one it names anyway fails the run with the reason, the engine's check). Each speaker gets the
request and the last ``context_turns`` turns. The chat ends when a message carries a termination
keyword (or a true ``done``/``approved`` flag), when the last ``consensus`` distinct speakers all
agreed, or after ``max_rounds`` turns — all three complete the run. A round is one speaker's
turn; a round past ``run.limits.max_rounds`` raises ``LimitExceededError``. ``Chat`` is the
machinery maker-checker shares.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.orchestration.api import Outcome, PatternOptions, PatternSpec, Run, StepInput, StepResult, StepState
from gateway.orchestration.turns import (
    clip,
    first_named,
    guard_round,
    has_keyword,
    require_participants,
    runnable,
    says_yes,
    unfinished,
)

TURN_CHARS = 4000


class Rule(BaseModel):
    """``speaker`` speaks next when the last message contains ``when`` (a regex when ``regex``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(min_length=1)
    speaker: str = Field(min_length=1)
    regex: bool = False

    @model_validator(mode="after")
    def _compiles(self) -> Rule:
        if self.regex:
            try:
                re.compile(self.when)
            except re.error as exc:
                raise ValueError(f"rule for {self.speaker!r}: 'when' is not a valid regex: {exc}") from exc
        return self

    def matches(self, text: str) -> bool:
        """Whether the rule fires on ``text`` (substrings match case-insensitively)."""
        return bool(re.search(self.when, text)) if self.regex else self.when.lower() in text.lower()


class GroupChatOptions(PatternOptions):
    """How speakers are chosen and when the chat ends."""

    speakers: tuple[str, ...] = ()  # default: every participant but the manager
    speaker_selection: Literal["round-robin", "rules", "manager"] = "round-robin"
    rules: tuple[Rule, ...] = ()
    manager: str = ""  # default (for speaker_selection "manager"): the first participant
    keywords: tuple[str, ...] = ("DONE", "APPROVED")
    flags: tuple[str, ...] = ("done", "approved")
    consensus: int = Field(default=0, ge=0)  # 0: one agreeing message ends the chat
    max_rounds: int = Field(default=10, ge=1)
    context_turns: int = Field(default=6, ge=1)
    on_speaker_failure: Literal["fail", "skip"] = "fail"

    @model_validator(mode="after")
    def _consistent(self) -> GroupChatOptions:
        if self.speaker_selection == "rules" and not self.rules:
            raise ValueError("speaker_selection 'rules' needs at least one rule")
        if self.consensus and not (self.keywords or self.flags):
            raise ValueError("consensus needs a keyword or a flag to agree on")
        return self


@dataclass(frozen=True)
class Turn:
    """One message of the chat."""

    round: int
    speaker: str
    text: str
    state: StepState = "completed"
    data: dict[str, Any] | list[Any] | None = None
    agrees: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The turn as plain JSON-ready values."""
        entry: dict[str, Any] = {"round": self.round, "speaker": self.speaker, "state": self.state, "text": self.text}
        if self.data is not None:
            entry["data"] = self.data
        return entry


@dataclass
class Chat:
    """A conversation in progress: the request, every turn so far, and what counts as agreeing."""

    request: StepInput
    keywords: tuple[str, ...]
    flags: tuple[str, ...]
    turns: list[Turn] = field(default_factory=list)

    async def speak(
        self, run: Run, speaker: str, message: StepInput, number: int, doing: str = "speaking"
    ) -> StepResult:
        """Run ``speaker``'s turn of round ``number`` and add it to the transcript."""
        await run.progress(f"round {number}: {speaker} {doing}")
        result = await run.step(speaker, message, label=f"round {number}: {speaker}")
        agrees = says_yes(result, self.keywords, self.flags)
        self.turns.append(Turn(number, speaker, result.text or result.error, result.state, result.data, agrees))
        return result

    def last_said(self) -> str:
        """The last message of the chat (the request before anyone spoke)."""
        return self.turns[-1].text if self.turns else self.request.text

    def transcript(self) -> list[dict[str, Any]]:
        """Every turn as plain values."""
        return [turn.to_dict() for turn in self.turns]

    def context(self, speaker: str, number: int, turns: int, ask: str = "") -> StepInput:
        """What ``speaker`` sees in round ``number``: the request, the last ``turns`` turns, then ``ask``."""
        recent = self.turns[-turns:]
        omitted = len(self.turns) - len(recent)
        lines = [f"Request: {self.request.text}", ""]
        if omitted:
            lines.append(f"({omitted} earlier turns omitted)")
        lines += [f"[{turn.speaker}] {clip(turn.text, TURN_CHARS)}" for turn in recent]
        lines += ["", ask or f"You are {speaker}, speaking in round {number}. Reply with your next message."]
        chat: dict[str, Any] = {"request": self.request.text, "round": number, "speaker": speaker, "omitted": omitted}
        chat["transcript"] = [turn.to_dict() for turn in recent]
        return StepInput("\n".join(lines), ({"group_chat": chat}, *self.request.data), self.request.files)

    def consensus(self, speakers: int) -> bool:
        """Whether the latest turns of the last ``speakers`` distinct speakers all agreed."""
        latest: dict[str, Turn] = {}
        for turn in reversed(self.turns):
            latest.setdefault(turn.speaker, turn)
            if len(latest) == speakers:
                return all(turn.agrees for turn in latest.values())
        return False

    def outcome(self, stopped_by: str, **extra: Any) -> Outcome:
        """The completed outcome: the final message, the whole transcript, and why it stopped."""
        spoken = [turn for turn in self.turns if turn.state == "completed"]
        final = spoken[-1] if spoken else None
        data: dict[str, Any] = {
            "transcript": self.transcript(),
            "final": final.to_dict() if final else None,
            "rounds": self.turns[-1].round if self.turns else 0,
            "stopped_by": stopped_by,
            **extra,
        }
        return Outcome("completed", final.text if final else "", data)


Selector = Callable[[Run, GroupChatOptions, tuple[str, ...], Chat, int], Awaitable[str | Outcome]]


async def _round_robin(run: Run, options: GroupChatOptions, speakers: tuple[str, ...], chat: Chat, number: int) -> str:
    if not chat.turns:
        return speakers[0]
    last = chat.turns[-1].speaker
    return speakers[(speakers.index(last) + 1) % len(speakers)] if last in speakers else speakers[0]


async def _by_rules(run: Run, options: GroupChatOptions, speakers: tuple[str, ...], chat: Chat, number: int) -> str:
    said = chat.last_said()
    for rule in options.rules:
        if rule.matches(said):
            return rule.speaker
    return await _round_robin(run, options, speakers, chat, number)


async def _by_manager(
    run: Run, options: GroupChatOptions, speakers: tuple[str, ...], chat: Chat, number: int
) -> str | Outcome:
    manager = manager_of(run.participants, options)
    offered = runnable(run, speakers, "the chat's speakers")
    done = f", or {options.keywords[0]} if the chat is finished" if options.keywords else ""
    ask = f"You moderate this chat. Who speaks next? Answer with exactly one of: {', '.join(offered)}{done}."
    context = chat.context(manager, number, options.context_turns, ask)
    picked = await run.step(manager, context, label=f"round {number}: who speaks next")
    stop = unfinished(picked, "choosing the next speaker", {"transcript": chat.transcript()})
    if stop is not None:
        return stop
    if has_keyword(picked.text, options.keywords):
        return chat.outcome("manager")
    name = _named_speaker(picked, speakers)
    if name:
        return name
    fallback = await _round_robin(run, options, offered, chat, number)
    await run.progress(f"round {number}: {manager} named no speaker; {fallback} is next in turn")
    return fallback


def _named_speaker(picked: StepResult, speakers: tuple[str, ...]) -> str:
    data = picked.data if isinstance(picked.data, dict) else {}
    for value in (data.get("speaker"), data.get("next_speaker"), picked.text.strip().strip("`*'\".")):
        if isinstance(value, str) and value.strip() in speakers:
            return value.strip()
    return first_named(picked.text, speakers)


SELECTORS: dict[str, Selector] = {"round-robin": _round_robin, "rules": _by_rules, "manager": _by_manager}


def manager_of(participants: tuple[str, ...], options: GroupChatOptions) -> str:
    """The manager agent: the named one, else the first participant."""
    return options.manager or participants[0]


def speakers_of(participants: tuple[str, ...], options: GroupChatOptions) -> tuple[str, ...]:
    """Who takes turns: the named speakers, else every participant but the manager."""
    if options.speakers:
        return options.speakers
    manager = manager_of(participants, options) if options.speaker_selection == "manager" else ""
    return tuple(name for name in participants if name != manager)


def check(options: GroupChatOptions, participants: tuple[str, ...]) -> None:
    """At load: the speakers, the rules' speakers and the manager are participants; enough speak for consensus."""
    named = (*options.speakers, *(rule.speaker for rule in options.rules), options.manager)
    require_participants(participants, named, "speakers/rules/manager")
    speakers = speakers_of(participants, options)
    if not speakers:
        raise ValueError("the chat has no speakers")
    if options.consensus > len(speakers):
        raise ValueError(f"consensus of {options.consensus} speakers, but only {len(speakers)} speak")


async def run(run: Run, options: GroupChatOptions) -> Outcome:
    """Run the chat on ``run.request`` until a termination rule ends it."""
    speakers = speakers_of(run.participants, options)
    if options.speaker_selection == "manager":
        runnable(run, speakers, "the chat's speakers")  # none: the run fails before the manager is asked
    chat = Chat(run.request, options.keywords, options.flags)
    select = SELECTORS[options.speaker_selection]
    for number in range(1, options.max_rounds + 1):
        guard_round(run, number, "the group chat")
        choice = await select(run, options, speakers, chat, number)
        if isinstance(choice, Outcome):
            return choice
        result = await chat.speak(run, choice, chat.context(choice, number, options.context_turns), number)
        stop = unfinished(result, f"speaking in round {number}", {"transcript": chat.transcript()})
        if stop is not None:
            if result.state == "input-required" or options.on_speaker_failure == "fail":
                return stop
            await run.progress(f"round {number}: {choice} {result.state}, skipped")
        elif options.consensus > 1 and chat.consensus(options.consensus):
            return chat.outcome("consensus")
        elif options.consensus <= 1 and chat.turns[-1].agrees:
            return chat.outcome("keyword")
    return chat.outcome("max_rounds")


SPEC = PatternSpec(name="group-chat", run=run, options=GroupChatOptions, min_participants=2, check=check)
