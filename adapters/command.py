"""The ``command`` runtime: a local program as an agent.

Each message runs the agent file's ``argv`` (a list, never a shell string) in a process group of its
own, with nothing of the gateway's environment but the names the file allows (``env``) and the
values it sets (``set_env``). The message goes in on standard input or as files whose paths replace
``{input}`` in ``argv``: as text, or as one JSON object (``input_format: json``). Standard output
is the reply (text, streamed into the ``stdout`` artifact as the program writes it; or one JSON
value as a data artifact with ``output: json``) and standard error an artifact of its own; an exit
code in ``success_exit_codes`` completes the task, any other fails it with the tail of standard
error. A program that runs past ``timeout_s``, writes more than ``max_output_bytes`` or is
canceled is stopped: SIGTERM to its group, SIGKILL after ``kill_grace_s`` to whatever of it is
left. The working directory is a fresh folder per message, unless ``cwd`` names one (relative to
the agent file).
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from a2a.server.agent_execution import AgentExecutor

from gateway.errors import RuntimeLoadError
from gateway.hosting.cleanup import finish
from gateway.hosting.executor import RuntimeExecutor
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall, Emitter, Reply
from gateway.spec import AgentSpec, CommandRuntime

logger = logging.getLogger(__name__)

STDOUT = "stdout"
READ_CHUNK = 64 * 1024
DRAIN_S = 2.0
"""How long a stopped program's pipes are read to their end (a child that left its group may hold them)."""
STDERR_TAIL = 2000
"""Characters of standard error a failed task's message quotes (its end, where the error usually is)."""
GONE_POLL_S = 0.05
"""How often the stop checks whether a process group that got SIGTERM is gone (within ``kill_grace_s``)."""
_UNSAFE_NAME = re.compile(r"[^\w.-]")


Live = Callable[[bytes], Awaitable[None]]


class _StdoutStream:
    """Standard output as it is read, as chunks of the ``stdout`` artifact (the reply then replaces them whole).

    Each read is sent at once: a pipe read returns whatever is buffered (up to ``READ_CHUNK``), so a
    fast writer makes few chunks and a slow one's lines show as they are written.
    """

    def __init__(self, emit: Emitter) -> None:
        self._emit = emit
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._started = False

    async def __call__(self, data: bytes) -> None:
        if text := self._decoder.decode(data):
            await self._emit.artifact(STDOUT, text=text, append=self._started, last_chunk=False)
            self._started = True


class _OutputCapError(Exception):
    """The program wrote more than the cap."""


@dataclass
class _Output:
    """What the program wrote, bounded by the cap over both streams."""

    cap: int
    stdout: bytearray = field(default_factory=bytearray)
    stderr: bytearray = field(default_factory=bytearray)

    @property
    def size(self) -> int:
        return len(self.stdout) + len(self.stderr)

    async def read(self, stream: asyncio.StreamReader, into: bytearray, live: Live | None = None) -> None:
        """Read ``stream`` to its end into ``into`` (each piece to ``live`` too); ``_OutputCapError`` past the cap."""
        while chunk := await stream.read(READ_CHUNK):
            room = self.cap - self.size
            into += chunk[:room]
            if len(chunk) > room:
                raise _OutputCapError
            if live is not None:
                await live(chunk)


def _text(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", "replace")


def _tail(text: str) -> str:
    text = text.strip()
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


def _safe_name(name: str, taken: set[str]) -> str:
    base = _UNSAFE_NAME.sub("_", Path(name).name).lstrip(".") or "input"
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        candidate = f"{n}-{base}"
    taken.add(candidate)
    return candidate


def json_input(call: AgentCall) -> dict[str, Any]:
    """The message as one JSON object (``input_format: json``)."""
    files = [
        {"name": f.name, "media_type": f.media_type, "text": f.text}
        | ({"url": f.url} if f.url else {})
        | ({"bytes": len(f.raw)} if f.raw is not None and f.text is None else {})
        for f in call.files
    ]
    return {
        "text": call.text,
        "files": files,
        "data": list(call.data),
        "history": [{"role": t.role, "text": t.text} for t in call.history],
        "task_id": call.task_id,
        "context_id": call.context_id,
    }


class CommandAgent:
    """One ``command`` agent as a ``(call, emit) -> Reply`` runtime (see the module)."""

    def __init__(self, name: str, runtime: CommandRuntime, folder: Path) -> None:
        self.name = name
        self.runtime = runtime
        self.folder = folder  # the agent file's folder: relative paths in the file are from here

    def environment(self) -> dict[str, str]:
        """The program's whole environment: the allowed names' values here, then the file's own."""
        allowed = {name: os.environ[name] for name in self.runtime.env if name in os.environ}
        return allowed | self.runtime.set_env

    def program(self) -> str | None:
        """``argv[0]`` as a path: ``{python}``, a path (relative to the agent file), or a name on PATH."""
        first = self.runtime.argv[0].replace("{python}", sys.executable)
        if os.sep in first or (os.altsep and os.altsep in first):
            path = self.folder / first
            return str(path) if path.is_file() else None
        return shutil.which(first)

    def stdin_bytes(self, call: AgentCall) -> bytes:
        """What the program reads on standard input (nothing with ``input: file``)."""
        if self.runtime.input == "file":
            return b""
        if self.runtime.input_format == "json":
            return json.dumps(json_input(call), ensure_ascii=False).encode()
        if call.text or not call.files:
            return call.text.encode()
        first = call.files[0]
        return first.raw if first.raw is not None else (first.text or "").encode()

    def write_inputs(self, call: AgentCall, folder: Path) -> list[str]:
        """The input files for ``input: file``, written in ``folder``; their paths."""
        if self.runtime.input_format == "json":
            path = folder / "input.json"
            path.write_text(json.dumps(json_input(call), ensure_ascii=False), encoding="utf-8")
            return [str(path)]
        taken: set[str] = set()
        paths = []
        for file in call.files:
            if file.raw is None and file.text is None:
                raise ValueError(f"file {file.name!r} is a URL; send its content instead")
            path = folder / _safe_name(file.name, taken)
            path.write_bytes(file.raw if file.raw is not None else (file.text or "").encode())
            paths.append(str(path))
        if not paths:
            path = folder / self.runtime.input_name
            path.write_text(call.text, encoding="utf-8")
            paths.append(str(path))
        return paths

    def argv(self, program: str, inputs: list[str]) -> list[str]:
        """The full argument list: ``{python}`` and ``{input}`` (one argument per input file) replaced."""
        argv = [program]
        for arg in self.runtime.argv[1:]:
            arg = arg.replace("{python}", sys.executable)
            argv += [arg.replace("{input}", path) for path in inputs] if "{input}" in arg else [arg]
        return argv

    def _failed(self, reason: str) -> Reply:
        logger.warning("agent %s: %s", self.name, reason)
        return Reply(text=f"{self.name}: {reason}", state="failed")

    async def __call__(self, call: AgentCall, emit: Emitter) -> Reply:
        """Run the program on ``call``'s message and report what it did."""
        program = self.program()
        if program is None:
            return self._failed(f"command {self.runtime.argv[0]!r} was not found (argv[0] of the agent file)")
        scratch = Path(tempfile.mkdtemp(prefix="switchboard-command-"))
        try:
            try:
                inputs = self.write_inputs(call, scratch) if self.runtime.input == "file" else []
            except ValueError as exc:
                return self._failed(str(exc))
            cwd = self.folder / self.runtime.cwd if self.runtime.cwd else scratch
            if cwd == scratch:  # the program sees its inputs by their own names (in its messages too)
                inputs = [Path(path).name for path in inputs]
            return await self._run(self.argv(program, inputs), cwd, self.stdin_bytes(call), emit)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    async def _run(self, argv: list[str], cwd: Path, stdin: bytes, emit: Emitter) -> Reply:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=cwd,
                env=self.environment(),
                start_new_session=True,  # its own process group: a stop reaches its children too
            )
        except OSError as exc:
            return self._failed(f"could not start {argv[0]}: {exc.strerror or exc}")
        await emit.progress(f"{self.name}: started {Path(argv[0]).name} (pid {process.pid})")
        output = _Output(self.runtime.max_output_bytes)
        live = _StdoutStream(emit) if self.runtime.output == "text" else None
        problem = ""
        try:
            problem = await self._wait(process, stdin, output, live)
        finally:
            if process.returncode is None or problem:
                await finish(stop_group(process, self.runtime.kill_grace_s))
            await finish(_drain(process))
        return await self._outcome(process, output, problem, emit)

    async def _wait(self, process: asyncio.subprocess.Process, stdin: bytes, output: _Output, live: Live | None) -> str:
        """Feed and read the program until it exits; what went wrong ("" when nothing did)."""
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        feeding = asyncio.ensure_future(_feed(process.stdin, stdin))
        try:
            async with asyncio.timeout(self.runtime.timeout_s):
                await asyncio.gather(
                    output.read(process.stdout, output.stdout, live), output.read(process.stderr, output.stderr)
                )
                await process.wait()
        except TimeoutError:
            return f"did not finish within {self.runtime.timeout_s:g}s; it was stopped"
        except _OutputCapError:
            cap = self.runtime.max_output_bytes
            return f"wrote more than {cap} bytes (max_output_bytes); stopped reading and stopped it"
        finally:
            feeding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeding
            process.stdin.close()  # when the feeding was cut short
        return ""

    async def _outcome(
        self, process: asyncio.subprocess.Process, output: _Output, problem: str, emit: Emitter
    ) -> Reply:
        stdout, stderr = _text(output.stdout), _text(output.stderr)
        if stderr:
            await emit.artifact("stderr", text=stderr)
        if problem:
            return self._failed(problem + (f": {_tail(stderr)}" if stderr.strip() else ""))
        code = process.returncode
        assert code is not None
        if code not in self.runtime.success_exit_codes:
            how = f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            if stdout:
                await emit.artifact(STDOUT, text=stdout)
            return self._failed(how + (f": {_tail(stderr)}" if stderr.strip() else ""))
        if self.runtime.output == "text":
            return Reply(text=stdout, artifact_name=STDOUT)
        try:
            data = json.loads(stdout)
        except json.JSONDecodeError as exc:
            return self._failed(f"standard output is not JSON ({exc.msg} at char {exc.pos}): {stdout[:80]!r}")
        if not isinstance(data, dict | list):
            data = {"value": data}
        return Reply(data=data, text=f"{self.name}: exit code {code}", artifact_name=STDOUT)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` and close; a program that does not read its input is not an error."""
    try:
        if data:
            stdin.write(data)
            await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        pass


async def _drain(process: asyncio.subprocess.Process) -> None:
    """Read what is left in the program's pipes, discarded, until they close (or ``DRAIN_S`` passes).

    A pipe whose reader stopped at the cap is paused and would never see its end: its transport
    would stay open past the event loop's life.
    """
    for stream in (process.stdout, process.stderr):
        if stream is None:
            continue
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DRAIN_S):
                while await stream.read(READ_CHUNK):
                    pass


def _signal_group(pid: int, sig: int) -> bool:
    """Send ``sig`` to process group ``pid`` (0: none, only check); whether it still existed."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member changed its user: the group is not ours to signal any more
        return False
    return True


async def stop_group(process: asyncio.subprocess.Process, grace_s: float) -> None:
    """SIGTERM to the program's process group; SIGKILL to what is left of it after ``grace_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    if _signal_group(process.pid, signal.SIGTERM):
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace_s)
        # The leader is gone; members of its group that ignore SIGTERM get the rest of the grace period.
        # Nothing signals a group's end to a process that is not the members' parent: it is polled.
        while loop.time() < deadline and _signal_group(process.pid, 0):  # noqa: ASYNC110
            await asyncio.sleep(GONE_POLL_S)
        if _signal_group(process.pid, signal.SIGKILL):
            logger.warning("process group %d outlived SIGTERM by %gs: killed", process.pid, grace_s)
    await process.wait()


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for a ``command`` agent; a ``cwd`` that does not exist is refused naming the file."""
    runtime = spec.runtime
    assert isinstance(runtime, CommandRuntime)
    folder = spec.file.parent if spec.file is not None else Path.cwd()
    if runtime.cwd and not (folder / runtime.cwd).is_dir():
        raise RuntimeLoadError(
            f"{spec.where}: runtime.cwd {runtime.cwd!r} is not a folder (relative to the agent file)"
        )
    agent = CommandAgent(spec.name, runtime, folder)
    if agent.program() is None:  # not fatal: it may be installed later; each task says so until then
        logger.warning("%s: command %r is not found; its tasks will fail until it is", spec.where, runtime.argv[0])
    return RuntimeExecutor(spec.name, agent)
