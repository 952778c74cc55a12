"""Every pattern by name: the plug-in point through which built-in and user patterns are found alike.

A pattern is a ``PatternSpec`` (``api``): a function ``(run, options) -> Outcome`` and a pydantic
options model. An agent file names one in ``runtime.pattern``, in either of two ways:

- by name, registered under the entry point group ``switchboard.patterns`` of an installed package.
  The built-in patterns are registered so in this project's ``pyproject.toml``, and a team's own
  package registers its patterns the same way::

      [project.entry-points."switchboard.patterns"]
      triage-by-budget = "acme_patterns.budget:SPEC"

- by import string, ``module:attribute`` of a ``PatternSpec`` importable by the gateway, or in a
  module beside the agent file (as a ``python`` runtime's entrypoint is), for a pattern that is
  not packaged: ``acme_patterns.budget:SPEC``.

Either way the engine gets the same thing and treats it the same: its options validated when the
agents folder loads (a bad option stops the gateway with the file and the field), the run's
limits, a checkpoint after every step and resume after a restart, and the workflow served as an
A2A agent and an MCP tool. A pattern module is imported only when a workflow uses it.
"""

from __future__ import annotations

import functools
import importlib
import re
import sys
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from gateway.orchestration.api import OrchestrationError, PatternOptions, PatternSpec

GROUP = "switchboard.patterns"
"""The entry point group patterns register under (built-in ones included)."""
DISTRIBUTION = "switchboard-gateway"
"""This project's distribution: the patterns it registers are the built-in ones."""
IMPORT_STRING = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class PatternNotFoundError(OrchestrationError):
    """A workflow names a pattern that is not registered, cannot be imported or is not a ``PatternSpec``."""

    message = "unknown pattern"
    reason = "unknown-pattern"


@dataclass(frozen=True)
class Registration:
    """One name in the ``switchboard.patterns`` group: where it points, and which distribution says so."""

    name: str
    value: str
    distribution: str

    @property
    def builtin(self) -> bool:
        """Whether this project registers it."""
        return self.distribution == DISTRIBUTION


@functools.cache
def registered() -> dict[str, tuple[Registration, ...]]:
    """Every registered name and who registers it (more than one registration is refused on use).

    Read once per process: a package installed while the gateway runs is seen on its next start.
    """
    found: dict[str, dict[str, Registration]] = {}
    for point in entry_points(group=GROUP):
        entry = Registration(point.name, point.value, _distribution(point))
        found.setdefault(point.name, {})[entry.value] = entry  # one package seen twice on sys.path counts once
    return {name: tuple(by_value.values()) for name, by_value in sorted(found.items())}


def _distribution(point: EntryPoint) -> str:
    dist = point.dist
    return dist.metadata["Name"] if dist is not None else "?"


def builtin_names() -> list[str]:
    """The names this project registers, sorted."""
    return [name for name, entries in registered().items() if any(entry.builtin for entry in entries)]


def pattern(name: str, beside: Path | None = None) -> PatternSpec:
    """The pattern a workflow's ``runtime.pattern`` names (see the module); ``PatternNotFoundError`` says why not.

    ``beside``: the folder of the agent file, where an import string's module may also be.
    """
    if IMPORT_STRING.match(name):
        return load(name, name, beside)
    entries = registered().get(name)
    if not entries:
        known = ", ".join(registered()) or f"none (is {DISTRIBUTION} installed? pip install -e .)"
        raise PatternNotFoundError(
            f"unknown pattern {name!r}; known: {known}; or name a PatternSpec by import string, module:attribute"
        )
    if len(entries) > 1:
        who = "; ".join(f"{entry.distribution} ({entry.value})" for entry in entries)
        raise PatternNotFoundError(f"pattern {name!r} is registered more than once in {GROUP}: {who}")
    spec = load(entries[0].value, name)
    if spec.name != name:
        raise PatternNotFoundError(
            f"{entries[0].value} is registered as {name!r} but its PatternSpec says {spec.name!r}"
        )
    return spec


def load(target: str, name: str, beside: Path | None = None) -> PatternSpec:
    """The ``PatternSpec`` at import string ``target`` (``module:attribute``); ``name`` is how the file names it."""
    module_name, _, attribute = target.partition(":")
    if beside is not None:
        _find_beside(module_name, beside.resolve())
    try:
        value: object = importlib.import_module(module_name)
        for part in attribute.split("."):
            value = getattr(value, part)
    except Exception as exc:  # ImportError, AttributeError, a SyntaxError or anything the module raises on import
        why = str(exc) if isinstance(exc, ImportError | AttributeError) else f"{type(exc).__name__}: {exc}"
        raise PatternNotFoundError(f"pattern {name!r} cannot be loaded from {target}: {why}") from exc
    return _checked(value, target)


def _find_beside(module_name: str, folder: Path) -> None:
    """Make a top-level module in ``folder`` importable (appended to the path: installed names keep theirs)."""
    top = module_name.partition(".")[0]
    if any(p.is_file() for p in (folder / f"{top}.py", folder / top / "__init__.py")) and str(folder) not in sys.path:
        sys.path.append(str(folder))


def _checked(value: object, target: str) -> PatternSpec:
    if not isinstance(value, PatternSpec):
        raise PatternNotFoundError(f"{target} is a {type(value).__name__}, not a PatternSpec")
    if not (isinstance(value.options, type) and issubclass(value.options, PatternOptions)):
        raise PatternNotFoundError(
            f"{target}: its options model must subclass PatternOptions (unknown options refused)"
        )
    if not callable(value.run):
        raise PatternNotFoundError(f"{target}: its run is not callable")
    return value
