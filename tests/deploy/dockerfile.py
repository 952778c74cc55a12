"""Read what deploy/Dockerfile's stages run: ENV, ENTRYPOINT + CMD, HEALTHCHECK and COPY sources.

Parsed by the ``dockerfile`` package, which wraps BuildKit's own Dockerfile parser, so tests run
exactly the command line and environment an image built from the file would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dockerfile


@dataclass
class Stage:
    """One ``FROM`` stage: its instructions in order."""

    base: str
    instructions: list[dockerfile.Command] = field(default_factory=list)

    def last(self, keyword: str) -> dockerfile.Command | None:
        found = [c for c in self.instructions if c.cmd == keyword]
        return found[-1] if found else None

    def env(self) -> dict[str, str]:
        """The stage's ``ENV`` values (``$PATH``-style references left as written)."""
        values: dict[str, str] = {}
        for command in self.instructions:
            if command.cmd == "ENV":
                values.update(zip(command.value[::2], command.value[1::2], strict=True))
        return values

    def exec_form(self, keyword: str) -> list[str]:
        """The JSON array of the last ``keyword`` (ENTRYPOINT, CMD); shell form is refused."""
        command = self.last(keyword)
        if command is None:
            return []
        assert command.json, f"{keyword} must be in exec form (a JSON array)"
        return list(command.value)

    def healthcheck(self) -> list[str]:
        """The exec-form command of ``HEALTHCHECK ... CMD [...]``."""
        command = self.last("HEALTHCHECK")
        assert command is not None and command.json and command.value[0] == "CMD", "HEALTHCHECK CMD [...]"
        return list(command.value[1:])

    def user(self) -> str:
        command = self.last("USER")
        return command.value[0] if command is not None else "root"

    def copy_sources(self) -> list[str]:
        """What ``COPY`` takes from the build context (not ``--from`` another stage)."""
        sources: list[str] = []
        for command in self.instructions:
            if command.cmd == "COPY" and not any(f.startswith("--from=") for f in command.flags):
                sources += command.value[:-1]
        return sources


def read_stages(path: Path) -> list[Stage]:
    """The Dockerfile's stages, in order."""
    stages: list[Stage] = []
    for command in dockerfile.parse_file(str(path)):
        if command.cmd == "FROM":
            stages.append(Stage(base=command.value[0]))
        else:
            stages[-1].instructions.append(command)
    return stages
