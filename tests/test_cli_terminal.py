"""``switchboard send`` on a terminal (a pseudo-terminal): it asks the task's question, and Ctrl-C cancels the task."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from a2a.types.a2a_pb2 import GetTaskRequest, TaskState

from gateway.testing import RunningGateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client
from tests.test_cli import REPO, cli_env

WAIT_S = 30.0


class Terminal:
    """A CLI process whose stdin, stdout and stderr are one pseudo-terminal, read without blocking the loop."""

    def __init__(self, proc: asyncio.subprocess.Process, master: int) -> None:
        self.proc, self.master = proc, master
        self.seen = ""
        self._more = asyncio.Event()
        asyncio.get_running_loop().add_reader(master, self._read)

    def _read(self) -> None:
        try:
            chunk = os.read(self.master, 4096)
        except OSError:  # EIO: the process closed the terminal
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self.master)
        self.seen += chunk.decode(errors="replace").replace("\r\n", "\n")
        self._more.set()

    async def expect(self, pattern: str) -> re.Match[str]:
        """Wait until the output matches ``pattern``."""
        async with asyncio.timeout(WAIT_S):
            while (found := re.search(pattern, self.seen)) is None:
                self._more.clear()
                await self._more.wait()
        return found

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def exit_code(self) -> int:
        async with asyncio.timeout(WAIT_S):
            return await self.proc.wait()


@asynccontextmanager
async def terminal(*args: str) -> AsyncIterator[Terminal]:
    master, slave = pty.openpty()
    command = [sys.executable, "-m", "gateway", *args]
    proc = await asyncio.create_subprocess_exec(
        *command, cwd=REPO, env=cli_env(), stdin=slave, stdout=slave, stderr=slave
    )
    os.close(slave)
    term = Terminal(proc, master)
    try:
        yield term
    finally:
        asyncio.get_running_loop().remove_reader(master)
        if proc.returncode is None:
            proc.kill()
        async with asyncio.timeout(WAIT_S):
            await proc.wait()
        os.close(master)


async def test_an_asked_question_is_answered_on_the_terminal(gateway: RunningGateway) -> None:
    async with terminal("send", "echo", "ask: colour?", "--url", gateway.url) as term:
        await term.expect(r"colour\?\n> ")
        term.type("blue\n")
        await term.expect("You answered: blue")

        assert await term.exit_code() == 0
    assert "== completed ==" in term.seen and "Traceback" not in term.seen


async def test_ctrl_c_cancels_the_task_on_the_server(gateway: RunningGateway) -> None:
    async with terminal("send", "echo", "wait: 60", "--stream", "--url", gateway.url) as term:
        task_id = (await term.expect(r"\[submitted\] task ([0-9a-f-]+)")).group(1)
        await term.expect(r"\[working\]")
        term.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends

        assert await term.exit_code() == 130
    assert f"interrupted; task {task_id} is canceled on the server" in term.seen
    assert "Traceback" not in term.seen
    async with a2a_client(gateway.agent_url("echo"), BINDINGS[0]) as client:
        task = await client.get_task(GetTaskRequest(id=task_id))
    assert task.status.state == TaskState.TASK_STATE_CANCELED
