"""Push notifications go out through a durable outbox: retried, re-checked at every send, in order, with ids.

Loopback receivers are allowed the way every test gateway allows them (``allow_private_push_urls``,
an explicit operator setting); the tests of the private-address check turn it off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from a2a.client import Client
from a2a.types.a2a_pb2 import SendMessageRequest, Task, TaskPushNotificationConfig, TaskState

from gateway.testing import RunningGateway, free_socket, running_gateway, wait_until_ready
from tests.bindings.a2a_clients import BINDINGS, a2a_client, task_of, user_message
from tests.conftest import make_settings
from tests.push.receiver import PushReceiver, push_receiver
from tests.push.tls import make_tls

JSONRPC = next(b for b in BINDINGS if b.id == "jsonrpc")
JSONRPC_SSE = next(b for b in BINDINGS if b.id == "jsonrpc-sse")
WAIT_S = 30.0
# What echo's "wait: 1" produces on the SDK's path, in order: the task, work with progress, the artifact, the end.
ECHO_WAIT_KINDS = [
    ("task", "TASK_STATE_SUBMITTED"),
    ("statusUpdate", "TASK_STATE_WORKING"),
    ("statusUpdate", "TASK_STATE_WORKING"),
    ("artifactUpdate", "*"),
    ("statusUpdate", "TASK_STATE_COMPLETED"),
]
FAST_RETRIES = {"push_retry_base_s": 0.01, "push_retry_max_s": 0.05}


def _kinds(receiver: PushReceiver) -> list[tuple[str, str]]:
    return [(kind, "*" if kind == "artifactUpdate" else what) for kind, what in (d.kind() for d in receiver.accepted)]


def _ended(receiver: PushReceiver) -> bool:
    return any(d.kind()[1] in ("TASK_STATE_COMPLETED", "TASK_STATE_FAILED") for d in receiver.accepted)


async def _send_with_push(client: Client, text: str, url: str, *, task_id: str = "") -> Task:
    """Send ``text`` with a push config for ``url`` (so it runs on the SDK's path) and wait for the task's end."""
    request = SendMessageRequest(message=user_message(text, task_id=task_id))
    request.configuration.task_push_notification_config.CopyFrom(TaskPushNotificationConfig(url=url, token="tok"))
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(request):
            if (task := task_of(event)) is not None:
                return task
    raise AssertionError("no task came back")


async def _ask(client: Client) -> Task:
    """A task waiting for input (started on the runner's path, with no push config)."""
    async with asyncio.timeout(WAIT_S):
        async for event in client.send_message(SendMessageRequest(message=user_message("ask: your name?"))):
            if (task := task_of(event)) is not None:
                assert task.status.state == TaskState.TASK_STATE_INPUT_REQUIRED
                return task
    raise AssertionError("no task came back")


async def _register(client: Client, task_id: str, url: str) -> None:
    await client.create_task_push_notification_config(
        TaskPushNotificationConfig(task_id=task_id, id="hook", url=url, token="tok")
    )


def _push(gateway: RunningGateway) -> Any:
    return gateway.app.state.gateway.push


# -- retries and restarts ---------------------------------------------------------------------------------


@asynccontextmanager
async def _gateway_process(data_dir: Path, env: dict[str, str]) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """``switchboard serve`` as a child process on a free port; killed (SIGKILL) when the block ends."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    env = {
        **os.environ,
        "SWITCHBOARD_DATA_DIR": str(data_dir),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
        "SWITCHBOARD_ALLOW_PRIVATE_PUSH_URLS": "true",
        **env,
    }
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "serve"], env=env, stderr=subprocess.DEVNULL)  # noqa: ASYNC220 -- returns at once
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            await wait_until_ready(http, proc)
        yield url, proc
    finally:
        proc.kill()
        await asyncio.to_thread(proc.wait, 10)


async def _fails_twice_then_restart(tmp_path: Path, env: dict[str, str]) -> None:
    # Backoff of at least 2 s after the second failure: the gateway is killed well before its third try.
    # A try in flight when it is killed stays leased for 2 x timeout + 5 s on a shared database.
    env = {
        **env,
        "SWITCHBOARD_PUSH_RETRY_BASE_S": "2",
        "SWITCHBOARD_PUSH_RETRY_MAX_S": "4",
        "SWITCHBOARD_PUSH_TIMEOUT_S": "2",
    }
    async with push_receiver(answers=[500, 500]) as receiver:
        async with _gateway_process(tmp_path / "data", env) as (url, proc):
            async with a2a_client(f"{url}/agents/echo", JSONRPC) as client:
                task = await _send_with_push(client, "wait: 1", receiver.url)
            assert task.status.state == TaskState.TASK_STATE_COMPLETED
            await receiver.wait_for(lambda r: len(r.deliveries) == 2)
            proc.kill()  # kill -9: whatever the gateway had not delivered is only in its database now
        assert receiver.accepted == []
        restarted_at = time.monotonic()
        async with _gateway_process(tmp_path / "data", env):
            await receiver.wait_for(_ended)
    assert receiver.accepted[0].at > restarted_at  # delivered by the restarted gateway
    assert [d.status for d in receiver.deliveries[:2]] == [500, 500]
    assert _kinds(receiver) == ECHO_WAIT_KINDS  # every event, in order
    ids = [d.notification_id for d in receiver.accepted]
    assert all(ids) and len(set(ids)) == len(ids)  # each notification has its own id
    # The two failed tries were the first notification: the same id, so a receiver can tell a retry.
    assert {d.notification_id for d in receiver.deliveries[:2]} == {ids[0]}
    assert all(d.token == "tok" for d in receiver.deliveries)
    assert all(d.body[k].get("taskId", task.id) == task.id for d in receiver.accepted for k in d.body)


async def test_receiver_failing_twice_gets_every_event_in_order_after_a_restart(tmp_path: Path) -> None:
    await _fails_twice_then_restart(tmp_path, {})


async def test_receiver_failing_twice_gets_every_event_in_order_after_a_restart_on_postgresql(
    tmp_path: Path, pg_database: str
) -> None:
    await _fails_twice_then_restart(tmp_path, {"SWITCHBOARD_DATABASE_URL": pg_database})


async def test_a_task_a_crash_left_running_ends_failed_at_its_receiver(tmp_path: Path) -> None:
    """The start-up sweep ends the task FAILED; its push configs hear of it like of any other end."""
    async with push_receiver() as receiver:
        async with _gateway_process(tmp_path / "data", {}) as (url, proc):
            async with a2a_client(f"{url}/agents/echo", JSONRPC_SSE) as client:
                async with asyncio.timeout(WAIT_S):
                    stream = client.send_message(SendMessageRequest(message=user_message("wait: 120")))
                    first = await anext(aiter(stream))
                    await stream.aclose()  # the task goes on working, detached from this caller
                task_id = first.task.id if first.HasField("task") else first.status_update.task_id
                await _register(client, task_id, receiver.url)
            proc.kill()
        async with _gateway_process(tmp_path / "data", {}):
            await receiver.wait_for(_ended)
    ended = receiver.accepted[-1]
    assert ended.kind() == ("task", "TASK_STATE_FAILED") and ended.body["task"]["id"] == task_id
    assert "restarted" in ended.body["task"]["status"]["message"]["parts"][0]["text"]
    assert ended.notification_id


async def test_a_try_cut_short_by_a_stop_is_sent_again_at_once_by_the_next_gateway(
    tmp_path: Path, pg_database: str
) -> None:
    """On a shared database a stopping gateway frees what it had in flight (else its lease holds it 25 s)."""
    settings = make_settings(tmp_path, database_url=pg_database)
    async with push_receiver(stall=1) as receiver:
        async with running_gateway(settings) as gateway, a2a_client(gateway.agent_url("echo"), JSONRPC) as client:
            await _send_with_push(client, "hello", receiver.url)
            await receiver.wait_for(lambda r: len(r.deliveries) == 1)  # the first try hangs: the gateway stops
        async with running_gateway(settings):
            await receiver.wait_for(_ended, within_s=10.0)
    cut, *accepted = receiver.deliveries
    assert cut.status == 0 and accepted[0].notification_id == cut.notification_id
    assert [d.kind()[0] for d in accepted] == ["task", "artifactUpdate", "statusUpdate"]


async def test_retry_after_is_honoured(tmp_path: Path) -> None:
    async with (
        push_receiver(answers=[(503, {"Retry-After": "1"})]) as receiver,
        running_gateway(make_settings(tmp_path, **FAST_RETRIES)) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        await _send_with_push(client, "hello", receiver.url)
        await receiver.wait_for(_ended)
    first, retry = receiver.deliveries[0], receiver.deliveries[1]
    assert first.status == 503 and retry.accepted and retry.notification_id == first.notification_id
    assert retry.at - first.at >= 0.95  # not the 10-50 ms backoff: what the receiver asked for
    assert [d.kind()[0] for d in receiver.accepted] == ["task", "artifactUpdate", "statusUpdate"]


async def test_delivery_is_dropped_after_the_limit_with_a_reason_and_a_counter(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, push_max_attempts=3, **FAST_RETRIES)
    caplog.set_level(logging.WARNING, logger="gateway.push")
    async with (
        push_receiver(otherwise=500) as receiver,
        running_gateway(settings) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        await _send_with_push(client, "hello", receiver.url)
        stats = _push(gateway).stats
        await stats.wait_for(lambda s: s.dropped.get("gave-up", 0) == 3, WAIT_S)
        assert stats.delivered == 0 and stats.retried == 6
    ids = [d.notification_id for d in receiver.deliveries]
    assert len(ids) == 9 and len(set(ids)) == 3
    assert ids == [ids[0]] * 3 + [ids[3]] * 3 + [ids[6]] * 3  # each tried 3 times, one after the other, in order
    assert [receiver.deliveries[i].kind()[0] for i in (0, 3, 6)] == ["task", "artifactUpdate", "statusUpdate"]
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(dropped) == 3 and all("HTTP 500" in m and "3 attempts" in m for m in dropped)


async def test_runner_path_notifications_go_through_the_outbox(tmp_path: Path) -> None:
    async with (
        push_receiver(answers=[500]) as receiver,
        running_gateway(make_settings(tmp_path, **FAST_RETRIES)) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        task = await _ask(client)  # a new task without push config runs on the runner
        await _register(client, task.id, receiver.url)
        async with asyncio.timeout(WAIT_S):
            async for _ in client.send_message(SendMessageRequest(message=user_message("Ada", task_id=task.id))):
                pass
        await receiver.wait_for(_ended)
    failed, *accepted = receiver.deliveries
    assert failed.status == 500 and accepted[0].notification_id == failed.notification_id
    assert all(d.notification_id for d in accepted)


# -- the address is checked at every delivery, and the connection goes to the address checked ---------------


async def test_stored_url_that_is_now_private_gets_no_post(tmp_path: Path) -> None:
    """Registered while allowed; by the time the task's events go out the address is refused."""
    async with push_receiver() as receiver:
        async with (
            running_gateway(make_settings(tmp_path)) as gateway,
            a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
        ):
            task = await _ask(client)
            await _register(client, task.id, receiver.url)
        strict = make_settings(tmp_path, allow_private_push_urls=False, **FAST_RETRIES)
        async with running_gateway(strict) as gateway, a2a_client(gateway.agent_url("echo"), JSONRPC) as client:
            async with asyncio.timeout(WAIT_S):
                async for _ in client.send_message(SendMessageRequest(message=user_message("Ada", task_id=task.id))):
                    pass
            assert receiver.deliveries == []
            stats = _push(gateway).stats
            await stats.wait_for(lambda s: s.dropped.get("address-refused", 0) >= 1, WAIT_S)
            assert receiver.deliveries == [] and stats.delivered == 0


class ScriptedResolver:
    """A resolver whose answers the test changes (as DNS records change)."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = dict(answers)
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"no such host: {host}")
        return list(self.answers[host])


async def test_name_that_resolves_to_a_private_address_at_send_time_is_refused(tmp_path: Path) -> None:
    strict = make_settings(tmp_path, allow_private_push_urls=False, **FAST_RETRIES)
    async with (
        push_receiver() as receiver,
        running_gateway(strict) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        resolver = ScriptedResolver({"hooks.example": ["93.184.216.34"]})  # public when registered
        _push(gateway).policy.resolver = resolver
        port = receiver.url.split(":")[2].split("/")[0]
        task = await _ask(client)
        await _register(client, task.id, f"http://hooks.example:{port}/hook")
        resolver.answers["hooks.example"] = ["93.184.216.34", "127.0.0.1"]  # now one answer is loopback
        async with asyncio.timeout(WAIT_S):
            async for _ in client.send_message(SendMessageRequest(message=user_message("Ada", task_id=task.id))):
                pass
        stats = _push(gateway).stats
        await stats.wait_for(lambda s: s.dropped.get("address-refused", 0) >= 1, WAIT_S)
        assert resolver.asked.count("hooks.example") >= 2  # at registration, and again at delivery
        assert receiver.deliveries == [] and stats.delivered == 0


async def test_delivery_connects_to_the_address_it_checked_with_the_original_host(tmp_path: Path) -> None:
    async with (
        push_receiver() as receiver,
        running_gateway(make_settings(tmp_path)) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        _push(gateway).policy.resolver = ScriptedResolver({"hooks.example": ["127.0.0.1"]})
        port = receiver.url.split(":")[2].split("/")[0]
        await _send_with_push(client, "hello", f"http://hooks.example:{port}/hook")
        await receiver.wait_for(_ended)
    assert {d.host for d in receiver.deliveries} == {f"hooks.example:{port}"}


async def test_an_unreachable_address_is_passed_over_for_the_next_checked_one(tmp_path: Path) -> None:
    async with (
        push_receiver() as receiver,
        running_gateway(make_settings(tmp_path)) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        # Nothing listens on 127.0.0.2 (the receiver is bound to 127.0.0.1 only): its connection is refused.
        _push(gateway).policy.resolver = ScriptedResolver({"hooks.example": ["127.0.0.2", "127.0.0.1"]})
        port = receiver.url.split(":")[2].split("/")[0]
        await _send_with_push(client, "hello", f"http://hooks.example:{port}/hook")
        await receiver.wait_for(_ended)
        assert _push(gateway).stats.retried == 0
    assert [d.kind()[0] for d in receiver.deliveries] == ["task", "artifactUpdate", "statusUpdate"]


async def test_https_delivery_checks_the_certificate_for_the_name_while_connecting_to_the_checked_address(
    tmp_path: Path,
) -> None:
    tls = make_tls(tmp_path, "hooks.example")
    settings = make_settings(tmp_path, push_ca_file=tls.ca, push_max_attempts=1)
    async with (
        push_receiver(tls=tls) as receiver,
        running_gateway(settings) as gateway,
        a2a_client(gateway.agent_url("echo"), JSONRPC) as client,
    ):
        names = {"hooks.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]}
        _push(gateway).policy.resolver = ScriptedResolver(names)
        port = receiver.url.split(":")[2].split("/")[0]
        await _send_with_push(client, "hello", f"https://hooks.example:{port}/hook")
        await receiver.wait_for(_ended)
        assert {d.host for d in receiver.deliveries} == {f"hooks.example:{port}"}
        # The same address under a name its certificate does not hold: TLS refuses it, nothing is posted.
        await _send_with_push(client, "hello", f"https://other.example:{port}/hook")
        await _push(gateway).stats.wait_for(lambda s: s.dropped.get("gave-up", 0) == 3, WAIT_S)
    assert len(receiver.deliveries) == 3
