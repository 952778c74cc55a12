"""The ``command`` runtime: real programs, their exit codes, caps, timeouts, environments and process groups."""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from a2a.types.a2a_pb2 import CancelTaskRequest, GetTaskRequest, Part, SendMessageRequest, TaskState
from google.protobuf.json_format import MessageToDict
from mcp.client import Client as McpClient

from adapters.command import CommandAgent
from gateway.runtime import AgentCall, Emitter, FileInput, Reply
from gateway.settings import bundled_agents_dir
from gateway.spec import AgentSpec, CommandRuntime, SkillSpec
from gateway.testing import RecordingEmitter, running_gateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client, user_message
from tests.conftest import make_settings

EXAMPLES = bundled_agents_dir() / "examples"
PLANTED = Path(__file__).resolve().parents[1] / "samples" / "planted.py"
WAIT_S = 30.0
BY_ID = {b.id: b for b in BINDINGS}
IGNORE_SIGTERM_AND_SLEEP = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"


def command_agent(tmp_path: Path, **runtime: Any) -> CommandAgent:
    spec = AgentSpec(
        format=1,
        name="prog",
        description="A program.",
        skills=[SkillSpec(id="s", name="S", description="d", tags=["t"])],
        runtime=CommandRuntime(kind="command", **runtime),
    ).read_from(tmp_path / "prog.yaml")
    assert isinstance(spec.runtime, CommandRuntime)
    return CommandAgent(spec.name, spec.runtime, tmp_path)


def python(code: str) -> list[str]:
    return ["{python}", "-c", textwrap.dedent(code)]


async def run(agent: CommandAgent, call: AgentCall | None = None) -> tuple[Reply, RecordingEmitter]:
    emit = RecordingEmitter()
    sink: Emitter = emit
    async with asyncio.timeout(WAIT_S):
        return await agent(call or AgentCall(text="hello"), sink), emit


def pids_in(emit: RecordingEmitter) -> list[int]:
    return [int(m) for text in emit.progress_messages for m in re.findall(r"pid (\d+)", text)]


async def all_gone(pids: list[int], within: float = 5.0) -> bool:
    """Whether every process of ``pids`` stops running within ``within`` seconds.

    SIGKILL reaches a process that is not ours to wait for (a child of the program) a moment later:
    nothing signals its end to us, so /proc is looked at until then.
    """
    async with asyncio.timeout(within):
        while not all(gone(pid) for pid in pids):  # noqa: ASYNC110 (see the docstring)
            await asyncio.sleep(0.02)
    return True


def gone(pid: int) -> bool:
    """Whether process ``pid`` no longer runs (a zombie waiting for its reaper has stopped running)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


async def test_text_on_stdin_and_stdout_as_the_reply(tmp_path: Path) -> None:
    agent = command_agent(tmp_path, argv=python("import sys; print(sys.stdin.read().upper(), end='')"))
    reply, emit = await run(agent)
    assert reply.state == "completed" and reply.text == "HELLO" and reply.artifact_name == "stdout"
    assert emit.progress_messages[0].startswith("prog: started python")


class GoOnSeeing(RecordingEmitter):
    """Creates the file ``go`` once an artifact chunk says ``first``: the program waits for it."""

    def __init__(self, go: Path) -> None:
        super().__init__()
        self.go = go

    async def artifact(self, name: str, **kwargs: Any) -> None:
        await super().artifact(name, **kwargs)
        if "first" in (kwargs.get("text") or ""):
            self.go.touch()


async def test_stdout_streams_into_its_artifact_as_it_is_written(tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = f"""\
        import pathlib, sys, time
        print("first", flush=True)
        deadline = time.monotonic() + 20
        while not pathlib.Path({str(go)!r}).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        print("second")
        """
    emit = GoOnSeeing(go)
    sink: Emitter = emit
    async with asyncio.timeout(WAIT_S):
        reply = await command_agent(tmp_path, argv=python(code))(AgentCall(text=""), sink)
    assert reply.state == "completed" and reply.text == "first\nsecond\n"
    assert emit.chunks() == [("stdout", "first\n", False, False), ("stdout", "second\n", True, False)]


async def test_json_in_and_out(tmp_path: Path) -> None:
    code = """\
        import json, sys
        got = json.load(sys.stdin)
        names = [f["name"] for f in got["files"]]
        json.dump({"words": len(got["text"].split()), "files": names, "data": got["data"]}, sys.stdout)
        """
    agent = command_agent(tmp_path, argv=python(code), input_format="json", output="json")
    call = AgentCall(text="a b c", files=(FileInput("x.txt", text="x"),), data=({"k": 1},))
    reply, _ = await run(agent, call)
    assert reply.state == "completed" and reply.data == {"words": 3, "files": ["x.txt"], "data": [{"k": 1}]}


async def test_stdout_that_is_not_json_fails_saying_so(tmp_path: Path) -> None:
    reply, _ = await run(command_agent(tmp_path, argv=python("print('plain words')"), output="json"))
    assert reply.state == "failed" and "standard output is not JSON" in reply.text and "plain words" in reply.text


async def test_files_are_written_under_their_own_names_and_passed_as_arguments(tmp_path: Path) -> None:
    code = "import sys, pathlib; print(' '.join(f'{a}={pathlib.Path(a).read_text()}' for a in sys.argv[1:]))"
    agent = command_agent(tmp_path, argv=[*python(code), "{input}"], input="file")
    files = (FileInput("../../etc/a.txt", text="one"), FileInput("a.txt", raw=b"two"))
    reply, _ = await run(agent, AgentCall(text="", files=files))
    assert reply.text.strip() == "a.txt=one 2-a.txt=two", "names are stripped of folders and made unique"


async def test_a_failing_exit_code_fails_the_task_with_the_end_of_stderr(tmp_path: Path) -> None:
    code = "import sys; sys.stderr.write('x' * 5000 + ' the real reason'); sys.exit(3)"
    reply, emit = await run(command_agent(tmp_path, argv=python(code)))
    assert reply.state == "failed" and reply.text.startswith("prog: exited with code 3: ...")
    assert reply.text.endswith("the real reason") and len(reply.text) < 2100
    assert [a["name"] for a in emit.artifacts] == ["stderr"]


async def test_only_the_allowed_environment_reaches_the_program(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SB_ALLOWED", "yes")
    monkeypatch.setenv("SB_SECRET", "never")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    agent = command_agent(tmp_path, argv=python(code), env=["SB_ALLOWED", "SB_UNSET"], set_env={"MODE": "test"})
    reply, _ = await run(agent)
    seen = json.loads(reply.text)
    seen.pop("LC_CTYPE", None)  # Python's own locale coercion may set it in the child
    assert seen == {"SB_ALLOWED": "yes", "MODE": "test"}


async def test_the_working_directory_is_relative_to_the_agent_file(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    agent = command_agent(tmp_path, argv=python("import os; print(os.getcwd(), end='')"), cwd="work")
    reply, _ = await run(agent)
    assert reply.text == str(tmp_path / "work")


async def test_a_command_that_does_not_exist_fails_naming_it(tmp_path: Path) -> None:
    reply, _ = await run(command_agent(tmp_path, argv=["no-such-program-anywhere", "--help"]))
    assert reply.state == "failed"
    assert reply.text == "prog: command 'no-such-program-anywhere' was not found (argv[0] of the agent file)"


async def test_a_program_writing_gigabytes_is_stopped_at_the_cap(tmp_path: Path) -> None:
    code = """\
        import sys
        block = b"x" * 65536
        while True:
            sys.stdout.buffer.write(block)
        """
    agent = command_agent(tmp_path, argv=python(code), max_output_bytes=1_000_000)
    reply, emit = await run(agent)
    assert reply.state == "failed" and "wrote more than 1000000 bytes (max_output_bytes)" in reply.text
    assert all(gone(pid) for pid in pids_in(emit))


async def test_a_program_and_its_child_that_ignore_sigterm_are_killed_at_the_timeout(tmp_path: Path) -> None:
    code = f"IGNORE_SIGTERM_AND_SLEEP = {IGNORE_SIGTERM_AND_SLEEP!r}\n" + textwrap.dedent(
        """\
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c", IGNORE_SIGTERM_AND_SLEEP])
        sys.stderr.write(f"child {child.pid}\\n"); sys.stderr.flush()
        time.sleep(600)
        """
    )
    agent = command_agent(tmp_path, argv=python(code), timeout_s=6, kill_grace_s=0.5)  # two interpreters start first
    reply, emit = await run(agent)
    assert reply.state == "failed" and "did not finish within 6s; it was stopped" in reply.text
    child = int(re.findall(r"child (\d+)", emit.artifacts[0]["text"])[0])
    assert await all_gone([*pids_in(emit), child]), "SIGKILL reached the whole group"


async def test_the_ruff_example_agent_lints_a_file_over_jsonrpc_and_grpc(tmp_path: Path) -> None:
    source = PLANTED.read_text(encoding="utf-8")
    async with running_gateway(make_settings(tmp_path, agents=EXAMPLES, mcp_tools=["*"])) as gateway:
        for binding in (BY_ID["jsonrpc"], BY_ID["grpc"]):
            async with a2a_client(gateway.agent_url("ruff-check"), binding) as client:
                message = user_message("")
                del message.parts[:]
                message.parts.append(Part(raw=source.encode(), filename="planted.py", media_type="text/x-python"))
                async with asyncio.timeout(WAIT_S):
                    [response] = [r async for r in client.send_message(SendMessageRequest(message=message))]
            task = response.task
            assert task.status.state == TaskState.TASK_STATE_COMPLETED, task.status
            [artifact] = [a for a in task.artifacts if a.name == "stdout"]
            findings = MessageToDict(artifact.parts[0].data)
            assert {f["code"] for f in findings} >= {"F401"}, findings
            assert {Path(f["filename"]).name for f in findings} == {"planted.py"}, "the file keeps its name"


async def test_a_canceled_task_stops_the_program(tmp_path: Path) -> None:
    folder = tmp_path / "agents"
    folder.mkdir()
    (folder / "sleeper.yaml").write_text(
        textwrap.dedent("""\
            format: 1
            name: sleeper
            description: Ignores SIGTERM and sleeps.
            skills: [{id: s, name: S, description: d, tags: [t]}]
            runtime:
              kind: command
              argv: ["{python}", "-c", "import signal, time; signal.signal(15, signal.SIG_IGN); time.sleep(600)"]
              kill_grace_s: 0.5
            """),
        encoding="utf-8",
    )
    async with (
        running_gateway(make_settings(tmp_path, agents=folder, mcp_tools=["*"])) as gateway,
        a2a_client(gateway.agent_url("sleeper"), BY_ID["jsonrpc-sse"]) as client,
    ):
        pid, task_id = 0, ""
        async with asyncio.timeout(WAIT_S):
            stream = client.send_message(SendMessageRequest(message=user_message("zzz")))
            async for event in stream:
                if event.HasField("status_update"):
                    task_id = event.status_update.task_id
                    text = " ".join(p.text for p in event.status_update.status.message.parts)
                    if found := re.findall(r"pid (\d+)", text):
                        pid = int(found[0])
                        break
            await stream.aclose()
            canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
            task = await client.get_task(GetTaskRequest(id=task_id))
    assert canceled.status.state == task.status.state == TaskState.TASK_STATE_CANCELED
    assert pid and gone(pid), f"pid {pid} still runs after the cancel"


async def test_the_ruff_example_agent_is_an_mcp_tool(tmp_path: Path) -> None:
    files = [{"name": "planted.py", "content": PLANTED.read_text(encoding="utf-8")}]
    async with running_gateway(make_settings(tmp_path, agents=EXAMPLES, mcp_tools=["*"])) as gateway:
        client = McpClient(f"{gateway.url}/mcp", read_timeout_seconds=60)
        async with client, asyncio.timeout(WAIT_S):
            result = await client.call_tool("ruff_check", {"files": files})
    assert not result.is_error, result.content
    outcome = result.structured_content or {}
    assert outcome["state"] == "completed", outcome
    [findings] = [a["data"] for a in outcome["artifacts"] if a.get("data") is not None]
    assert "F401" in {f["code"] for f in findings}, findings
