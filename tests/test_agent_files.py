"""The agent file format: the committed schema matches the model, every shipped file loads, bad files say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.errors import AgentFileError
from gateway.hosting.registry import Registry, load_spec
from gateway.settings import bundled_agents_dir
from gateway.spec import json_schema

SHIPPED = sorted(bundled_agents_dir().glob("*.yaml"))


def test_committed_schema_matches_the_model() -> None:
    committed = json.loads((bundled_agents_dir() / "schema.json").read_text())
    assert committed == json_schema(), "regenerate: python -m gateway.spec > agent_cards/schema.json"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_file_loads(path: Path) -> None:
    spec = load_spec(path)
    assert spec.name == path.stem, "a file is named after its agent"
    assert spec.skills and all(s.examples for s in spec.skills), "skills carry examples for routing and MCP"


def test_bundled_registry_has_the_offline_agents() -> None:
    names = {s.name for s in Registry.load(bundled_agents_dir())}
    assert {"echo", "security-reviewer", "complexity-reviewer", "style-reviewer", "review-lead"} <= names


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


GOOD = """format: 1
name: probe
description: A probe.
skills: [{id: p, name: P, description: probes, tags: [t]}]
runtime: {kind: python, entrypoint: "gateway.agents.echo:EchoExecutor"}
"""


@pytest.mark.parametrize(
    ("text", "named"),
    [
        (GOOD.replace("format: 1", "format: 2"), "format"),
        (GOOD.replace("name: probe", "name: Probe Agent"), "name"),
        (GOOD.replace("kind: python", "kind: quantum"), "runtime"),
        (GOOD.replace("A probe.", "See https://example.com"), "description"),
        (GOOD + "colour: blue\n", "colour"),
        (GOOD.replace('entrypoint: "gateway.agents.echo:EchoExecutor"', "entrypoint: nope"), "entrypoint"),
        ("name: [unclosed", "not valid YAML"),
    ],
)
def test_bad_file_is_refused_naming_file_and_field(tmp_path: Path, text: str, named: str) -> None:
    path = write(tmp_path, "probe.yaml", text)
    with pytest.raises(AgentFileError) as caught:
        load_spec(path)
    assert "probe.yaml" in str(caught.value) and named in str(caught.value)


def test_duplicate_names_are_refused(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", GOOD)
    write(tmp_path, "b.yaml", GOOD)
    with pytest.raises(AgentFileError, match=r"b\.yaml: name: agent 'probe' is declared twice"):
        Registry.load(tmp_path)
