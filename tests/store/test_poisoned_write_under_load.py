"""Under load, a poisoned request costs only itself; after kill -9 every task a client was told completed is on disk.

A message whose metadata carried ``{"switchboard": {"hops": 1e19}}`` to a workflow once made the
run's checkpoint write raise inside the SQLite writer: every later batch failed, callers hung,
and single writes reported success inside a transaction that never committed, so a crash lost
hundreds of acknowledged tasks. Here 20 a2a-sdk clients (JSON-RPC, REST and gRPC) send to
``echo`` on a real ``python -m gateway serve`` while the poisoned request and a ListTasks past
2262 arrive; then the process is killed and the database is read directly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
from a2a.client import Client
from a2a.types.a2a_pb2 import ListTasksRequest, Message, Part, Role, SendMessageRequest, TaskState

from gateway.testing import free_socket, wait_until_ready
from tests.bindings.a2a_clients import BINDINGS, a2a_client, send

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 20
LOAD_S = 3.0  # of load after the poisoned request, and at least MIN_ACKNOWLEDGED tasks; at most WANTED
MIN_ACKNOWLEDGED = 100
WANTED = 1500
ARMS = [b for b in BINDINGS if not b.streaming]
POISON_TIMEOUT_S = 10.0


def poisoned() -> SendMessageRequest:
    message = Message(role=Role.ROLE_USER, message_id=str(uuid.uuid4()), parts=[Part(text="def f():\n    pass\n")])
    message.metadata.update({"switchboard": {"hops": 1e19}})
    return SendMessageRequest(message=message)


async def poison(base: str) -> list[str]:
    """The requests that once broke the writer; what each got back, by name."""
    outcomes = []
    async with a2a_client(f"{base}/agents/code-review", ARMS[0]) as client:
        try:
            async with asyncio.timeout(POISON_TIMEOUT_S):
                async for _ in client.send_message(poisoned()):
                    pass
            outcomes.append("hops: accepted")
        except Exception as exc:  # named in the outcome the test asserts on
            outcomes.append(f"hops: {type(exc).__name__}")
        far = ListTasksRequest()
        far.status_timestamp_after.seconds = 253370764800  # 9999-01-01
        try:
            async with asyncio.timeout(POISON_TIMEOUT_S):
                await client.list_tasks(far)
            outcomes.append("list: answered")
        except Exception as exc:  # named in the outcome the test asserts on
            outcomes.append(f"list: {type(exc).__name__}")
    return outcomes


async def test_every_acknowledged_task_is_on_disk_after_a_poisoned_write_and_kill_9(tmp_path: Path) -> None:
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
    }
    command = [sys.executable, "-m", "gateway", "serve"]
    proc = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.DEVNULL)  # noqa: ASYNC220 -- returns at once
    base = f"http://127.0.0.1:{port}"
    acknowledged: list[str] = []
    ready_during_load: list[int] = []
    errors: list[str] = []
    killed: list[bool] = []
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            await wait_until_ready(http, proc)
            loop = asyncio.get_running_loop()
            poisoned_at = asyncio.Event()
            stop_at: list[float] = []

            async def load(n: int) -> None:
                async with a2a_client(f"{base}/agents/echo", ARMS[n % len(ARMS)]) as client:
                    await hammer(client)

            async def hammer(client: Client) -> None:
                while proc.poll() is None:
                    try:
                        task, _ = await send(client, f"durable {uuid.uuid4()}")
                    except Exception as exc:
                        if not killed:  # a call that failed or hung while the gateway was alive
                            errors.append(f"{type(exc).__name__}: {exc}")
                        return
                    if task.status.state == TaskState.TASK_STATE_COMPLETED:
                        acknowledged.append(task.id)
                    if len(acknowledged) == 50:
                        poisoned_at.set()
                    done = len(acknowledged)
                    if stop_at and ((loop.time() > stop_at[0] and done >= MIN_ACKNOWLEDGED) or done >= WANTED):
                        killed.append(True)
                        proc.send_signal(signal.SIGKILL)  # while the other clients are mid-request
                        return

            async def poison_mid_load() -> list[str]:
                await poisoned_at.wait()
                outcomes = await poison(base)
                ready_during_load.append((await http.get("/readyz")).status_code)
                stop_at.append(loop.time() + LOAD_S)
                return outcomes

            async with asyncio.timeout(90):
                outcomes, *_ = await asyncio.gather(poison_mid_load(), *(load(n) for n in range(CLIENTS)))
    finally:
        proc.kill()
        proc.wait(timeout=10)

    assert errors == []
    assert outcomes == ["hops: InvalidParamsError", "list: InvalidParamsError"]
    assert ready_during_load == [200]
    assert len(acknowledged) >= MIN_ACKNOWLEDGED
    conn = sqlite3.connect(data_dir / "switchboard.db")  # replays the WAL the killed process left
    try:
        stored = dict(conn.execute("SELECT id, state FROM tasks WHERE agent = 'echo'").fetchall())
    finally:
        conn.close()
    missing = [task_id for task_id in acknowledged if stored.get(task_id) != TaskState.TASK_STATE_COMPLETED]
    assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged tasks are not on disk as completed"
