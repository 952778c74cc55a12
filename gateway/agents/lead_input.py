"""What the review lead accepts: findings in data parts or JSON text, in whatever shape tools emit.

Besides the specialists' own ``{"findings": [...]}``, this takes findings nested under any key,
ruff's native JSON (``code``/``location.row``/``filename``) and bandit-like fields
(``test_id``/``issue_severity``/``issue_text``). Entries that are not findings are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.agents.code_input import snippets_from_text
from gateway.agents.findings import SEVERITY_RANK, Finding
from gateway.runtime import AgentCall

MAX_DEPTH = 6
ALIASES: dict[str, tuple[str, ...]] = {
    "file": ("file", "filename", "path", "filepath"),
    "line": ("line", "lineno", "line_number", "row"),
    "rule": ("rule", "code", "rule_id", "test_id", "check_id"),
    "severity": ("severity", "level", "issue_severity"),
    "message": ("message", "msg", "issue_text", "description"),
    "hint": ("hint", "fix", "suggestion", "remediation"),
    "source": ("source", "tool"),
}
SEVERITY_ALIASES = {
    "error": "high",
    "warning": "medium",
    "warn": "medium",
    "note": "info",
    "information": "info",
    "fatal": "critical",
    "blocker": "critical",
    "major": "high",
    "moderate": "medium",
    "minor": "low",
}
# A severity nobody here knows is ranked in the middle, neither hidden nor alarming.
UNKNOWN_SEVERITY = "medium"


@dataclass(frozen=True)
class LeadInput:
    """Findings the caller sent; ``given`` is true when any findings list was sent, even an empty one."""

    findings: tuple[Finding, ...]
    given: bool
    text_is_data: bool


def read_lead_input(call: AgentCall) -> LeadInput:
    """The findings in ``call.data`` and in a JSON text part."""
    found: list[Finding] = []
    given = False
    for item in call.data:
        given = _collect(item, found, 0) or given
    text_data = _json_text(call.text)
    if text_data is not None:
        given = _collect(text_data, found, 0) or given
    return LeadInput(tuple(found), given, text_data is not None)


def coerce_finding(entry: Mapping[str, Any]) -> Finding | None:
    """A finding from one tool's entry, or ``None`` when it has no rule or no message."""
    values = {field: _first(entry, names) for field, names in ALIASES.items()}
    if values["rule"] is None or values["message"] is None:
        return None
    location = entry.get("location")
    if values["line"] is None and isinstance(location, Mapping):
        values["line"] = location.get("row") or location.get("line")
    name = entry.get("name")
    if isinstance(name, str) and name and "rule" not in entry and name != values["rule"]:
        values["rule"] = f"{values['rule']} {name}"  # code + name, as the style reviewer writes ruff's
    if isinstance(values["hint"], Mapping):
        values["hint"] = values["hint"].get("message")
    values["severity"] = _severity(values["severity"])
    try:
        return Finding.from_dict(values)
    except ValueError:
        return None


def _collect(value: Any, found: list[Finding], depth: int) -> bool:
    if depth > MAX_DEPTH:
        return False
    if isinstance(value, list):
        return any([_collect(item, found, depth + 1) for item in value])  # a list, so every item is read
    if not isinstance(value, Mapping):
        return False
    finding = coerce_finding(value)
    if finding is not None:
        found.append(finding)
        return True
    given = isinstance(value.get("findings"), list)
    for child in _containers(value):
        given = _collect(child, found, depth + 1) or given
    return given


def _containers(mapping: Mapping[str, Any]) -> Iterator[Any]:
    return (child for child in mapping.values() if isinstance(child, list | Mapping))


def _first(entry: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    return next((entry[name] for name in names if entry.get(name) not in (None, "")), None)


def _severity(value: Any) -> str:
    text = str(value or "").strip().lower()
    if text in SEVERITY_RANK:
        return text
    return SEVERITY_ALIASES.get(text, UNKNOWN_SEVERITY)


def _json_text(text: str) -> Any:
    stripped = text.strip()
    if not stripped:
        return None
    snippets = snippets_from_text(stripped)
    candidate = snippets[0].text if snippets else stripped  # JSON in a ```json fence counts too
    for attempt in (stripped, candidate):
        try:
            parsed = json.loads(attempt)
        except ValueError:
            continue
        return parsed if isinstance(parsed, dict | list) else None
    return None
