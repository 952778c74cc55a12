"""On a shared PostgreSQL, a replica's start-up leaves alone what a live replica is running, however silent.

The start-up sweep (tasks left submitted or working end FAILED) and run recovery (interrupted
workflow runs resume) once judged a task abandoned by its age: a step silent for longer than
``takeover_after_s`` on a live replica was failed, and its run resumed a second time, by any
replica that started meanwhile. Now a task is abandoned only when the process that last wrote it
is provably gone: each gateway process holds a PostgreSQL advisory lock for as long as it lives.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from a2a.types.a2a_pb2 import TaskState

from gateway.testing import running_gateway
from tests.conftest import make_settings
from tests.orchestration.fixture_agents import agents_folder, workflow

V1 = {"A2A-Version": "1.0"}
WAIT_S = 20.0
POLL_S = 0.05  # the rows another gateway writes: no event to wait on
pytest_plugins = ["tests.store.test_task_store"]  # pg_schema_dsn


def start_body(text: str) -> dict[str, Any]:
    message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": message, "configuration": {"returnImmediately": True}},
    }


async def states(dsn: str) -> dict[str, tuple[str, int]]:
    conn = await asyncpg.connect(dsn)
    try:
        return {r["id"]: (r["agent"], r["state"]) for r in await conn.fetch("SELECT agent, id, state FROM tasks")}
    finally:
        await conn.close()


async def until_working(dsn: str, count: int) -> dict[str, tuple[str, int]]:
    async with asyncio.timeout(WAIT_S):
        while True:
            now = await states(dsn)
            if sum(state == TaskState.TASK_STATE_WORKING for _, state in now.values()) >= count:
                return now
            await asyncio.sleep(POLL_S)


async def test_a_starting_replica_neither_fails_nor_resumes_a_live_replicas_silent_work(
    tmp_path: Path, pg_schema_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway")
    agents = agents_folder(tmp_path / "agents", [workflow("pipe", "sequential", ["echo"])], bundled=["echo"])

    def replica(name: str) -> Any:
        return make_settings(tmp_path / name, agents=agents, database_url=pg_schema_dsn, takeover_after_s=0.001)

    async with running_gateway(replica("a")) as a, httpx.AsyncClient(base_url=a.url, timeout=10) as http:
        silent = (await http.post("/agents/echo", json=start_body("wait: 60"), headers=V1)).json()["result"]["task"]
        run = (await http.post("/agents/pipe", json=start_body("wait: 60"), headers=V1)).json()["result"]["task"]
        before = await until_working(pg_schema_dsn, 3)  # the silent task, the run, and the run's step
        async with running_gateway(replica("b")):
            pass  # its start-up sweep and run recovery ran
        after = await states(pg_schema_dsn)

    assert after[silent["id"]][1] == TaskState.TASK_STATE_WORKING
    assert after[run["id"]][1] == TaskState.TASK_STATE_WORKING
    assert "left running by an earlier stop" not in caplog.text, "a live replica's task was failed"
    assert "resuming run" not in caplog.text
    assert set(after) == set(before), "no step was started again"
