"""A run killed with SIGKILL mid-step and resumed by the next gateway process, for pattern tests.

The gateway is a real ``python -m gateway serve`` process; the run is started over JSON-RPC with
``returnImmediately``, the process is killed once the run's task shows a given step's output,
and a second process on the same data dir resumes it from its checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from gateway.testing import free_socket, wait_until_ready
from tests.orchestration.test_workflow_restart import REPO, V1, artifact_names, gateway_process, rpc

POLL_S = 0.05  # polling a subprocess: there is no event to wait on


@dataclass(frozen=True)
class Restarted:
    """The run's task as the killed process left it, and as the restarted one finished it."""

    mid_run: dict[str, Any]
    done: dict[str, Any]

    @property
    def shown_before_kill(self) -> list[str]:
        return artifact_names(self.mid_run)

    @property
    def shown(self) -> list[str]:
        return artifact_names(self.done)


async def poll_task(
    http: httpx.AsyncClient, agent: str, task_id: str, until: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GetTask until ``until`` holds (at most 30 s)."""
    async with asyncio.timeout(30):
        while True:
            response = await http.post(f"/agents/{agent}", json=rpc("GetTask", {"id": task_id}), headers=V1)
            task: dict[str, Any] = response.json()["result"]
            if until(task):
                return task
            await asyncio.sleep(POLL_S)


async def kill_mid_run(
    tmp_path: Path, agents: Path, workflow: str, text: str, kill_after: str, path: Sequence[Path] = ()
) -> Restarted:
    """Run ``workflow`` on ``text``; SIGKILL the gateway once step output ``kill_after`` shows; restart; finish."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), *map(str, path)]),
        "SWITCHBOARD_DATA_DIR": str(tmp_path / "data"),
        "SWITCHBOARD_AGENTS": str(agents),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
    }
    message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        with gateway_process(env) as first:
            await wait_until_ready(http, first)
            params = {"message": message, "configuration": {"returnImmediately": True}}
            started = await http.post(f"/agents/{workflow}", json=rpc("SendMessage", params), headers=V1)
            task_id = started.json()["result"]["task"]["id"]
            mid_run = await poll_task(http, workflow, task_id, lambda t: kill_after in artifact_names(t))
            first.send_signal(signal.SIGKILL)
        with gateway_process(env) as second:
            await wait_until_ready(http, second)
            done = await poll_task(http, workflow, task_id, lambda t: t["status"]["state"] != "TASK_STATE_WORKING")
    return Restarted(mid_run, done)
