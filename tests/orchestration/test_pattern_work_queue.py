"""Work queue over scripted agents: item sources, the concurrency limit, retries elsewhere, policy, limits."""

from __future__ import annotations

import asyncio

import pytest

from gateway.orchestration.api import LimitExceededError, Limits, StepInput, StepResult
from gateway.orchestration.catalog import pattern
from gateway.orchestration.work_queue import SPEC, WorkQueueOptions, run
from tests.orchestration.scripted_run import Responder, always, data_of, result, scripted

WAIT_S = 5.0


def upper(agent: str, request: StepInput) -> StepResult:
    return result(request.text.upper(), agent=agent)


def fails_on(*texts: str) -> Responder:
    def respond(agent: str, request: StepInput) -> StepResult:
        if request.text in texts:
            return result(state="failed", error=f"{agent} cannot do {request.text}", agent=agent)
        return upper(agent, request)

    return respond


def test_catalog_names_the_work_queue() -> None:
    assert pattern("work-queue") is SPEC


async def test_items_from_data_are_shared_round_robin() -> None:
    request = StepInput("shout these", data=({"items": ["a", "b", {"text": "c", "id": 3}, {"n": 4}]},))
    pool = scripted({"one": upper, "two": upper}, request=request)

    outcome = await run(pool, WorkQueueOptions(concurrency=1))

    assert outcome.state == "completed"
    assert pool.agents_called == ["one", "two", "one", "two"]
    assert data_of(outcome)["counts"] == {"total": 4, "done": 4, "failed": 0}
    assert [(i["index"], i["status"], i["agent"], i["output"]) for i in data_of(outcome)["items"]] == [
        (0, "done", "one", "A"),
        (1, "done", "two", "B"),
        (2, "done", "one", "C"),
        (3, "done", "two", '{"N": 4}'),
    ]
    third = pool.steps[2].request.data[0]["work_queue"]
    assert third == {"item": {"text": "c", "id": 3}, "index": 2, "total": 4, "instruction": "shout these"}
    assert outcome.text.splitlines()[0] == "4 items: 4 done, 0 failed"
    assert "item 4/4 done by two (4 of 4 finished)" in pool.progress_messages


async def test_items_from_text_lines() -> None:
    pool = scripted({"one": upper}, request="alpha\n\n  beta  \n")

    outcome = await run(pool, WorkQueueOptions())

    assert [step.request.text for step in pool.steps] == ["alpha", "beta"]
    assert "instruction" not in pool.steps[0].request.data[0]["work_queue"]
    assert outcome.state == "completed"


async def test_no_more_than_concurrency_items_are_in_flight() -> None:
    go = asyncio.Event()
    full = asyncio.Event()

    async def slow(agent: str, request: StepInput) -> StepResult:
        if pool.in_flight == 2:
            full.set()
        await go.wait()
        return result("ok", agent=agent)

    pool = scripted({"a": slow, "b": slow, "c": slow}, request="1\n2\n3\n4\n5")
    running = asyncio.create_task(run(pool, WorkQueueOptions(concurrency=2)))
    await asyncio.wait_for(full.wait(), WAIT_S)

    assert pool.in_flight == 2 and pool.started == 2
    go.set()
    outcome = await asyncio.wait_for(running, WAIT_S)
    assert outcome.state == "completed"
    assert pool.max_in_flight == 2 and len(pool.steps) == 5


async def test_a_failed_item_is_retried_on_another_agent() -> None:
    pool = scripted({"a": fails_on("x"), "b": upper}, request="x\ny")

    outcome = await run(pool, WorkQueueOptions(concurrency=1, max_attempts=2))

    assert [(step.agent, step.request.text) for step in pool.steps] == [("a", "x"), ("b", "y"), ("b", "x")]
    assert outcome.state == "completed"
    first = data_of(outcome)["items"][0]
    assert (first["status"], first["agent"], first["output"]) == ("done", "b", "X")
    assert first["attempts"] == [
        {"agent": "a", "state": "failed", "error": "a cannot do x"},
        {"agent": "b", "state": "completed", "error": ""},
    ]
    assert "item 1/2 failed on a (attempt 1/2); re-queued" in pool.progress_messages


async def test_items_out_of_attempts_are_listed_and_tolerated_by_default() -> None:
    pool = scripted({"a": fails_on("bad"), "b": fails_on("bad")}, request="good\nbad")

    outcome = await run(pool, WorkQueueOptions(max_attempts=3))

    assert [step.agent for step in pool.steps if step.request.text == "bad"] == ["b", "a", "b"]
    assert outcome.state == "completed"
    assert data_of(outcome)["failed"] == [1]
    assert data_of(outcome)["counts"] == {"total": 2, "done": 1, "failed": 1}
    assert data_of(outcome)["items"][1]["output"] == "b cannot do bad"
    assert "2. failed (b): b cannot do bad" in outcome.text


async def test_policy_can_fail_the_run_when_any_item_failed() -> None:
    pool = scripted({"a": fails_on("bad")}, request="good\nbad")

    outcome = await run(pool, WorkQueueOptions(max_attempts=1, fail_run_if_any_failed=True))

    assert outcome.state == "failed"
    assert data_of(outcome)["failed"] == [1]


async def test_a_batch_where_nothing_succeeded_fails() -> None:
    pool = scripted({"a": always(result(state="failed", error="down"))}, request="x\ny")

    outcome = await run(pool, WorkQueueOptions(max_attempts=1))

    assert outcome.state == "failed"
    assert outcome.text.startswith("2 items: 0 done, 2 failed")


async def test_more_items_than_steps_raises_before_any_work() -> None:
    pool = scripted({"a": upper}, request="1\n2\n3", limits=Limits(max_steps=2))

    with pytest.raises(LimitExceededError, match="3 items but the run allows 2 steps"):
        await run(pool, WorkQueueOptions())
    assert pool.steps == []


async def test_retries_past_the_step_limit_raise_the_limit_error_itself() -> None:
    pool = scripted({"a": fails_on("x"), "b": fails_on("x")}, request="x\ny", limits=Limits(max_steps=3))

    with pytest.raises(LimitExceededError, match="step limit reached"):
        await run(pool, WorkQueueOptions(concurrency=1, max_attempts=5))


async def test_no_items_fails_clearly() -> None:
    outcome = await run(scripted({"a": upper}, request="  \n"), WorkQueueOptions())

    assert outcome.state == "failed"
    assert outcome.text == 'work queue: no items; send {"items": [...]} as data or one item per line of text'


async def test_the_pool_can_be_named() -> None:
    pool = scripted({"a": upper, "b": upper, "c": upper}, request="1\n2\n3")

    await run(pool, WorkQueueOptions(agents=("c", "b"), concurrency=1))

    assert pool.agents_called == ["c", "b", "c"]


async def test_higher_priority_items_are_taken_first_and_a_retry_waits_behind_its_own_priority() -> None:
    items = ["low", {"text": "urgent", "priority": 10}, {"text": "mid", "priority": 5}, {"text": "x", "priority": 10}]
    failed_once: set[str] = set()

    def x_fails_once(agent: str, request: StepInput) -> StepResult:
        if request.text == "x" and "x" not in failed_once:
            failed_once.add("x")
            return result(state="failed", error="not yet", agent=agent)
        return upper(agent, request)

    pool = scripted({"a": x_fails_once, "b": x_fails_once}, request=StepInput("", data=({"items": items},)))

    outcome = await run(pool, WorkQueueOptions(concurrency=1, max_attempts=2))

    assert [step.request.text for step in pool.steps] == ["urgent", "x", "x", "mid", "low"]
    assert data_of(outcome)["counts"] == {"total": 4, "done": 4, "failed": 0}


async def test_the_least_loaded_agent_takes_the_next_item() -> None:
    release = asyncio.Event()
    quick_calls: list[str] = []

    async def slow(agent: str, request: StepInput) -> StepResult:
        await release.wait()
        return upper(agent, request)

    def quick(agent: str, request: StepInput) -> StepResult:
        quick_calls.append(request.text)
        if len(quick_calls) == 3:  # slow still holds item 1; quick did 2, 3 and 4 one after the other
            release.set()
        return upper(agent, request)

    pool = scripted({"slow": slow, "quick": quick}, request="1\n2\n3\n4")
    async with asyncio.timeout(WAIT_S):
        outcome = await run(pool, WorkQueueOptions(concurrency=2))

    by = {item["item"]: item["agent"] for item in data_of(outcome)["items"]}
    assert by == {"1": "slow", "2": "quick", "3": "quick", "4": "quick"}, "in turn, slow would have had item 3"


async def test_an_item_out_of_attempts_is_dead_lettered_with_every_attempt() -> None:
    pool = scripted({"a": fails_on("bad"), "b": fails_on("bad")}, request="good\nbad")

    outcome = await run(pool, WorkQueueOptions(concurrency=1, max_attempts=2))

    assert data_of(outcome)["dead_letter"] == [
        {
            "index": 1,
            "item": "bad",
            "attempts": [
                {"agent": "b", "state": "failed", "error": "b cannot do bad"},
                {"agent": "a", "state": "failed", "error": "a cannot do bad"},
            ],
        }
    ]
    assert "item 2/2 dead-lettered after 2 attempts, last by a: a cannot do bad" in pool.progress_messages
