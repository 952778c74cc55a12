"""Tasks outlive the process: readable, listable and subscribable after a restart; none stays running."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.types.a2a_pb2 import GetTaskRequest, ListTasksRequest, SubscribeToTaskRequest, TaskState

from gateway.testing import free_socket, running_gateway, wait_until_ready
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.conftest import make_settings

V1 = {"A2A-Version": "1.0"}
JSONRPC_SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")


def send_body(text: str, **config: Any) -> dict[str, Any]:
    message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message, "configuration": config}}


async def test_tasks_survive_a_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        done = (await http.post("/agents/echo", json=send_body("kept"), headers=V1)).json()["result"]["task"]
        asked = (await http.post("/agents/echo", json=send_body("ask: still there?"), headers=V1)).json()
        asked = asked["result"]["task"]
    assert asked["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"

    async with running_gateway(settings) as gw, a2a_client(gw.agent_url("echo"), JSONRPC_SSE) as client:
        got = await client.get_task(GetTaskRequest(id=done["id"]))
        assert got.status.state == TaskState.TASK_STATE_COMPLETED and got.artifacts[0].parts[0].text == "kept"
        listed = await client.list_tasks(ListTasksRequest())
        assert {t.id for t in listed.tasks} == {done["id"], asked["id"]}
        async with asyncio.timeout(10):
            first = await anext(aiter(client.subscribe(SubscribeToTaskRequest(id=asked["id"]))))
        assert first.task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED


async def test_startup_sweep_fails_tasks_a_crash_left_running(tmp_path: Path) -> None:
    """kill -9 under load: every acknowledged task is there after restart, and none is left running."""
    data_dir = tmp_path / "data"
    acknowledged, running = await _load_then_kill(data_dir)
    assert len(acknowledged) >= 300 and len(running) == 3
    settings = make_settings(tmp_path)
    async with running_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url, timeout=10) as http:
        for task_id in acknowledged:
            body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}
            task = (await http.post("/agents/echo", json=body, headers=V1)).json()["result"]
            assert task["status"]["state"] == "TASK_STATE_COMPLETED", task_id
        for task_id in running:
            body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}
            task = (await http.post("/agents/echo", json=body, headers=V1)).json()["result"]
            assert task["status"]["state"] == "TASK_STATE_FAILED"
            assert "restarted" in task["status"]["message"]["parts"][0]["text"]


async def _load_then_kill(data_dir: Path, clients: int = 8, wanted: int = 300) -> tuple[list[str], list[str]]:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stderr=subprocess.DEVNULL)  # noqa: ASYNC220 -- returns at once
    acknowledged: list[str] = []
    running: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_until_ready(http, proc)
            for _ in range(3):  # long tasks that are mid-flight when the process dies
                started = await http.post(
                    "/agents/echo", json=send_body("wait: 60", returnImmediately=True), headers=V1
                )
                running.append(started.json()["result"]["task"]["id"])
            enough = asyncio.Event()

            async def hammer() -> None:
                while not enough.is_set():
                    try:
                        response = await http.post("/agents/echo", json=send_body("durable"), headers=V1)
                    except httpx.HTTPError:
                        return
                    acknowledged.append(response.json()["result"]["task"]["id"])
                    if len(acknowledged) >= wanted:
                        enough.set()
                        proc.send_signal(signal.SIGKILL)  # while the other clients are still mid-request

            async with asyncio.timeout(120):
                await asyncio.gather(*(hammer() for _ in range(clients)))
    finally:
        proc.kill()
        proc.wait(timeout=10)
    return acknowledged, running


async def test_a_second_gateway_on_the_same_data_dir_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    async with running_gateway(settings):
        with pytest.raises(RuntimeError, match="failed to start"):
            async with running_gateway(settings):
                pass
    assert "is in use by another gateway process" in caplog.text
    async with running_gateway(settings) as again:  # the lock went with the first gateway
        assert again.url
