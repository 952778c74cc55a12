"""Your own Python agent: a module beside the agent file, plain functions, and errors that name the file."""

from __future__ import annotations

import sys
import textwrap
import uuid
from pathlib import Path

import pytest
from a2a.types.a2a_pb2 import TaskState

from gateway.errors import RuntimeLoadError
from gateway.hosting.registry import load_spec
from gateway.hosting.runtimes import StandaloneHost, build_executor
from gateway.testing import running_gateway
from tests.bindings.a2a_clients import BINDINGS, a2a_client, artifact_texts, send
from tests.conftest import make_settings

STREAMING = next(b for b in BINDINGS if b.id == "jsonrpc-sse")


def agent_folder(tmp_path: Path, entrypoint: str, module: str, source: str, name: str = "mine") -> Path:
    """An agents folder holding ``<name>.yaml`` and ``<module>.py`` beside it."""
    folder = tmp_path / "agents"
    folder.mkdir(exist_ok=True)
    (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(
        textwrap.dedent(f"""\
            format: 1
            name: {name}
            description: My own agent.
            skills: [{{id: s, name: S, description: d, tags: [t]}}]
            runtime: {{kind: python, entrypoint: "{entrypoint}"}}
            """),
        encoding="utf-8",
    )
    return folder


def unique(prefix: str) -> str:
    # sys.modules outlives a test: each test's module gets a name of its own
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def test_a_plain_function_beside_the_agent_file_answers_over_a2a(tmp_path: Path) -> None:
    module = unique("shout")
    source = """\
        import threading

        def run(call, emit):
            where = "main" if threading.current_thread() is threading.main_thread() else "a worker thread"
            emit.progress("shouting in " + where)
            return call.text.upper()
        """
    folder = agent_folder(tmp_path, f"{module}:run", module, source)
    assert str(folder) not in sys.path, "nothing set PYTHONPATH for it"
    async with (
        running_gateway(make_settings(tmp_path, agents=folder)) as gateway,
        a2a_client(gateway.agent_url("mine"), STREAMING) as client,
    ):
        task, events = await send(client, "hello")
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert artifact_texts(task) == ["HELLO"]
    progress = [p.text for e in events if e.HasField("status_update") for p in e.status_update.status.message.parts]
    assert "shouting in a worker thread" in progress, progress


def build(folder: Path, name: str = "mine") -> object:
    return build_executor(load_spec(folder / f"{name}.yaml"), StandaloneHost())


def test_an_async_function_returning_data_is_a_runtime(tmp_path: Path) -> None:
    module = unique("data")
    folder = agent_folder(tmp_path, f"{module}:run", module, "async def run(call):\n    return {'n': len(call.text)}\n")
    assert type(build(folder)).__name__ == "RuntimeExecutor"


def test_a_missing_module_names_the_agent_file(tmp_path: Path) -> None:
    folder = agent_folder(tmp_path, "nowhere_to_be_found:run", unique("other"), "x = 1\n")
    with pytest.raises(RuntimeLoadError, match=r"mine\.yaml: cannot import module 'nowhere_to_be_found'"):
        build(folder)


def test_an_import_error_inside_the_module_names_the_agent_file_and_the_cause(tmp_path: Path) -> None:
    module = unique("broken")
    folder = agent_folder(tmp_path, f"{module}:run", module, "import not_installed_anywhere\n")
    with pytest.raises(RuntimeLoadError, match=r"mine\.yaml: .*No module named 'not_installed_anywhere'"):
        build(folder)


def test_a_syntax_error_names_the_agent_file(tmp_path: Path) -> None:
    module = unique("typo")
    folder = agent_folder(tmp_path, f"{module}:run", module, "def run(call:\n")
    with pytest.raises(RuntimeLoadError, match=r"mine\.yaml: cannot import module .*SyntaxError"):
        build(folder)


def test_a_missing_attribute_names_the_agent_file(tmp_path: Path) -> None:
    module = unique("noattr")
    folder = agent_folder(tmp_path, f"{module}:run", module, "def other(call):\n    return ''\n")
    with pytest.raises(RuntimeLoadError, match=rf"mine\.yaml: module '{module}' has no attribute 'run'"):
        build(folder)


def test_an_executor_class_its_options_do_not_fit_names_the_agent_file(tmp_path: Path) -> None:
    module = unique("badinit")
    source = """\
        from a2a.server.agent_execution import AgentExecutor

        class Mine(AgentExecutor):
            def __init__(self, greeting):
                self.greeting = greeting

            async def execute(self, context, event_queue):
                pass

            async def cancel(self, context, event_queue):
                pass
        """
    folder = agent_folder(tmp_path, f"{module}:Mine", module, source)
    with pytest.raises(RuntimeLoadError, match=rf"mine\.yaml: {module}:Mine\(\*\*options\) failed: .*'greeting'"):
        build(folder)


def test_something_that_is_not_an_agent_says_what_to_write(tmp_path: Path) -> None:
    module = unique("notagent")
    folder = agent_folder(tmp_path, f"{module}:VALUE", module, "VALUE = 42\n")
    with pytest.raises(RuntimeLoadError, match=r"mine\.yaml: .*write `async def run\(call, emit\) -> Reply`"):
        build(folder)


def test_a_module_shadowed_by_an_installed_one_is_refused_naming_both(tmp_path: Path) -> None:
    folder = agent_folder(tmp_path, "json:dumps", "json", "def dumps(call):\n    return 'mine'\n")
    with pytest.raises(RuntimeLoadError, match=r"mine\.yaml: module 'json' beside the agent file is shadowed by"):
        build(folder)
