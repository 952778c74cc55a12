"""Loops across gateways are stopped; a peer that is down opens its breaker; a slow peer times the step out."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.federation.conftest import Orgs
from tests.federation.support import dump, rpc

WAIT_S = 60.0


async def run(http: httpx.AsyncClient, url: str, text: str) -> dict[str, Any]:
    """Send ``text`` and wait for the task to end (non-streaming SendMessage returns the final task)."""
    message = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": text}]}
    async with asyncio.timeout(WAIT_S):
        body = await rpc(http, url, "SendMessage", {"message": message})
    assert "result" in body, body
    task: dict[str, Any] = body["result"]["task"]
    return task


def history(task: dict[str, Any]) -> str:
    return " | ".join(p.get("text", "") for m in task.get("history", []) for p in m.get("parts", []))


def status_text(task: dict[str, Any]) -> str:
    return " ".join(p.get("text", "") for p in task["status"].get("message", {}).get("parts", []))


async def test_a_loop_across_gateways_is_stopped(orgs: Orgs) -> None:
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        task = await run(http, orgs.a.agent_url("loop-a"), "go round")
    assert task["status"]["state"] == "TASK_STATE_FAILED", dump(task)
    assert "loop across gateways" in status_text(task), status_text(task)
    # A -> B -> A -> (stopped at A before going to B again): B's loop-b ran once, through A's loop-a once more.
    assert "is already on the request's path" in orgs.a.logged()


async def test_a_peer_that_is_down_opens_its_breaker_and_the_fallback_answers(orgs: Orgs) -> None:
    url = orgs.a.agent_url("fallback-flow")
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        up = await run(http, url, "while b2 is up")
        orgs.b2.stop()
        down = await run(http, url, "b2 is down")
        attempts = orgs.a.logged().count("b2-echo: task")
        open_circuit = await run(http, url, "the circuit is open")
        attempts_after = orgs.a.logged().count("b2-echo: task")
        message = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": "direct"}]}
        direct = await rpc(http, orgs.a.agent_url("b2-echo"), "SendMessage", {"message": message})
    assert up["status"]["state"] == "TASK_STATE_COMPLETED"
    assert [s["agent"] for s in up["metadata"]["switchboard"]["steps"]] == ["b2-echo"]
    for task in (down, open_circuit):
        assert task["status"]["state"] == "TASK_STATE_COMPLETED", dump(task)
        assert [s["agent"] for s in task["metadata"]["switchboard"]["steps"]] == ["echo"], "the fallback answered"
    assert "peer-unavailable" in orgs.a.logged()
    assert attempts_after == attempts, "with the circuit open, b2 is not called at all"
    assert "b2-echo: started" in history(down), "with b2 down, the step tried it first"
    assert "b2-echo: started" not in history(open_circuit), "with the circuit open, the step went to the fallback"
    assert "b2-echo failed; echo takes over" in history(open_circuit)
    # Called directly, the unreachable peer is the protocol's error, with the reason in its details.
    error = direct["error"]
    assert error["code"] == -32051 and "SendMessage to b2-echo" in error["message"], error  # peer-unavailable
    assert error["data"][0]["metadata"] == {"reason": "peer-unavailable", "retryable": "true", "peer": "b2"}


async def test_a_slow_peer_times_the_step_out_and_its_remote_task_is_canceled(orgs: Orgs) -> None:
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        task = await run(http, orgs.a.agent_url("timeout-partner"), "wait: 30")
        listed = await rpc(http, orgs.a.agent_url("b-echo"), "ListTasks", {"contextId": task["contextId"]})
        (step,) = listed["result"]["tasks"]
        remote_id = step["metadata"]["switchboard"]["remote"]["task_id"]
        remote = await rpc(http, orgs.b.agent_url("echo"), "GetTask", {"id": remote_id})
    assert task["status"]["state"] == "TASK_STATE_FAILED"
    assert "did not finish within 1s" in status_text(task) + dump(task)
    assert remote["result"]["status"]["state"] == "TASK_STATE_CANCELED"
