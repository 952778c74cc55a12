"""Offline complexity reviewer: per-function McCabe complexity, length and nesting depth.

Complexity is 1 plus one for each decision: ``if``/``elif``, ``for``/``async for``, ``while``,
each ``except`` handler, each ternary, each extra operand of ``and``/``or``, each ``for`` and
``if`` clause of a comprehension, and each ``match`` case except a bare ``case _`` (an ``else``).
``assert``, ``with``, ``try``'s ``else``/``finally`` and loop ``else`` add nothing: they do not
add a path a test has to choose. Nested functions are measured on their own.

Length counts the non-blank, non-comment lines from ``def`` to the end of the body. Depth counts
nested blocks (``if``, loops, ``with``, ``try``, ``match``) below the body; an ``elif`` stays at
its ``if``'s depth. Rules: CPX000 parse-error, CPX001 high-complexity, CPX002 long-function,
CPX003 deep-nesting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from gateway.agents.code_input import ParseError, SourceFile, parse_python, sources_from_call
from gateway.agents.complexity_metrics import FunctionMetrics, measure_module
from gateway.agents.findings import Finding, build_reply, count, no_code_reply
from gateway.runtime import AgentCall, Emitter, Reply

AGENT = "complexity"


class ThresholdsError(ValueError):
    """The caller's thresholds are not positive integers for known limits."""


@dataclass(frozen=True)
class Thresholds:
    """The limits a function may reach before it is reported."""

    max_complexity: int = 10
    max_lines: int = 50
    max_depth: int = 4

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> Thresholds:
        """Defaults, overridden by ``metadata["thresholds"]`` (a dict); raises ``ThresholdsError``."""
        overrides = metadata.get("thresholds") or {}
        if not isinstance(overrides, Mapping):
            raise ThresholdsError("thresholds must be an object such as {'max_complexity': 8}")
        known = {field.name for field in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ThresholdsError(f"unknown thresholds {unknown}; known: {sorted(known)}")
        for name, value in overrides.items():
            # bool is an int subclass; True as a limit is a mistake, not 1.
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ThresholdsError(f"threshold {name} must be a positive integer, got {value!r}")
        return cls(**overrides)


@dataclass(frozen=True)
class Limit:
    """One rule: which metric it compares with which threshold, and where it points."""

    rule: str
    metric: str
    threshold: str
    line: str
    describe: str  # a template with {value}
    hint: str


LIMITS: tuple[Limit, ...] = (
    Limit(
        "CPX001 high-complexity",
        "complexity",
        "max_complexity",
        "line",
        "has cyclomatic complexity {value}",
        "split it into smaller functions, or replace branch chains with a dispatch table",
    ),
    Limit(
        "CPX002 long-function",
        "lines",
        "max_lines",
        "line",
        "has {value} code lines",
        "extract cohesive steps into helper functions",
    ),
    Limit(
        "CPX003 deep-nesting",
        "max_depth",
        "max_depth",
        "depth_line",
        "nests blocks {value} deep",
        "return early, or move the inner block into its own function",
    ),
)


def severity_for(value: int, limit: int) -> str:
    """How bad it is to exceed ``limit``: up to 1.5x low, up to 2x medium, beyond that high."""
    ratio = value / limit
    if ratio > 2:
        return "high"
    return "medium" if ratio > 1.5 else "low"


def findings_for(metrics: FunctionMetrics, limits: Thresholds) -> list[Finding]:
    """The limits one function exceeds."""
    findings = []
    for limit in LIMITS:
        value, allowed = getattr(metrics, limit.metric), getattr(limits, limit.threshold)
        if value > allowed:
            message = f"`{metrics.name}` {limit.describe.format(value=value)} (limit {allowed})"
            line = getattr(metrics, limit.line)
            findings.append(
                Finding(metrics.file, line, limit.rule, severity_for(value, allowed), message, limit.hint, AGENT)
            )
    return findings


def review_source(source: SourceFile, limits: Thresholds) -> tuple[list[Finding], list[FunctionMetrics]]:
    """Findings and per-function metrics for one file."""
    tree = parse_python(source)
    if isinstance(tree, ParseError):
        message = f"could not parse as Python ({tree.message}); complexity not measured"
        return [_not_measured(source, tree.line, message, "fix the syntax error")], []
    try:
        metrics = measure_module(tree, source.name, source.text)
    except RecursionError:
        return [_not_measured(source, 0, "too deeply nested to measure", "simplify the code")], []
    return [finding for function in metrics for finding in findings_for(function, limits)], metrics


def _not_measured(source: SourceFile, line: int, message: str, hint: str) -> Finding:
    return Finding(source.name, line, "CPX000 parse-error", "info", message, hint, AGENT)


async def run(call: AgentCall, emit: Emitter) -> Reply:
    """Runtime entry point: measure every function of the call's Python code."""
    try:
        limits = Thresholds.from_metadata(call.metadata)
    except ThresholdsError as exc:
        return Reply(state="rejected", text=f"Invalid thresholds: {exc}")
    sources = sources_from_call(call)
    if not sources:
        return no_code_reply()
    python = [source for source in sources if source.is_python]
    notes = [f"skipped {count(len(sources) - len(python), 'non-Python file')}"] if len(python) < len(sources) else []
    await emit.progress(f"{AGENT}: measuring {count(len(python), 'file')}")
    findings: list[Finding] = []
    functions: list[FunctionMetrics] = []
    for source in python:
        found, measured = await asyncio.to_thread(review_source, source, limits)
        findings += found
        functions += measured
    await emit.progress(f"{AGENT}: {count(len(functions), 'function')}, {len(findings)} over the limits")
    extra = {"functions": [function.to_dict() for function in functions], "thresholds": asdict(limits)}
    return build_reply(
        AGENT, "Complexity review", findings, artifact_name="complexity-findings", notes=notes, extra=extra
    )
