"""Patterns users add: found through the entry point group or an import string, run like the built-ins.

The team's pattern is ``tests.team_patterns.relay``. A gateway finds it by name once a package
registers it under ``switchboard.patterns`` (here a ``*.dist-info`` on the path, as ``pip
install`` leaves), or by its import string in the agent file; either way its options are checked
at load, its steps are child tasks under the run's limits, it is an A2A agent and an MCP tool, and
a run killed with SIGKILL resumes from its checkpoint in the restarted gateway.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import TaskState

from gateway.orchestration import catalog
from gateway.orchestration.catalog import PatternNotFoundError, builtin_names, pattern
from gateway.orchestration.workflows import InvalidWorkflowError, plan_workflow
from gateway.spec import AgentSpec
from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.kill_and_resume import kill_mid_run
from tests.orchestration.mcp_run import call_workflow
from tests.orchestration.run_client import data_of, get_task, run_workflow
from tests.team_patterns.relay import SPEC as RELAY

RELAY_IMPORT = "tests.team_patterns.relay:SPEC"
BUILT_IN = [
    "blackboard",
    "concurrent",
    "contract-net",
    "graph",
    "group-chat",
    "handoff",
    "magentic",
    "maker-checker",
    "sequential",
    "supervisor",
    "work-queue",
]
WAIT_S = 3  # the echo step works this long, so the kill lands while it runs


def register(site: Path, entries: dict[str, str], dist: str = "team-patterns") -> Path:
    """A distribution's metadata registering ``entries`` under ``switchboard.patterns``, as pip installs it."""
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "".join(f"{name} = {value}\n" for name, value in entries.items())
    (info / "entry_points.txt").write_text(f"[{catalog.GROUP}]\n{lines}")
    return site


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The registry read again (a test changes sys.path), and again after the test."""
    catalog.registered.cache_clear()
    yield
    monkeypatch.undo()
    catalog.registered.cache_clear()


def relay_spec(pattern_ref: str, options: dict[str, Any] | None = None) -> AgentSpec:
    return AgentSpec.model_validate(workflow("relay-team", pattern_ref, ["echo"], options or {"laps": 2}))


def test_the_built_in_patterns_are_registered_through_the_entry_point_group() -> None:
    assert builtin_names() == BUILT_IN
    for name in BUILT_IN:
        assert pattern(name).name == name
        [entry] = catalog.registered()[name]
        assert entry.distribution == catalog.DISTRIBUTION and entry.value.endswith(":SPEC")


def test_a_pattern_registered_by_another_package_is_found_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.syspath_prepend(str(register(tmp_path, {"relay": RELAY_IMPORT})))
    catalog.registered.cache_clear()

    assert pattern("relay") is RELAY
    assert "relay" not in builtin_names(), "another package's pattern is not a built-in"
    plan = plan_workflow(relay_spec("relay"))
    assert plan.pattern is RELAY and plan.options == RELAY.options(laps=2)


def test_a_pattern_named_by_import_string_needs_no_registration() -> None:
    plan = plan_workflow(relay_spec(RELAY_IMPORT))
    assert plan.pattern is RELAY and plan.limits.max_steps == 50, "the run's default limits apply"


@pytest.mark.parametrize(
    ("pattern_ref", "options", "field", "says"),
    [
        ("relays", {}, "runtime.pattern", "unknown pattern 'relays'; known: blackboard, concurrent, contract-net"),
        ("tests.team_patterns.nowhere:SPEC", {}, "runtime.pattern", "cannot be loaded from tests.team_patterns"),
        ("tests.team_patterns.relay:NOPE", {}, "runtime.pattern", "has no attribute 'NOPE'"),
        ("tests.team_patterns.relay:run", {}, "runtime.pattern", "relay:run is a function, not a PatternSpec"),
        (RELAY_IMPORT, {"laps": 0}, "runtime.options", "runtime.options.laps: Input should be greater than or equal"),
        (RELAY_IMPORT, {"lapz": 2}, "runtime.options", "runtime.options.lapz: Extra inputs are not permitted"),
        (RELAY_IMPORT, {"fallbacks": {"nobody": ["echo"]}}, "runtime.options.fallbacks", "non-participants: nobody"),
    ],
)
def test_a_bad_user_pattern_or_option_is_refused_at_load_with_the_reason(
    pattern_ref: str, options: dict[str, Any], field: str, says: str
) -> None:
    with pytest.raises(InvalidWorkflowError) as refused:
        plan_workflow(relay_spec(pattern_ref, options))
    assert says in refused.value.detail
    assert refused.value.field == field


def test_a_name_two_packages_register_is_refused_naming_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.syspath_prepend(str(register(tmp_path, {"sequential": RELAY_IMPORT})))
    catalog.registered.cache_clear()

    with pytest.raises(PatternNotFoundError, match="registered more than once") as refused:
        pattern("sequential")
    assert "switchboard-gateway (gateway.orchestration.sequential:SPEC)" in refused.value.detail
    assert f"team-patterns ({RELAY_IMPORT})" in refused.value.detail


def test_a_registered_name_whose_spec_says_another_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_registry: None
) -> None:
    monkeypatch.syspath_prepend(str(register(tmp_path, {"baton": RELAY_IMPORT})))
    catalog.registered.cache_clear()

    with pytest.raises(PatternNotFoundError, match="registered as 'baton' but its PatternSpec says 'relay'"):
        pattern("baton")


def relay_folder(tmp_path: Path, pattern_ref: str, **limits: Any) -> Path:
    return agents_folder(
        tmp_path / "agents",
        [
            python_agent("upper", "tests.team_patterns.fixtures:upper"),
            workflow("relay-team", pattern_ref, ["upper", "echo"], {"laps": 2}, limits or None),
        ],
        bundled=["echo"],
    )


async def test_a_user_pattern_runs_over_a2a_and_mcp_like_a_built_in(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agents=relay_folder(tmp_path, RELAY_IMPORT))
    async with running_gateway(settings) as gateway:
        log = await run_workflow(gateway, "relay-team", "pass it on")
        children = [
            await get_task(gateway, o.agent, o.task_id)
            for o in (log.step(f"step-{n}-{a}") for n, a in enumerate(["upper", "echo", "upper", "echo"], 1))
        ]
        tool = await call_workflow(gateway, "relay-team", {"text": "over mcp"})

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    assert log.text == "PASS IT ON"
    assert data_of(log.artifact("result")) == {"path": ["upper", "echo", "upper", "echo"], "laps": 2}
    assert log.artifacts == ["step-1-upper", "step-2-echo", "step-3-upper", "step-4-echo", "result"]
    assert "leg 1/4 · upper: started" in log.progress and "lap 2 of 2 done" in log.progress
    for child in children:
        assert child.status.state == TaskState.TASK_STATE_COMPLETED
        assert list(child.history[0].reference_task_ids) == [log.task.id], "each leg is a child task of the run"
    assert not tool.is_error and tool.result["state"] == "completed", tool.result
    assert tool.result["text"] == "OVER MCP"
    assert tool.artifact("result")["data"]["path"] == ["upper", "echo", "upper", "echo"]
    assert any("lap 1 of 2 done" in m for m in tool.progress), tool.progress


async def test_a_user_pattern_is_held_to_the_run_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, agents=relay_folder(tmp_path, RELAY_IMPORT, max_steps=3))
    async with running_gateway(settings) as gateway:
        log = await run_workflow(gateway, "relay-team", "pass it on")

    assert log.task.status.state == TaskState.TASK_STATE_FAILED
    assert "step limit reached: 3 steps" in log.text
    assert log.artifacts == ["step-1-upper", "step-2-echo", "step-3-upper"]


async def test_a_registered_user_pattern_resumes_after_kill_9_without_rerunning_finished_steps(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    site = register(tmp_path / "site", {"relay": RELAY_IMPORT})
    agents = agents_folder(
        tmp_path / "agents",
        [
            python_agent("counter", "counter", log=str(calls)),
            workflow("relay-team", "relay", ["counter", "echo"], {"laps": 2}),
        ],
        bundled=["echo"],
    )
    run = await kill_mid_run(tmp_path, agents, "relay-team", f"wait: {WAIT_S}", "step-1-counter", [site])

    assert run.mid_run["status"]["state"] == "TASK_STATE_WORKING" and "step-2-echo" not in run.shown_before_kill
    assert run.done["status"]["state"] == "TASK_STATE_COMPLETED", run.done["status"]
    assert run.shown == ["step-1-counter", "step-2-echo", "step-3-counter", "step-4-echo", "result"]
    assert calls.read_text().splitlines() == [f"wait: {WAIT_S}", f"waited {WAIT_S}s"], "leg 1 was not run again"


BATON = """from gateway.orchestration.api import PatternSpec
from tests.team_patterns.relay import RelayOptions, run

SPEC = PatternSpec(name="baton", run=run, options=RelayOptions)
"""


async def test_a_pattern_module_beside_the_agent_file_is_found_by_import_string(tmp_path: Path) -> None:
    folder = relay_folder(tmp_path, "baton_pattern:SPEC")
    (folder / "baton_pattern.py").write_text(BATON)
    (folder / "broken_pattern.py").write_text("raise RuntimeError('the pattern needs a config file')\n")
    async with running_gateway(make_settings(tmp_path, agents=folder)) as gateway:
        log = await run_workflow(gateway, "relay-team", "pass it on")
    broken = AgentSpec.model_validate(workflow("broken", "broken_pattern:SPEC", ["echo"])).read_from(folder / "b.yaml")

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED and log.text == "PASS IT ON"
    with pytest.raises(InvalidWorkflowError) as refused:
        plan_workflow(broken)
    assert refused.value.detail == (
        "pattern 'broken_pattern:SPEC' cannot be loaded from broken_pattern:SPEC: "
        "RuntimeError: the pattern needs a config file"
    )
