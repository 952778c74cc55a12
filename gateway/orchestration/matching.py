"""Matching a request to agents by what their cards say: the one scorer every router uses.

A request's prose (fenced code blocks are left out) is cut into terms: lowercase words, stopwords
dropped, plurals folded (``functions`` -> ``function``). Each term scores the weight of the best
place it appears on a card: an example or a tag counts most, a skill's name or description next,
the agent's name, then its description. A request naming an agent outright (``security-reviewer``)
adds a bonus. An agent's score is the sum over the request's distinct terms; agents are ranked by
score, ties in the order they were given, and those below ``min_score`` are left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.orchestration.api import AgentInfo

EXAMPLE_WEIGHT = 3.0
TAG_WEIGHT = 3.0
SKILL_WEIGHT = 2.0
NAME_WEIGHT = 2.0
DESCRIPTION_WEIGHT = 1.0
NAMED_BONUS = 5.0
"""Added when the request names the agent outright, so "ask style-reviewer" goes where it says."""

MAX_REQUEST_CHARS = 4000

_WORD = re.compile(r"[a-z0-9]+")
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[^\n]*\n.*?^[ \t]*\1[ \t]*$", re.DOTALL | re.MULTILINE)
_STOPWORD_TEXT = """
    a about above after again all also am an and any are as at be been before being below between both
    but by can could did do does doing done down during each either else ever every few for from further
    get give had has have having he her here hers him his how i if in into is it its itself just let
    like ll me more most much must my myself need no nor not now of off on once only or other our ours
    out over own please re same shall she should so some such than thank thanks that the their theirs
    them then there these they this those through to too under until up upon us ve very via want was
    we were what when where whether which while who whom whose why will with within without would yet
    you your yours yourself
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
"""Words that ask rather than say what for ("is there any ... in this"), left out of matching."""


@dataclass(frozen=True)
class Match:
    """How well one agent's card matches a request: its score and the request terms that matched."""

    agent: str
    score: float
    terms: tuple[str, ...] = ()


def fold(word: str) -> str:
    """``word`` with its plural ending folded away: ``classes`` -> ``class``, ``policies`` -> ``policy``."""
    if len(word) <= 3 or not word.endswith("s"):
        return word
    if word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ss", "us", "is")):
        return word
    return word[:-1]


def terms(text: str) -> list[str]:
    """The content terms of ``text``, in order: lowercase, no stopwords or one-letter words, plurals folded."""
    return [fold(word) for word in _WORD.findall(text.lower()) if len(word) > 1 and word not in STOPWORDS]


def prose(text: str) -> str:
    """The part of a request that asks for something: fenced code left out, the rest bounded in size."""
    return _FENCE.sub(" ", text)[:MAX_REQUEST_CHARS]


def card_weights(info: AgentInfo) -> dict[str, float]:
    """Each term on an agent's card, weighted by the best place it appears."""
    places: tuple[tuple[float, Iterable[str]], ...] = (
        (DESCRIPTION_WEIGHT, (info.description,)),
        (NAME_WEIGHT, (info.name,)),
        (SKILL_WEIGHT, info.skills),
        (TAG_WEIGHT, info.tags),
        (EXAMPLE_WEIGHT, info.examples),
    )
    weights: dict[str, float] = {}
    for weight, texts in places:
        for text in texts:
            for term in terms(text):
                weights[term] = max(weight, weights.get(term, 0.0))
    return weights


def _names(text: str, agent: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(agent.lower())}(?![\w-])", text) is not None


def score(text: str, info: AgentInfo) -> Match:
    """How well ``info``'s card matches the request ``text``."""
    wanted = prose(text)
    weights = card_weights(info)
    matched = tuple(term for term in dict.fromkeys(terms(wanted)) if term in weights)
    total = sum(weights[term] for term in matched)
    if _names(wanted.lower(), info.name):
        total += NAMED_BONUS
    return Match(info.name, total, matched)


def rank(text: str, infos: Sequence[AgentInfo], *, min_score: float = 0.0) -> list[Match]:
    """The agents whose cards match ``text`` with a positive score of at least ``min_score``, best first.

    Ties keep the order of ``infos``, so the declared order of participants decides them.
    """
    scored = [score(text, info) for info in infos]
    ranked = sorted(enumerate(scored), key=lambda pair: (-pair[1].score, pair[0]))
    return [match for _, match in ranked if match.score > 0 and match.score >= min_score]


def best(text: str, infos: Sequence[AgentInfo], *, min_score: float = 0.0) -> Match | None:
    """The best match for ``text`` among ``infos``, or ``None`` when none reaches ``min_score``."""
    ranked = rank(text, infos, min_score=min_score)
    return ranked[0] if ranked else None
