"""The graph pattern: typed state, conditional edges, bounded loops, fan-out/fan-in, checks at load, resume."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from a2a.types.a2a_pb2 import TaskState

from gateway.errors import AgentFileError
from gateway.hosting.executor import data_part
from gateway.hosting.registry import Registry
from gateway.orchestration.api import Limits
from gateway.orchestration.conditions import parse
from gateway.orchestration.graph_model import Compare, holds
from gateway.orchestration.workflows import InvalidWorkflowError, plan_workflow
from gateway.settings import bundled_agents_dir
from gateway.spec import AgentSpec
from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.kill_and_resume import kill_mid_run
from tests.orchestration.mcp_run import call_workflow
from tests.orchestration.replay_harness import Answer, execute, new_record, plan, resume
from tests.orchestration.run_client import data_of, get_task, request, run_workflow

AGENTS = "tests.orchestration.graph_agents"
STATE = {
    "type": "object",
    "properties": {
        "verdict": {"enum": ["good", "bad"]},
        "attempts": {"type": "integer", "minimum": 0, "default": 0},
        "approved": {"type": "boolean"},
        "labels": {"type": "array", "items": {"type": "string"}},
    },
    "additionalProperties": False,
}
LOOP: dict[str, Any] = {
    "state": STATE,
    "start": "triage",
    "edges": [
        {"from": "triage", "to": "fixer", "when": {"field": "verdict", "op": "eq", "value": "bad"}},
        {"from": "triage", "to": "end", "when": {"field": "verdict", "op": "eq", "value": "good"}},
        {"from": "fixer", "to": "checker"},
        {"from": "checker", "to": "fixer", "when": {"field": "approved", "op": "eq", "value": False}},
        {"from": "checker", "to": "end", "when": {"not": {"field": "approved", "op": "eq", "value": False}}},
    ],
}
FAN: dict[str, Any] = {
    "start": "split",
    "nodes": {
        "split": {"agent": "splitter"},
        "left": {"agent": "lefty"},
        "right": {"agent": "shouting-team", "data_to": "shouted"},
        "right2": {"agent": "righty"},
        "merge": {"agent": "joiner", "join": True, "text_to": "merged"},
    },
    "edges": [
        {"from": "split", "to": "left"},
        {"from": "split", "to": "right"},
        {"from": "left", "to": "merge"},
        {"from": "right", "to": "right2"},
        {"from": "right2", "to": "merge"},
        {"from": "merge", "to": "end"},
    ],
}


def loop_agents(verdict: str = "bad") -> list[dict[str, Any]]:
    return [
        python_agent("triage", f"{AGENTS}:setter", field="verdict", value=verdict, text="triaged"),
        python_agent("fixer", f"{AGENTS}:bump", field="attempts"),
        python_agent("checker", f"{AGENTS}:judge", field="attempts", at_least=3),
    ]


def fan_agents() -> list[dict[str, Any]]:
    return [
        python_agent("splitter", f"{AGENTS}:setter", field="split", value=True, text="go both ways"),
        python_agent("lefty", f"{AGENTS}:setter", field="left", value="done", text="left branch"),
        python_agent("righty", f"{AGENTS}:setter", field="right", value="done", text="right branch"),
        python_agent("joiner", f"{AGENTS}:setter", field="joined", value=True),
        python_agent("shout", "tests.team_patterns.fixtures:upper"),
        workflow("shouting-team", "sequential", ["shout"]),
    ]


async def test_a_loop_runs_until_its_condition_holds_with_every_node_a_child_task(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, agents=loop_folder(tmp_path, LOOP))) as gateway:
        log = await run_workflow(gateway, "fix-loop", "fix the build")
        children = [await get_task(gateway, o.agent, o.task_id) for o in (log.step(n) for n in log.artifacts[:-1])]
        tool = await call_workflow(gateway, "fix-loop", {"text": "fix it over mcp"})

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    result = data_of(log.artifact("result"))
    assert result["state"] == {"verdict": "bad", "attempts": 3, "approved": True}
    assert [p["node"] for p in result["path"]] == ["triage", "fixer", "checker", "fixer", "checker", "fixer", "checker"]
    assert log.text == "approved"
    assert "graph: checker -> fixer" in log.progress and "graph: checker -> end" in log.progress
    assert "node fixer #3 · fixer: attempts is now 3" in log.progress
    assert len(children) == 7 and all(c.status.state == TaskState.TASK_STATE_COMPLETED for c in children)
    assert all(list(c.history[0].reference_task_ids) == [log.task.id] for c in children)
    assert not tool.is_error and tool.result["state"] == "completed", tool.result
    assert tool.artifact("result")["data"]["state"]["attempts"] == 3
    assert any("graph: checker -> fixer" in m for m in tool.progress), tool.progress


def loop_folder(tmp_path: Path, options: dict[str, Any], verdict: str = "bad", **limits: Any) -> Path:
    files = [*loop_agents(verdict), workflow("fix-loop", "graph", ["triage", "fixer", "checker"], options, limits)]
    return agents_folder(tmp_path / "agents", files)


async def test_a_loop_is_bounded_by_the_runs_round_limit(tmp_path: Path) -> None:
    async with running_gateway(make_settings(tmp_path, agents=loop_folder(tmp_path, LOOP, max_rounds=2))) as gateway:
        log = await run_workflow(gateway, "fix-loop", "fix the build")

    assert log.task.status.state == TaskState.TASK_STATE_FAILED
    assert "round limit reached: node fixer would run 3 times; a node may run max_rounds=2" in log.text


async def test_fan_out_runs_branches_together_and_a_join_waits_for_every_branch(tmp_path: Path) -> None:
    files = [*fan_agents(), workflow("fan", "graph", ["splitter", "lefty", "shouting-team", "righty", "joiner"], FAN)]
    async with running_gateway(make_settings(tmp_path, agents=agents_folder(tmp_path / "agents", files))) as gateway:
        log = await run_workflow(gateway, "fan", "split this")
        nested = log.step("step-3-shouting-team")

    assert log.task.status.state == TaskState.TASK_STATE_COMPLETED, log.text
    result = data_of(log.artifact("result"))
    assert [p["node"] for p in result["path"]] == ["split", "left", "right", "right2", "merge"], "merge ran once"
    assert [(r["step"], r["from"], r["to"]) for r in result["routes"]][:3] == [
        (1, "split", "left"),
        (1, "split", "right"),
        (2, "left", "merge"),
    ]
    assert result["state"]["merged"] == "left branch\n\nright branch", "the join got both branches' texts"
    assert result["state"]["left"] == result["state"]["right"] == "done"
    assert nested.text == "GO BOTH WAYS", "a node may be a nested workflow"
    assert "steps" not in result["state"] and result["state"]["shouted"]["steps"][0]["agent"] == "shout"
    assert log.text == "left branch\n\nright branch"


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (lambda o: o["edges"].pop(2), "unreachable from 'triage': checker"),
        (
            lambda o: o["edges"][3].pop("when"),
            "unbounded cycle fixer -> checker -> fixer: every edge on it is unconditional",
        ),
        (lambda o: o["edges"].pop(4), "the cycle through fixer, checker has no edge leading out of it"),
        (lambda o: o["edges"].append({"from": "fixer", "to": "nowhere"}), "edges[5].to: 'nowhere' is not a node"),
        (lambda o: o.update(start="fixr"), "start 'fixr' is not a node"),
        (lambda o: o["edges"][0]["when"].update(field="verdit"), "the state schema declares no field 'verdit'"),
        (lambda o: o["edges"][0]["when"].update(value="meh"), "'meh' can never be a value of 'verdict'"),
        (lambda o: o["edges"][0]["when"].update(op="gt"), "gt compares numbers, not 'bad'"),
        (lambda o: (o.pop("state"), o["edges"][0]["when"].update(op="gt")), "gt compares numbers, not 'bad'"),
        (lambda o: o["edges"][0]["when"].update(op="contains"), "contains tests a list field"),
        (lambda o: o["edges"][0]["when"].update(op="like"), "edges.0.when"),
        (lambda o: o.update(state={"type": "objekt"}), "state is not a valid JSON Schema"),
        (
            lambda o: o.update(nodes={n: {"agent": "triage"} for n in ("triage", "fixer", "checker")}),
            "participants no node runs: fixer, checker",
        ),
        (
            lambda o: o.update(nodes={n: {"agent": "stranger"} for n in ("triage", "fixer", "checker")}),
            "not participants: stranger",
        ),
    ],
)
def test_a_bad_graph_is_refused_at_load_with_the_reason(change: Any, says: str) -> None:
    options = copy.deepcopy(LOOP)
    change(options)
    spec = AgentSpec.model_validate(workflow("fix-loop", "graph", ["triage", "fixer", "checker"], options))
    with pytest.raises(InvalidWorkflowError) as refused:
        plan_workflow(spec)
    assert refused.value.field == "runtime.options"
    assert says in refused.value.detail, refused.value.detail


def test_a_condition_on_a_field_declared_by_ref_is_checked_against_what_the_ref_names() -> None:
    options = copy.deepcopy(LOOP)
    properties = {**STATE["properties"], "verdict": {"$ref": "#/$defs/Verdict"}}  # type: ignore[dict-item]
    options["state"] = {**STATE, "$defs": {"Verdict": {"enum": ["good", "bad"]}}, "properties": properties}
    participants = ["triage", "fixer", "checker"]
    plan_workflow(AgentSpec.model_validate(workflow("fix-loop", "graph", participants, options)))
    meh, unresolved = copy.deepcopy(options), copy.deepcopy(options)
    meh["edges"][0]["when"]["value"] = "meh"
    unresolved["state"]["$defs"] = {}
    for wrong, says in (
        (meh, "'meh' can never be a value of 'verdict'"),
        (unresolved, "the state schema has a $ref that resolves nowhere (a run would fail on it): field 'verdict'"),
    ):
        with pytest.raises(InvalidWorkflowError) as refused:
            plan_workflow(AgentSpec.model_validate(workflow("fix-loop", "graph", participants, wrong)))
        assert says in refused.value.detail, refused.value.detail


def test_a_ref_that_resolves_nowhere_is_refused_at_load_even_on_a_field_no_condition_uses(tmp_path: Path) -> None:
    # Before, only the fields conditions read were checked: this loaded, and the run failed at its first state.
    options = copy.deepcopy(LOOP)
    options["state"]["properties"]["notes"] = {"type": "array", "items": {"$ref": "#/$defs/Note"}}
    options["state"]["properties"]["review"] = {"type": "object", "properties": {"by": {"$ref": "#/$defs/Who"}}}
    options["state"]["$defs"] = {"Note": {"type": "string"}}
    with pytest.raises(AgentFileError) as refused:
        Registry.load(loop_folder(tmp_path, options))
    assert refused.value.detail == (
        "fix-loop.yaml: runtime.options: runtime.options: Value error, the state schema has a $ref that resolves "
        "nowhere (a run would fail on it): field 'review.by' -> '#/$defs/Who'"
    )
    options["state"]["$defs"]["Who"] = {"type": "string"}
    plan = plan_workflow(
        AgentSpec.model_validate(workflow("fix-loop", "graph", ["triage", "fixer", "checker"], options))
    )
    assert list(plan.options.validator.iter_errors({"notes": ["x"], "review": {"by": "me"}})) == []  # type: ignore[attr-defined]


async def test_the_state_validator_is_built_once_at_load_and_reused_by_every_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flow = plan("graph", ["triage", "fixer", "checker"], LOOP, Limits(max_rounds=5))
    built: list[object] = []
    real = jsonschema.Draft202012Validator

    def counted(*args: Any, **kwargs: Any) -> Any:
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(jsonschema, "Draft202012Validator", counted)
    run = await execute(flow, new_record("fix it"), script)

    assert run.outcome.state == "completed" and len(run.calls) == 7, run.outcome
    assert built == [], "a validator was built during the run, not once when the options loaded"


def test_a_gateway_refuses_to_load_a_bad_graph_naming_the_file_and_the_field(tmp_path: Path) -> None:
    options = copy.deepcopy(LOOP)
    options["edges"].pop(2)
    folder = loop_folder(tmp_path, options)
    with pytest.raises(AgentFileError, match=r"fix-loop\.yaml: runtime\.options: .*unreachable from 'triage': checker"):
        Registry.load(folder)


def test_conditions_compare_typed_values_never_substrings() -> None:
    state = {"verdict": "not bad", "score": 2, "flag": True, "labels": ["security"], "review": {"score": 0.5}}
    assert not holds(Compare(field="verdict", op="eq", value="bad"), state), "no substring match"
    assert not holds(Compare(field="verdict", op="contains", value="bad"), state), "contains is for lists"
    assert holds(Compare(field="labels", op="contains", value="security"), state)
    assert holds(Compare(field="score", op="eq", value=2.0), state) and not holds(Compare(field="flag", value=1), state)
    assert holds(Compare(field="review.score", op="lt", value=1), state)
    assert not holds(Compare(field="verdict", op="lt", value=1), state), "a string is not less than a number"
    assert holds(Compare(field="missing", op="missing"), state) and not holds(Compare(field="missing", op="ne"), state)
    assert holds(Compare(field="score", op="in", value=[1, 2]), state)


@pytest.mark.parametrize(
    ("data", "agents", "says"),
    [
        (
            {"verdict": "meh"},
            None,
            "the request's state does not match the state schema at verdict: 'meh' is not one of",
        ),
        ({"state": {"attempts": -1}}, None, "at attempts: -1 is less than the minimum of 0"),
        (None, "good?", "the state written by triage does not match the state schema at verdict"),
    ],
)
async def test_a_state_the_schema_refuses_fails_the_run_with_the_reason(
    tmp_path: Path, data: dict[str, Any] | None, agents: str | None, says: str
) -> None:
    folder = loop_folder(tmp_path, LOOP, verdict=agents or "bad")
    message = request("fix the build")
    if data is not None:
        message.parts.append(data_part(data))
    async with running_gateway(make_settings(tmp_path, agents=folder)) as gateway:
        log = await run_workflow(gateway, "fix-loop", message)

    assert log.task.status.state == TaskState.TASK_STATE_FAILED
    assert says in log.text, log.text


async def test_a_node_none_of_whose_edges_holds_fails_the_run_naming_it(tmp_path: Path) -> None:
    options = copy.deepcopy(LOOP)
    options["edges"][1]["when"]["value"] = "bad"  # both triage edges test for "bad": "good" matches neither
    async with running_gateway(make_settings(tmp_path, agents=loop_folder(tmp_path, options, "good"))) as gateway:
        log = await run_workflow(gateway, "fix-loop", "fix the build")

    assert log.task.status.state == TaskState.TASK_STATE_FAILED
    assert 'no edge from triage holds on the state {"attempts": 0, "verdict": "good"}' in log.text


def script(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
    state = data[0]["state"] if data else {}
    if agent == "triage":
        return Answer("triaged", data={"verdict": "bad"})
    if agent == "fixer":
        return Answer(f"attempt {state.get('attempts', 0) + 1}", data={"attempts": state.get("attempts", 0) + 1})
    return Answer("checked", data={"approved": state.get("attempts", 0) >= 3}, delay=3)


async def test_a_graph_resumed_from_any_checkpoint_ends_as_the_uninterrupted_run() -> None:
    flow = plan("graph", ["triage", "fixer", "checker"], LOOP, Limits(max_rounds=5))
    whole = await execute(flow, new_record("fix it"), script)
    assert whole.outcome.state == "completed" and whole.outcome.data["state"]["attempts"] == 3
    for index, row in enumerate(whole.checkpoints):
        resumed = await resume(flow, row, script)
        assert resumed.outcome == whole.outcome, f"resumed from checkpoint {index}"
        done = len(json.loads(row[9]))
        assert len(resumed.calls) == len(whole.calls) - done, f"checkpoint {index}: finished nodes ran again"


LOOP_AS_TEXT: dict[str, Any] = {
    **LOOP,
    "edges": [
        {"from": "triage", "to": "fixer", "when": "verdict == 'bad'"},
        {"from": "triage", "to": "end", "when": "verdict == 'good'"},
        {"from": "fixer", "to": "checker"},
        {"from": "checker", "to": "fixer", "when": "approved == false"},
        {"from": "checker", "to": "end", "when": "not approved == false"},
    ],
}


def test_conditions_written_as_expressions_are_the_structured_ones() -> None:
    def edges(options: dict[str, Any]) -> Any:
        spec = AgentSpec.model_validate(workflow("fix-loop", "graph", ["triage", "fixer", "checker"], options))
        return plan_workflow(spec).options.edges  # type: ignore[attr-defined]

    assert edges(LOOP_AS_TEXT) == edges(LOOP)
    nested = parse("verdict == 'bad' and (attempts >= 3 or labels contains 'urgent') and owner not in ['x', null]")
    assert nested == {
        "all": [
            {"field": "verdict", "op": "eq", "value": "bad"},
            {
                "any": [
                    {"field": "attempts", "op": "ge", "value": 3},
                    {"field": "labels", "op": "contains", "value": "urgent"},
                ]
            },
            {"field": "owner", "op": "not-in", "value": ["x", None]},
        ]
    }


@pytest.mark.parametrize(
    ("when", "says"),
    [
        ("verdict = 'bad'", "edges.0.when: Value error, unexpected \"= 'bad'\" at 8"),
        ("verdict == bad", "expected a value ('text', a number, true, false, null or a [list]), found 'bad' at 11"),
        ("(verdict == 'bad'", "expected ')', found the end"),
        ("__import__('os') == 1", "expected an operator"),
        ("verdit == 'bad'", "the state schema declares no field 'verdit'"),
        ("verdict == 'meh'", "'meh' can never be a value of 'verdict'"),
    ],
)
def test_a_bad_expression_is_refused_at_load_naming_where(when: str, says: str) -> None:
    options = copy.deepcopy(LOOP_AS_TEXT)
    options["edges"][0]["when"] = when
    spec = AgentSpec.model_validate(workflow("fix-loop", "graph", ["triage", "fixer", "checker"], options))
    with pytest.raises(InvalidWorkflowError) as refused:
        plan_workflow(spec)
    assert says in refused.value.detail, refused.value.detail


def test_the_schema_accepts_both_forms_of_condition_and_checks_the_graph_options() -> None:
    schema = json.loads((bundled_agents_dir() / "schema.json").read_text())
    for options in (LOOP, LOOP_AS_TEXT):
        jsonschema.validate(workflow("fix-loop", "graph", ["triage", "fixer", "checker"], options), schema)
    wrong = {**LOOP, "edges": [{"from": "triage", "to": "end", "when": 3}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(workflow("fix-loop", "graph", ["triage"], wrong), schema)


async def test_a_graph_with_expressions_runs_as_the_structured_one() -> None:
    flow = plan("graph", ["triage", "fixer", "checker"], LOOP_AS_TEXT, Limits(max_rounds=5))
    run = await execute(flow, new_record("fix it"), script)
    assert (
        run.outcome
        == (await execute(plan("graph", ["triage", "fixer", "checker"], LOOP), new_record("fix it"), script)).outcome
    )


def test_the_readmes_graph_example_loads() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL) if "pattern: graph" in b)
    runtime = yaml.safe_load(block)["runtime"]
    plan = plan_workflow(AgentSpec.model_validate({**workflow("fix-loop", "graph", ["x"]), "runtime": runtime}))
    assert plan.participants == ("triage", "fixer", "checker") and len(plan.options.edges) == 5  # type: ignore[attr-defined]


async def test_a_graph_killed_mid_node_resumes_after_restart_without_rerunning_finished_nodes(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    options = {
        "start": "count",
        "nodes": {"count": {"agent": "counter"}, "wait": {"agent": "echo"}, "recount": {"agent": "counter"}},
        "edges": [{"from": "count", "to": "wait"}, {"from": "wait", "to": "recount"}, {"from": "recount", "to": "end"}],
    }
    files = [
        python_agent("counter", "counter", log=str(calls)),
        workflow("waiting", "graph", ["counter", "echo"], options),
    ]
    agents = agents_folder(tmp_path / "agents", files, bundled=["echo"])
    run = await kill_mid_run(tmp_path, agents, "waiting", "wait: 3", "step-1-counter")

    assert run.mid_run["status"]["state"] == "TASK_STATE_WORKING" and "step-2-echo" not in run.shown_before_kill
    assert run.done["status"]["state"] == "TASK_STATE_COMPLETED", run.done["status"]
    assert run.shown == ["step-1-counter", "step-2-echo", "step-3-counter", "result"]
    assert calls.read_text().splitlines() == ["wait: 3", "waited 3s"], "the first node was not run again"
