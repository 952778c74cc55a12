"""Every pattern by name, imported only when a workflow uses it."""

from __future__ import annotations

import importlib

from gateway.orchestration.api import PatternSpec

PATTERNS: dict[str, str] = {
    "sequential": "gateway.orchestration.sequential",
    "concurrent": "gateway.orchestration.concurrent",
    "handoff": "gateway.orchestration.handoff",
    "supervisor": "gateway.orchestration.supervisor",
    "group-chat": "gateway.orchestration.group_chat",
    "maker-checker": "gateway.orchestration.maker_checker",
    "magentic": "gateway.orchestration.magentic",
    "work-queue": "gateway.orchestration.work_queue",
}


def pattern(name: str) -> PatternSpec:
    """The pattern called ``name``; ``KeyError`` names the known ones."""
    module = PATTERNS.get(name)
    if module is None:
        raise KeyError(f"unknown pattern {name!r}; known: {', '.join(sorted(PATTERNS))}")
    spec = importlib.import_module(module).SPEC
    assert isinstance(spec, PatternSpec)
    return spec
