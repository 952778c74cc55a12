"""Resume by replay: steps are numbered by call order, and a checkpointed step never reaches its agent again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from a2a.server.context import ServerCallContext
from a2a.server.request_handlers import RequestHandler
from a2a.types.a2a_pb2 import Message, Part, Role

from gateway.hosting.registry import load_spec
from gateway.orchestration.api import AgentInfo, Limits, StepResult
from gateway.orchestration.breaker import BreakerBoard
from gateway.orchestration.checkpoints import RunRecord, SqlRunStore
from gateway.orchestration.engine import EngineRun
from gateway.orchestration.workflows import plan_workflow
from gateway.runtime import Usage
from gateway.settings import Settings
from gateway.spec import AgentSpec
from gateway.store import Database, open_database
from tests.orchestration.fixture_agents import agents_folder, workflow
from tests.orchestration.replay_harness import Answer, Script, execute, new_record, resume
from tests.orchestration.replay_harness import plan as harness_plan
from tests.orchestration.scripted_run import data_of


class NoAgents:
    """A host whose agents must not be called: every step has to come from the checkpoint."""

    def __init__(self, db: Database) -> None:
        self.settings = Settings()
        self.db = db
        self.breakers = BreakerBoard()
        self.stopping = False
        self.leases = None
        self.work_items = None
        self.asked: list[str] = []

    def handler(self, name: str) -> RequestHandler:
        self.asked.append(name)
        raise AssertionError(f"{name} was called, but its step is in the checkpoint")

    def local_runner(self, name: str) -> None:
        self.asked.append(name)
        raise AssertionError(f"{name} was called, but its step is in the checkpoint")

    def spec(self, name: str) -> AgentSpec | None:
        return None

    def describe(self, name: str) -> AgentInfo:
        return AgentInfo(name=name, description=name)


class Events:
    def __init__(self) -> None:
        self.progress_messages: list[str] = []
        self.artifacts: list[str] = []

    async def progress(self, *lines: str) -> None:
        self.progress_messages.extend(lines)

    async def artifact(self, name: str, **_: Any) -> None:
        self.artifacts.append(name)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(f"sqlite:///{tmp_path / 'runs.db'}")
    try:
        yield database
    finally:
        await database.close()


def plan(tmp_path: Path, pattern: str, participants: list[str], options: dict[str, Any] | None = None) -> Any:
    folder = agents_folder(tmp_path / "agents", [workflow("flow", pattern, participants, options)])
    return plan_workflow(load_spec(folder / "flow.yaml"))


def record(steps: dict[int, StepResult]) -> RunRecord:
    request = Message(role=Role.ROLE_USER, message_id="m", parts=[Part(text="go")])
    return RunRecord("run-1", "flow", "", "task-1", "ctx-1", "fp", request, steps=steps)


async def test_a_run_whose_steps_are_all_checkpointed_replays_without_calling_an_agent(
    tmp_path: Path, db: Database
) -> None:
    saved = {
        1: StepResult("a", "completed", "first", task_id="c1", usage=Usage(10, 5)),
        2: StepResult("b", "completed", "second", task_id="c2"),
    }
    host, events = NoAgents(db), Events()
    run = EngineRun(plan(tmp_path, "sequential", ["a", "b"]), host, record(saved), ServerCallContext(), events)

    outcome = await run.execute()

    assert outcome.state == "completed" and outcome.text == "second"
    assert host.asked == [] and events.artifacts == [], "replayed steps are not published again"


async def test_concurrent_steps_are_numbered_in_start_order_on_every_replay(tmp_path: Path, db: Database) -> None:
    saved = {n: StepResult(agent, "completed", f"{agent} says yes") for n, agent in enumerate("abc", 1)}
    host = NoAgents(db)
    flow = plan(tmp_path, "concurrent", ["a", "b", "c"], {"merge": "majority-vote"})
    run = EngineRun(flow, host, record(saved), ServerCallContext(), Events())

    outcome = await run.execute()

    assert outcome.state == "completed" and host.asked == [], "a numbering off by one would ask another agent"
    assert isinstance(outcome.data, dict) and list(outcome.data["scores"]) == ["a says yes", "b says yes", "c says yes"]


async def test_a_replay_that_asks_another_agent_fails_the_run(tmp_path: Path, db: Database) -> None:
    saved = {1: StepResult("b", "completed", "not a's")}
    run = EngineRun(
        plan(tmp_path, "sequential", ["a", "b"]), NoAgents(db), record(saved), ServerCallContext(), Events()
    )

    outcome = await run.execute()

    assert outcome.state == "failed"
    assert outcome.text == "flow cannot resume this run: step 1 was b's, and the pattern now asks a"


async def test_replayed_usage_counts_against_the_budget(tmp_path: Path, db: Database) -> None:
    saved = {1: StepResult("a", "completed", "pricey", usage=Usage(600, 600))}
    flow = plan(tmp_path, "sequential", ["a", "b"])
    flow = type(flow)(**{**flow.__dict__, "limits": type(flow.limits)(max_tokens=1000)})
    run = EngineRun(flow, NoAgents(db), record(saved), ServerCallContext(), Events())

    outcome = await run.execute()

    assert outcome.state == "failed" and outcome.text == "token limit reached: 1200 tokens used of a 1000-token budget"


async def test_the_checkpoint_is_saved_with_the_runs_state(tmp_path: Path, db: Database) -> None:
    run = EngineRun(plan(tmp_path, "sequential", ["a"]), NoAgents(db), record({}), ServerCallContext(), Events())
    run.record.state = "input-required"
    await run.checkpoint()

    stored = await SqlRunStore(db).get("flow", "", "task-1")

    assert stored is not None and stored.state == "input-required" and stored.run_id == "run-1"


# -- replayed results go to the step that asked for them -------------------------------------------------------------

NO_ENGINE_RETRIES = Limits(retries=0, breaker_threshold=1000)


def first_try_fails(slow: str) -> Script:
    """Each item fails on its first try (``slow``'s failure comes last), then gives its own result."""

    def answer(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        if call == 1:
            return Answer(f"no luck with {text} yet", "failed", delay=8 if text == slow else 1)
        return Answer(f"RESULT FOR {text.upper()}", delay=1)

    return answer


async def test_a_resumed_work_queue_gives_each_item_its_own_result_whatever_order_retries_finished() -> None:
    flow = harness_plan("work-queue", ["worker"], {"concurrency": 2, "max_attempts": 2}, NO_ENGINE_RETRIES)
    script = first_try_fails(slow="alpha")  # beta fails first, so its retry starts (and is numbered) before alpha's
    whole = await execute(flow, new_record("alpha\nbeta"), script)
    outputs = [(item["item"], item["output"]) for item in data_of(whole.outcome)["items"]]
    assert outputs == [("alpha", "RESULT FOR ALPHA"), ("beta", "RESULT FOR BETA")]

    last = whole.checkpoints[-1]  # all four steps done: the gateway died before the run's outcome was saved
    resumed = await resume(flow, last, script)

    assert resumed.calls == [], "every step is in the checkpoint"
    assert [(item["item"], item["output"]) for item in data_of(resumed.outcome)["items"]] == outputs
    assert resumed.outcome == whole.outcome


def slow_agent(slow: str) -> Script:
    """Every item done at once, but ``slow`` takes longer than the others."""

    def answer(agent: str, text: str, data: tuple[dict[str, Any], ...], call: int) -> Answer:
        return Answer(f"{text} done by {agent}", delay=8 if agent == slow else 1)

    return answer


async def test_a_resumed_in_turn_work_queue_asks_the_same_agent_for_each_item_as_the_run_it_resumes() -> None:
    options = {"concurrency": 2, "assign": "in-turn"}
    flow = harness_plan("work-queue", ["quick", "slow"], options, NO_ENGINE_RETRIES)
    script = slow_agent("slow")  # quick is free again while slow still works: a pool that prefers idle agents differs
    whole = await execute(flow, new_record("1\n2\n3\n4"), script)

    for row in whole.checkpoints:
        resumed = await resume(flow, row, script)
        done = len(RunRecord.from_row(row).steps)
        assert len(resumed.calls) == 4 - done, "no finished item is done again"
        assert resumed.outcome == whole.outcome


async def test_a_resumed_least_loaded_work_queue_replays_each_finished_item_from_the_agent_that_did_it() -> None:
    flow = harness_plan("work-queue", ["quick", "slow"], {"concurrency": 2}, NO_ENGINE_RETRIES)
    script = slow_agent("slow")  # quick is free again while slow still works, so quick takes more items
    whole = await execute(flow, new_record("1\n2\n3\n4\n5\n6"), script)
    by = [item["agent"] for item in data_of(whole.outcome)["items"]]
    assert by.count("quick") > by.count("slow"), f"the idle agent takes more items: {by}"

    for row in whole.checkpoints:
        resumed = await resume(flow, row, script)
        saved = RunRecord.from_row(row).steps
        assert len(resumed.calls) == 6 - len(saved), "no finished item is done again, whatever the load is now"
        items = data_of(resumed.outcome)["items"]
        assert [item["status"] for item in items] == ["done"] * 6
        replayed = {result.text for result in saved.values()}
        assert replayed <= {item["output"] for item in items}, "each replayed item keeps the agent that did it"
