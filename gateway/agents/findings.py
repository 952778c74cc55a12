"""The finding every review specialist reports, and the report helpers they share."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.runtime import Reply

SEVERITIES: tuple[str, ...] = ("critical", "high", "medium", "low", "info")
"""Most severe first; a finding's rank is its index here."""

SEVERITY_RANK: dict[str, int] = {name: rank for rank, name in enumerate(SEVERITIES)}

NO_CODE_TEXT = "Send Python code as a text part or one or more file parts."


@dataclass(frozen=True)
class Finding:
    """One problem at one place: ``line`` is 1-based, 0 when it concerns the whole file."""

    file: str
    line: int
    rule: str
    severity: str
    message: str
    hint: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        if self.severity not in SEVERITY_RANK:
            raise ValueError(f"unknown severity {self.severity!r}; expected one of {', '.join(SEVERITIES)}")

    @property
    def code(self) -> str:
        """The rule's id without its name: ``"SEC001"`` for ``"SEC001 hardcoded-secret"`` (or ``"B105:name"``)."""
        return re.split(r"[\s:]", self.rule.strip(), maxsplit=1)[0]

    def to_dict(self) -> dict[str, Any]:
        """The finding as plain JSON-ready values."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        """Rebuild a finding from ``to_dict`` output; raises ``ValueError`` on a malformed one."""
        try:
            line = int(data.get("line") or 0)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"line must be an integer, got {data.get('line')!r}") from exc
        return cls(
            file=str(data.get("file") or "<unknown>"),
            line=max(line, 0),
            rule=str(data.get("rule") or "unknown"),
            severity=str(data.get("severity") or "info").lower(),
            message=str(data.get("message") or ""),
            hint=str(data.get("hint") or ""),
            source=str(data.get("source") or ""),
        )


def sort_key(finding: Finding) -> tuple[int, str, int, str]:
    """Rank by severity (most severe first), then file, then line, then rule."""
    return (SEVERITY_RANK[finding.severity], finding.file, finding.line, finding.rule)


def rank(findings: Iterable[Finding]) -> list[Finding]:
    """The findings in report order."""
    return sorted(findings, key=sort_key)


def summarize(findings: Iterable[Finding]) -> dict[str, Any]:
    """Total and per-severity counts (every severity present, zero or not)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for finding in findings:
        counts[finding.severity] += 1
    return {"total": sum(counts.values()), "by_severity": counts}


def count(number: int, noun: str) -> str:
    """``"1 finding"``, ``"3 findings"``."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def format_finding(finding: Finding) -> str:
    """One report line: ``file:line [severity] rule — message (fix: hint)``."""
    line = f"{finding.file}:{finding.line} [{finding.severity}] {finding.rule} — {finding.message}"
    return f"{line} (fix: {finding.hint})" if finding.hint else line


def render_report(title: str, findings: list[Finding], notes: Iterable[str] = ()) -> str:
    """A markdown report: a heading with counts by severity, then one line per finding."""
    counts = summarize(findings)["by_severity"]
    parts = [f"{counts[name]} {name}" for name in SEVERITIES if counts[name]]
    head = f"## {title}: {count(len(findings), 'finding')}"
    lines = [f"{head} ({', '.join(parts)})" if parts else head, ""]
    lines += [f"- {format_finding(finding)}" for finding in findings]
    notes = list(notes)
    if notes:
        lines += ["", *(f"> {note}" for note in notes)]
    return "\n".join(lines).rstrip() + "\n"


def build_reply(
    agent: str,
    title: str,
    findings: Iterable[Finding],
    *,
    artifact_name: str,
    notes: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Reply:
    """The completed reply every specialist returns: a markdown summary and structured data."""
    ranked = rank(findings)
    notes = list(notes)
    data: dict[str, Any] = {
        "agent": agent,
        "findings": [finding.to_dict() for finding in ranked],
        "summary": summarize(ranked),
    }
    if notes:
        data["notes"] = notes
    data.update(extra or {})
    return Reply(text=render_report(title, ranked, notes), data=data, artifact_name=artifact_name)


def no_code_reply(text: str = NO_CODE_TEXT) -> Reply:
    """Ask the caller for code instead of reviewing nothing."""
    return Reply(state="input-required", text=text)
