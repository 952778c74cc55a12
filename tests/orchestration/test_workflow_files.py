"""Workflow files are checked when the agents folder loads: each problem names the file and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.errors import AgentFileError, RuntimeLoadError
from gateway.hosting.registry import Registry, load_spec
from gateway.hosting.runtimes import StandaloneHost, build_executor
from gateway.orchestration.api import Limits
from gateway.orchestration.workflows import ENGINE_OPTIONS, plan_workflow
from gateway.settings import bundled_agents_dir
from gateway.spec import AgentSpec, WorkflowLimits
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow

ECHOES = [python_agent(name, "gateway.agents.echo:EchoExecutor") for name in ("a", "b")]


def load(tmp_path: Path, *files: dict[str, Any]) -> Registry:
    return Registry.load(agents_folder(tmp_path / "agents", [*ECHOES, *files]))


@pytest.mark.parametrize(
    ("flow", "message"),
    [
        (workflow("flow", "sequential", ["a", "ghost"]), "flow.yaml: runtime.participants: unknown agent(s): ghost"),
        (workflow("flow", "teleport", ["a"]), "flow.yaml: runtime.pattern: unknown pattern 'teleport'"),
        (
            workflow("flow", "sequential", ["a"], {"stop_on": "x"}),
            "flow.yaml: runtime.options: runtime.options.stop_on: Extra inputs are not permitted",
        ),
        (
            workflow("flow", "concurrent", ["a", "b"], {"merge": "synthesis"}),
            "flow.yaml: runtime.options: runtime.options: Value error, merge 'synthesis' needs a synthesizer",
        ),
        (
            workflow("flow", "sequential", ["a"], {"fallbacks": {"b": ["a"]}}),
            "flow.yaml: runtime.options.fallbacks: fallbacks for non-participants: b",
        ),
        (
            workflow("flow", "sequential", ["a"], {"fallbacks": {"a": ["ghost"]}}),
            "flow.yaml: runtime.options.fallbacks: unknown agent(s): ghost",
        ),
        (
            workflow("flow", "sequential", ["a"], limits={"max_steps": 0}),
            "flow.yaml: runtime.workflow.limits.max_steps: Input should be greater than or equal to 1",
        ),
        (
            workflow("flow", "sequential", ["a"], limits={"max_stepz": 3}),
            "flow.yaml: runtime.workflow.limits.max_stepz: Extra inputs",
        ),
        (
            workflow("flow", "sequential", ["Not A Name"]),
            "flow.yaml: runtime.workflow.participants.0: String should match",
        ),
    ],
)
def test_a_bad_workflow_names_the_file_and_the_field(tmp_path: Path, flow: dict[str, Any], message: str) -> None:
    with pytest.raises(AgentFileError) as caught:
        load(tmp_path, flow)
    assert message in caught.value.detail


@pytest.mark.parametrize(
    ("pattern", "options", "message"),
    [
        ("work-queue", {"agents": ["a", "ghost"]}, "agents names agents that are not participants: ghost"),
        ("maker-checker", {"checker": "ghost"}, "maker/checker names agents that are not participants: ghost"),
        ("magentic", {"manager": "ghost"}, "manager/agents names agents that are not participants: ghost"),
        ("magentic", {"agents": ["a", "ghost"]}, "manager/agents names agents that are not participants: ghost"),
        (
            "supervisor",
            {"workers": ["ghost"]},
            "planner/workers/reviewer names agents that are not participants: ghost",
        ),
        ("supervisor", {"reviewer": "ghost"}, "planner/workers/reviewer names agents that are not participants: ghost"),
        (
            "handoff",
            {"entry": "ghost"},
            "entry/fallback_agent/compact_agent/rules names agents that are not participants",
        ),
        ("handoff", {"rules": [{"when": "x", "to": "ghost"}]}, "rules names agents that are not participants: ghost"),
        ("handoff", {"input_filter": "compact", "compact_agent": "ghost"}, "not participants: ghost"),
        (
            "group-chat",
            {"speakers": ["a", "ghost"]},
            "speakers/rules/manager names agents that are not participants: ghost",
        ),
        (
            "group-chat",
            {"speaker_selection": "rules", "rules": [{"when": "x", "speaker": "ghost"}]},
            "not participants: ghost",
        ),
        ("group-chat", {"speaker_selection": "manager", "manager": "ghost"}, "not participants: ghost"),
        ("group-chat", {"consensus": 3}, "consensus of 3 speakers, but only 2 speak"),
        ("sequential", {"skip_if": {"ghost": "SKIP"}}, "skip_if names agents that are not participants: ghost"),
        (
            "concurrent",
            {"merge": "synthesis", "synthesizer": "ghost"},
            "synthesizer names agents that are not participants: ghost",
        ),
        ("concurrent", {"min_successes": 3}, "min_successes is 3 but only 2 agents run"),
    ],
)
def test_an_option_naming_an_agent_that_is_not_a_participant_is_refused_at_load(
    tmp_path: Path, pattern: str, options: dict[str, Any], message: str
) -> None:
    # Before, these passed the load and failed each run as it started (or, for some, ran a step on a stranger).
    with pytest.raises(AgentFileError) as caught:
        load(tmp_path, workflow("flow", pattern, ["a", "b"], options))
    assert caught.value.detail.startswith("flow.yaml: runtime.options: ")
    assert message in caught.value.detail


def test_the_participants_named_in_options_load() -> None:
    named = {
        "work-queue": {"agents": ["b"]},
        "maker-checker": {"maker": "b", "checker": "a"},
        "magentic": {"manager": "b", "agents": ["a"]},
        "supervisor": {"planner": "b", "workers": ["a"], "reviewer": "a"},
        "handoff": {"entry": "b", "rules": [{"when": "x", "to": "a"}]},
        "group-chat": {"speaker_selection": "manager", "manager": "a", "speakers": ["b"]},
        "sequential": {"skip_if": {"b": "SKIP"}},
        "concurrent": {"merge": "synthesis", "synthesizer": "b"},
    }
    for pattern, options in named.items():
        plan = plan_workflow(AgentSpec.model_validate(workflow("flow", pattern, ["a", "b"], options)))
        assert plan.pattern.name == pattern


def test_workflows_that_include_each_other_are_refused(tmp_path: Path) -> None:
    files = (
        workflow("outer", "sequential", ["a", "inner"]),
        workflow("inner", "concurrent", ["b", "outer"]),
    )
    with pytest.raises(AgentFileError, match=r"runtime.participants: workflows include each other: (\w+ -> ){2}\w+"):
        load(tmp_path, *files)


def test_a_workflow_may_not_include_itself_through_a_fallback(tmp_path: Path) -> None:
    flow = workflow("loop", "sequential", ["a"], {"fallbacks": {"a": ["loop"]}})
    expected = r"loop\.yaml: runtime\.participants: workflows include each other: loop -> loop"
    with pytest.raises(AgentFileError, match=expected):
        load(tmp_path, flow)


def test_a_disabled_participant_counts_as_unknown(tmp_path: Path) -> None:
    off = {**python_agent("off", "gateway.agents.echo:EchoExecutor"), "enabled": False}
    with pytest.raises(AgentFileError, match="unknown agent"):
        load(tmp_path, off, workflow("flow", "sequential", ["off"]))


def test_nested_workflows_and_fallbacks_load(tmp_path: Path) -> None:
    files = (
        workflow("inner", "sequential", ["a", "b"]),
        workflow("outer", "concurrent", ["inner", "a"], {"merge": "first-success", "fallbacks": {"a": ["b"]}}),
    )
    registry = load(tmp_path, *files)
    plan = plan_workflow(registry.get("outer"))  # type: ignore[arg-type]
    assert plan.fallbacks == {"a": ("b",)} and plan.agents() == ("inner", "a", "b")
    assert "fallbacks" not in plan.options.model_dump()


def test_limits_override_the_defaults_and_the_file_format_knows_every_limit(tmp_path: Path) -> None:
    registry = load(tmp_path, workflow("flow", "sequential", ["a"], limits={"max_steps": 7, "max_tokens": 900}))
    limits = plan_workflow(registry.get("flow")).limits  # type: ignore[arg-type]
    assert (limits.max_steps, limits.max_tokens, limits.deadline_s) == (7, 900, Limits().deadline_s)
    assert set(WorkflowLimits.model_fields) == set(Limits.__dataclass_fields__)
    assert {"fallbacks"} == ENGINE_OPTIONS


def test_the_fingerprint_follows_pattern_participants_and_options_not_limits(tmp_path: Path) -> None:
    base = plan_workflow(load(tmp_path / "1", workflow("f", "sequential", ["a"])).get("f"))  # type: ignore[arg-type]
    limited = workflow("f", "sequential", ["a"], limits={"max_steps": 3})
    optioned = workflow("f", "sequential", ["a"], {"early_exit_on": "x"})
    same = plan_workflow(load(tmp_path / "2", limited).get("f"))  # type: ignore[arg-type]
    other = plan_workflow(load(tmp_path / "3", optioned).get("f"))  # type: ignore[arg-type]
    assert base.fingerprint == same.fingerprint != other.fingerprint


def test_the_bundled_code_review_workflow_loads_and_builds() -> None:
    spec = load_spec(bundled_agents_dir() / "code-review.yaml")
    plan = plan_workflow(spec)
    assert plan.pattern.name == "concurrent" and plan.participants[-1] == "review-lead"
    assert build_executor(spec, StandaloneHost()) is not None


def test_building_a_workflow_with_a_bad_pattern_is_a_load_error(tmp_path: Path) -> None:
    folder = agents_folder(tmp_path, [workflow("flow", "teleport", ["a"])])
    with pytest.raises(RuntimeLoadError, match=r"flow: runtime\.pattern"):
        build_executor(load_spec(folder / "flow.yaml"), StandaloneHost())
