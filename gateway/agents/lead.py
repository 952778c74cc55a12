"""The review lead: merges the specialists' findings into one ranked, de-duplicated report.

Given findings (data parts or JSON text), it merges them. Given only code, it runs the security,
complexity and style specialists itself, concurrently and in-process, so it is useful on its own;
the caller must then be one the specialists' own agents would admit (``AgentCall.may_reuse``),
else the review fails with the reason and no specialist runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import replace
from typing import Any

from gateway.agents import complexity, security, style
from gateway.agents.code_input import sources_from_call
from gateway.agents.findings import SEVERITY_RANK, Finding, build_reply, count, no_code_reply, rank
from gateway.agents.lead_input import read_lead_input
from gateway.errors import PermissionDeniedError
from gateway.runtime import AgentCall, Emitter, Reply

AGENT = "lead"
NO_INPUT_TEXT = (
    "Send Python code as a text part or one or more file parts, "
    'or the specialists\' findings as data parts ({"findings": [...]}).'
)
Specialist = Callable[[AgentCall, Emitter], Coroutine[Any, Any, Reply]]
SPECIALISTS: dict[str, Specialist] = {"security": security.run, "complexity": complexity.run, "style": style.run}

# Rule ids from different tools that name the same concern (ours, ruff's flake8-bandit S-rules,
# bandit's B-rules, ruff's mccabe), so one problem reported by two tools is reported once.
_CONCERN_IDS = {
    "secret": ("SEC001", "S105", "S106", "S107", "B105", "B106", "B107"),
    "eval": ("SEC002", "S102", "S307", "B102", "B307"),
    "shell": ("SEC003", "S602", "S604", "S605", "B602", "B604", "B605"),
    "deserialization": ("SEC004", "S301", "S302", "S506", "B301", "B302", "B506"),
    "sql": ("SEC005", "S608", "B608"),
    "complexity": ("CPX001", "C901"),
    "length": ("CPX002", "PLR0915"),
    "syntax": ("SEC000", "CPX000", "E999", "invalid-syntax"),
}
CONCERNS: dict[str, str] = {code: concern for concern, codes in _CONCERN_IDS.items() for code in codes}


def concern_of(finding: Finding) -> str:
    """What a finding is about, shared across tools (``"secret"``), else its own rule id."""
    return CONCERNS.get(finding.code, finding.code)


def sources_of(finding: Finding) -> set[str]:
    """The tools that reported a (possibly merged) finding."""
    return {name.strip() for name in finding.source.split(",") if name.strip()}


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """One finding per problem, ranked.

    Two findings are one problem when they share file, line and concern and either come from
    different tools or say exactly the same thing. The most severe wording is kept (the first
    given on a tie) and the sources are joined; the same tool's distinct findings (two unused
    imports on one line) stay.
    """
    groups: dict[tuple[str, int, str], list[Finding]] = {}
    # Most severe first, so the kept wording is the most severe one; ties keep the order given.
    for finding in sorted(findings, key=lambda finding: SEVERITY_RANK[finding.severity]):
        group = groups.setdefault((finding.file, finding.line, concern_of(finding)), [])
        for index, kept in enumerate(group):
            if kept.message == finding.message or not sources_of(kept) & sources_of(finding):
                group[index] = _absorb(kept, finding)
                break
        else:
            group.append(finding)
    return rank(finding for group in groups.values() for finding in group)


def _absorb(kept: Finding, duplicate: Finding) -> Finding:
    source = ", ".join(sorted(sources_of(kept) | sources_of(duplicate)))
    return replace(kept, source=source, hint=kept.hint or duplicate.hint)


async def run_specialists(call: AgentCall, emit: Emitter) -> tuple[list[Finding], list[str]]:
    """Run every specialist on ``call`` at once; their findings, and a note per specialist that failed.

    Raises ``PermissionDeniedError`` before any runs when the caller may not use one of them.
    """
    for runtime in SPECIALISTS.values():
        refusal = call.may_reuse(runtime)
        if refusal is not None:
            raise PermissionDeniedError(refusal)
    async with asyncio.TaskGroup() as group:
        tasks: dict[str, asyncio.Task[Reply]] = {
            name: group.create_task(runtime(call, emit)) for name, runtime in SPECIALISTS.items()
        }
    findings: list[Finding] = []
    notes: list[str] = []
    for name, task in tasks.items():
        reply = task.result()
        if reply.state != "completed" or not isinstance(reply.data, dict):
            notes.append(f"{name} did not run ({reply.state}): {reply.text}")
            continue
        findings += [Finding.from_dict(entry) for entry in reply.data.get("findings", [])]
    return findings, notes


async def run(call: AgentCall, emit: Emitter) -> Reply:
    """Runtime entry point: one review report from the given findings, or from reviewing the code."""
    given = read_lead_input(call)
    findings: list[Finding] = list(given.findings)
    notes: list[str] = []
    if given.given:
        await emit.progress(f"{AGENT}: merging {count(len(findings), 'finding')}")
    else:
        code_call = replace(call, text="") if given.text_is_data else call
        sources = sources_from_call(code_call)
        if not sources:
            return no_code_reply(NO_INPUT_TEXT)
        await emit.progress(f"{AGENT}: running {', '.join(SPECIALISTS)} on {count(len(sources), 'file')}")
        findings, notes = await run_specialists(code_call, emit)
    merged = merge_findings(findings)
    await emit.progress(f"{AGENT}: {count(len(merged), 'finding')} after merging {len(findings)}")
    extra = {"sources": sorted({name for finding in merged for name in sources_of(finding)})}
    return build_reply(AGENT, "Code review report", merged, artifact_name="review-report", notes=notes, extra=extra)
