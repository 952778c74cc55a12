"""The agent registry: specs loaded from an ``agent_cards/`` folder, looked up by name."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import yaml
from pydantic import ValidationError

from gateway.errors import AgentFileError
from gateway.orchestration.workflows import InvalidWorkflowError, check_workflows
from gateway.spec import AgentSpec


def load_spec(path: Path) -> AgentSpec:
    """Parse and validate one agent file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise AgentFileError(f"{path.name}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise AgentFileError(f"{path.name}: expected a mapping at the top level")
    try:
        return AgentSpec.model_validate(raw).read_from(path)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in exc.errors())
        raise AgentFileError(f"{path.name}: {problems}") from exc


def check_specs(specs: Mapping[str, AgentSpec], files: Mapping[str, str] | None = None) -> None:
    """Check what no single file can: each workflow's pattern, options and agents, and nesting cycles."""
    try:
        check_workflows(specs)
    except InvalidWorkflowError as exc:
        file = (files or {}).get(exc.workflow, f"{exc.workflow}.yaml")
        raise AgentFileError(f"{file}: {exc.field}: {exc.detail}") from exc


@dataclass(frozen=True)
class Registry:
    """The enabled agents, in a stable order. Never changed: an agent whose spec changes makes a new registry."""

    specs: tuple[AgentSpec, ...]

    @classmethod
    def load(cls, folder: Path, *more: Path, imported: Sequence[AgentSpec] = ()) -> Registry:
        """Load every ``*.yaml``/``*.yml`` file in ``folder`` (and ``more`` folders); names must be unique.

        ``imported`` are agents imported from peers (``gateway.federation``), which workflows may name too.
        """
        for each in (folder, *more):
            if not each.is_dir():
                raise AgentFileError(f"agents folder {each} does not exist")
        specs: dict[str, AgentSpec] = {}
        files: dict[str, str] = {}
        paths = [p for each in (folder, *more) for p in sorted([*each.glob("*.yaml"), *each.glob("*.yml")])]
        for path in paths:
            spec = load_spec(path)
            if spec.name in files:
                raise AgentFileError(f"{path.name}: name: agent '{spec.name}' is declared twice")
            files[spec.name] = path.name
            if spec.enabled:
                specs[spec.name] = spec
        for spec in imported:
            if spec.name in files:
                raise AgentFileError(f"{files[spec.name]}: name: agent '{spec.name}' is also imported from a peer")
            files[spec.name], specs[spec.name] = f"(imported) {spec.name}", spec
        check_specs(specs, files)
        return cls(tuple(specs.values()))

    def __iter__(self) -> Iterator[AgentSpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    @cached_property
    def by_name(self) -> Mapping[str, AgentSpec]:
        """Every agent by name (built on first use, once: the registry never changes)."""
        return MappingProxyType({spec.name: spec for spec in self.specs})

    def get(self, name: str) -> AgentSpec | None:
        """The agent called ``name``, or None."""
        return self.by_name.get(name)

    def replaced(self, spec: AgentSpec) -> Registry:
        """This registry with ``spec`` in place of the agent of its name."""
        return Registry(tuple(spec if each.name == spec.name else each for each in self.specs))
