"""Fixtures for the bundled review specialists: a recording emitter and the planted sample."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.runtime import AgentCall, Emitter, FileInput
from gateway.testing import RecordingEmitter

PLANTED = Path(__file__).parent.parent / "samples" / "planted.py"


def _as_emitter(emitter: RecordingEmitter) -> Emitter:
    return emitter  # a type checker proves the double matches the protocol here


@pytest.fixture
def emit() -> RecordingEmitter:
    return RecordingEmitter()


@pytest.fixture
def planted_text() -> str:
    return PLANTED.read_text(encoding="utf-8")


@pytest.fixture
def planted_call(planted_text: str) -> AgentCall:
    return AgentCall(text="please review", files=(FileInput("planted.py", "text/x-python", text=planted_text),))


@pytest.fixture
def planted_line(planted_text: str) -> Callable[[str], int]:
    """The 1-based line of the sample that contains ``needle`` (which must occur exactly once)."""

    def line_of(needle: str) -> int:
        lines = [number for number, line in enumerate(planted_text.splitlines(), start=1) if needle in line]
        assert len(lines) == 1, f"{needle!r} occurs on lines {lines} of the sample"
        return lines[0]

    return line_of
