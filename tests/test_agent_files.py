"""The agent file format: the committed schema matches the model, every shipped file loads, bad files say why."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from gateway.errors import AgentFileError
from gateway.hosting.registry import Registry, load_spec
from gateway.orchestration.catalog import builtin_names
from gateway.orchestration.file_schema import agent_file_schema
from gateway.settings import bundled_agents_dir

SHIPPED = sorted(bundled_agents_dir().glob("*.yaml"))


def test_committed_schema_matches_the_model() -> None:
    committed = json.loads((bundled_agents_dir() / "schema.json").read_text())
    assert committed == agent_file_schema(), (
        "regenerate: python -m gateway.orchestration.file_schema > agent_cards/schema.json"
    )


def test_the_schema_checks_the_options_of_every_built_in_pattern() -> None:
    schema = json.loads((bundled_agents_dir() / "schema.json").read_text())
    checked = [rule["if"]["properties"]["pattern"]["const"] for rule in schema["$defs"]["WorkflowRuntime"]["allOf"]]
    assert checked == builtin_names() and {"sequential", "concurrent", "work-queue"} <= set(checked)
    review = yaml.safe_load((bundled_agents_dir() / "code-review.yaml").read_text())
    jsonschema.validate(review, schema)
    review["runtime"]["options"]["merge"] = "loudest"
    with pytest.raises(jsonschema.ValidationError, match="loudest"):
        jsonschema.validate(review, schema)
    review["runtime"]["options"] = {"merge": "concatenate", "colour": "blue"}
    with pytest.raises(jsonschema.ValidationError, match="colour"):
        jsonschema.validate(review, schema)
    review["runtime"]["options"] = {"fallbacks": {"style-reviewer": ["echo"]}}
    jsonschema.validate(review, schema)  # the engine's own option is allowed beside each pattern's


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_file_validates_against_the_schema(path: Path) -> None:
    schema = json.loads((bundled_agents_dir() / "schema.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


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


def test_the_schema_takes_the_options_the_gateway_takes_in_either_form() -> None:
    schema = json.loads((bundled_agents_dir() / "schema.json").read_text())
    pipeline = {**yaml.safe_load((bundled_agents_dir() / "code-review.yaml").read_text())}
    for exits in ("APPROVED", ["failure", "APPROVED"]):
        pipeline["runtime"] = {"kind": "workflow", "pattern": "sequential", "participants": ["a"]}
        pipeline["runtime"]["options"] = {"early_exit_on": exits}
        jsonschema.validate(pipeline, schema)
