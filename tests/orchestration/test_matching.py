"""Matching a request to agent cards: terms, weights, ranking, ties and the minimum score."""

from __future__ import annotations

from gateway.orchestration.api import AgentInfo
from gateway.orchestration.matching import (
    DESCRIPTION_WEIGHT,
    EXAMPLE_WEIGHT,
    NAME_WEIGHT,
    NAMED_BONUS,
    SKILL_WEIGHT,
    TAG_WEIGHT,
    Match,
    best,
    rank,
    terms,
)

SECURITY = AgentInfo(
    "security",
    "Reviews code for secrets and injection.",
    skills=("Security review: finds hard-coded secrets",),
    tags=("security", "secrets"),
    examples=("Is there a hard-coded password here?",),
)
COMPLEXITY = AgentInfo(
    "complexity",
    "Measures code complexity.",
    skills=("Complexity review",),
    tags=("complexity", "metrics"),
    examples=("Which functions are too complex?",),
)
DOCS = AgentInfo("docs", "Writes documentation for code.", tags=("docs",), examples=("document this module",))


def test_terms_drop_stopwords_and_fold_plurals() -> None:
    assert terms("Is there a hard-coded password in this code?") == ["hard", "coded", "password", "code"]
    assert terms("Which of these functions are too complex?") == ["function", "complex"]
    assert terms("classes, fixes, policies, status, analysis") == ["class", "fix", "policy", "status", "analysis"]
    assert terms("is it in there? what would you do") == []


def test_agents_are_ranked_by_score_best_first() -> None:
    ranked = rank("is there a hard-coded password in this code?", [DOCS, COMPLEXITY, SECURITY])

    assert [match.agent for match in ranked] == ["security", "docs", "complexity"]
    assert ranked[0] == Match(
        "security", 3 * EXAMPLE_WEIGHT + DESCRIPTION_WEIGHT, ("hard", "coded", "password", "code")
    )
    assert ranked[1].score == ranked[2].score == DESCRIPTION_WEIGHT


def test_an_example_or_tag_outweighs_a_skill_which_outweighs_the_description() -> None:
    described = AgentInfo("a", "handles invoices")
    skilled = AgentInfo("b", "accounts", skills=("invoices",))
    tagged = AgentInfo("c", "accounts", tags=("invoices",))
    exemplified = AgentInfo("d", "accounts", examples=("pay these invoices",))

    ranked = rank("invoices", [described, skilled, tagged, exemplified])

    assert [(match.agent, match.score) for match in ranked] == [
        ("c", TAG_WEIGHT),
        ("d", EXAMPLE_WEIGHT),
        ("b", SKILL_WEIGHT),
        ("a", DESCRIPTION_WEIGHT),
    ]


def test_a_term_counts_once_at_its_best_place() -> None:
    everywhere = AgentInfo("linter", "lint lint lint", skills=("lint",), tags=("lint",), examples=("lint it",))
    assert rank("lint lint please", [everywhere]) == [Match("linter", EXAMPLE_WEIGHT, ("lint",))]


def test_ties_keep_the_declared_order() -> None:
    first = AgentInfo("first", "reviews code")
    second = AgentInfo("second", "reviews code")

    assert [match.agent for match in rank("review code", [first, second])] == ["first", "second"]
    assert [match.agent for match in rank("review code", [second, first])] == ["second", "first"]


def test_the_minimum_score_leaves_weak_matches_out() -> None:
    infos = [DOCS, SECURITY]

    assert [match.agent for match in rank("hard-coded secrets in code", infos, min_score=4)] == ["security"]
    assert best("some code", infos, min_score=2) is None
    assert best("some code", infos) == Match("docs", DESCRIPTION_WEIGHT, ("code",))


def test_no_overlap_is_no_match_even_without_a_minimum() -> None:
    assert rank("cook dinner", [DOCS, SECURITY, COMPLEXITY]) == []
    assert best("", [DOCS]) is None


def test_fenced_code_in_the_request_does_not_steer_the_match() -> None:
    request = "which functions are too complex?\n```python\npassword = 'hunter2'  # hard-coded secrets\n```\n"

    ranked = rank(request, [SECURITY, COMPLEXITY])

    assert [match.agent for match in ranked] == ["complexity"]


def test_naming_an_agent_outright_adds_a_bonus() -> None:
    reviewer = AgentInfo("style-reviewer", "Lints code.", tags=("lint",))
    fixer = AgentInfo("lint-fix", "Fixes lint.", tags=("lint", "fix"))

    assert best("fix the lint", [reviewer, fixer]) == Match("lint-fix", 2 * TAG_WEIGHT, ("fix", "lint"))
    named = best("ask style-reviewer to fix the lint", [reviewer, fixer])
    assert named is not None and named.agent == "style-reviewer"
    assert named.terms == ("style", "reviewer", "lint")
    assert named.score == 2 * NAME_WEIGHT + TAG_WEIGHT + NAMED_BONUS
