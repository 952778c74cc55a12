"""Read what deploy/Dockerfile's final stage runs: its ENV, ENTRYPOINT + CMD, HEALTHCHECK and COPY sources.

A small reader for the instructions this Dockerfile uses (exec-form JSON arrays, ``ENV k=v`` pairs,
backslash continuations), so tests run exactly the command line and environment the image would.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    """One ``FROM`` stage: its instructions in order, as (keyword, argument text)."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        """The stage's ``ENV`` values (``$PATH``-style references left as written)."""
        values: dict[str, str] = {}
        for keyword, text in self.instructions:
            if keyword == "ENV":
                for pair in shlex.split(text):
                    name, _, value = pair.partition("=")
                    values[name] = value
        return values

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON array of the last ``keyword`` (ENTRYPOINT, CMD); shell form is refused."""
        texts = [text for kw, text in self.instructions if kw == keyword]
        if not texts:
            return []
        value = json.loads(texts[-1])
        assert isinstance(value, list), f"{keyword} must be in exec form (a JSON array)"
        return [str(v) for v in value]

    def healthcheck(self) -> list[str]:
        """The exec-form command of ``HEALTHCHECK ... CMD [...]``."""
        texts = [text for kw, text in self.instructions if kw == "HEALTHCHECK"]
        assert texts, "no HEALTHCHECK"
        _, _, command = texts[-1].partition("CMD ")
        return [str(v) for v in json.loads(command)]

    def copy_sources(self) -> list[str]:
        """What ``COPY`` takes from the build context (not ``--from`` another stage)."""
        sources = []
        for keyword, text in self.instructions:
            if keyword == "COPY" and "--from=" not in text:
                sources += shlex.split(text)[:-1]
        return sources


def read_stages(path: Path) -> list[Stage]:
    """The Dockerfile's stages, in order."""
    stages: list[Stage] = []
    logical = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not logical and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            logical += line[:-1] + " "
            continue
        logical += line
        keyword, _, text = logical.partition(" ")
        logical = ""
        if keyword.upper() == "FROM":
            stages.append(Stage(base=text.split()[0]))
        else:
            stages[-1].instructions.append((keyword.upper(), text.strip()))
    return stages
