"""kill -9 in the middle of a run: the restarted gateway resumes it from its checkpoint and finishes it."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from a2a.types.a2a_pb2 import Task
from google.protobuf.json_format import ParseDict

from gateway.testing import free_socket, wait_until_ready
from tests.orchestration.fixture_agents import agents_folder, python_agent, workflow
from tests.orchestration.run_client import output_names

REPO = Path(__file__).resolve().parents[2]
V1 = {"A2A-Version": "1.0"}
WAIT_S = 3  # step 2 works this long, so the kill lands while it runs
POLL_S = 0.05  # polling a subprocess: there is no event to wait on


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}


@contextmanager
def gateway_process(env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, cwd=REPO, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


async def poll_task(http: httpx.AsyncClient, task_id: str, until: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            response = await http.post("/agents/pipeline", json=rpc("GetTask", {"id": task_id}), headers=V1)
            task: dict[str, Any] = response.json()["result"]
            if until(task):
                return task
            await asyncio.sleep(POLL_S)


def artifact_names(task: dict[str, Any]) -> list[str]:
    """The run's outputs in its task: ``step-<n>-<agent>`` for each step in its ``steps`` artifact, then ``result``."""
    return output_names(ParseDict(task, Task(), ignore_unknown_fields=True).artifacts)


async def test_a_run_killed_mid_step_resumes_after_restart_without_rerunning_finished_steps(tmp_path: Path) -> None:
    calls = tmp_path / "calls.txt"
    agents = agents_folder(
        tmp_path / "agents",
        [
            python_agent("counter", "counter", log=str(calls)),
            workflow("pipeline", "sequential", ["counter", "echo", "counter"]),
        ],
        bundled=["echo"],
    )
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_AGENTS": str(agents),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
    }
    message = {"role": "ROLE_USER", "parts": [{"text": f"wait: {WAIT_S}"}], "messageId": str(uuid.uuid4())}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        with gateway_process(env) as first:
            await wait_until_ready(http, first)
            params = {"message": message, "configuration": {"returnImmediately": True}}
            started = await http.post("/agents/pipeline", json=rpc("SendMessage", params), headers=V1)
            task_id = started.json()["result"]["task"]["id"]
            mid_run = await poll_task(http, task_id, lambda t: "step-1-counter" in artifact_names(t))
            first.send_signal(signal.SIGKILL)
        assert mid_run["status"]["state"] == "TASK_STATE_WORKING" and "step-2-echo" not in artifact_names(mid_run)

        with gateway_process(env) as second:
            await wait_until_ready(http, second)
            done = await poll_task(http, task_id, lambda t: t["status"]["state"] != "TASK_STATE_WORKING")

    assert done["status"]["state"] == "TASK_STATE_COMPLETED", done["status"]
    assert artifact_names(done) == ["step-1-counter", "step-2-echo", "step-3-counter", "result"]
    assert calls.read_text().splitlines() == [f"wait: {WAIT_S}", f"waited {WAIT_S}s"], "step 1 was not run again"
