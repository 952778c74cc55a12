"""The framework adapters' shared base: each kind of framework event onto the task, failures and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.framework import (
    Answer,
    Artifact,
    FrameworkAdapter,
    FrameworkEvent,
    InputRequired,
    Prices,
    Status,
    TextDelta,
    TokensUsed,
    ToolCall,
    ToolResult,
    build_adapter,
    says_yes,
)
from gateway.errors import RuntimeLoadError
from gateway.hosting import runtimes
from gateway.hosting.runtimes import StandaloneHost, build_executor
from gateway.runtime import AgentCall, Emitter, Reply, Usage
from gateway.spec import AgentSpec, FrameworkRuntime, SkillSpec
from gateway.testing import RecordingEmitter

WAIT_S = 10.0


class ScriptedAdapter(FrameworkAdapter):
    """Yields the events it is given, then (optionally) waits until canceled."""

    framework = "scripted"
    chunk_interval_s = 0.0  # every delta its own chunk

    def __init__(self, events: list[FrameworkEvent | Exception], *, hang: bool = False) -> None:
        super().__init__("bot", object(), FrameworkAdapter.Options(), Prices(1.0, 2.0))
        self.events, self.hang = events, hang
        self.started, self.closed = asyncio.Event(), asyncio.Event()
        self.canceled: list[str] = []

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        try:
            for event in self.events:
                if isinstance(event, Exception):
                    raise event
                yield event
            self.started.set()
            if self.hang:
                await asyncio.Event().wait()
        finally:
            self.closed.set()

    async def cancel(self, call: AgentCall) -> None:
        self.canceled.append(call.task_id)


async def run(adapter: FrameworkAdapter, emit: RecordingEmitter | None = None) -> tuple[Reply, RecordingEmitter]:
    emit = emit or RecordingEmitter()
    sink: Emitter = emit
    async with asyncio.timeout(WAIT_S):
        return await adapter(AgentCall(text="hi", task_id="t1"), sink), emit


async def test_deltas_stream_as_chunks_and_tools_show_as_progress() -> None:
    adapter = ScriptedAdapter(
        [
            Status("planning"),
            ToolCall("search", '{"q": "x"}'),
            ToolResult("search", "found"),
            TokensUsed(100, 10),
            TextDelta("Hel"),
            TextDelta("lo"),
            TokensUsed(50, 5),
            Artifact("notes", data={"k": 1}),
        ]
    )
    reply, emit = await run(adapter)
    assert reply == Reply(text="Hello", usage=Usage(150, 15, (150 * 1.0 + 15 * 2.0) / 1000))
    assert emit.progress_messages == ["bot: planning", 'bot: calling search({"q": "x"})', "bot: search returned"]
    chunks = [c for c in emit.chunks() if c[0] == "result"]
    assert chunks == [("result", "Hel", False, False), ("result", "lo", True, True)]
    assert [a["data"] for a in emit.artifacts if a["name"] == "notes"] == [{"k": 1}]


async def test_deltas_close_together_are_gathered_into_one_chunk() -> None:
    adapter = ScriptedAdapter([TextDelta("a"), TextDelta("b"), TextDelta("c")])
    adapter.chunk_interval_s = 60.0
    reply, emit = await run(adapter)
    assert reply.text == "abc" and emit.chunks() == [("result", "abc", False, True)]


async def test_a_question_leaves_the_task_waiting_for_input() -> None:
    reply, _ = await run(ScriptedAdapter([TextDelta("thinking..."), InputRequired("Which city?"), TextDelta("never")]))
    assert reply.state == "input-required" and reply.text == "Which city?"


async def test_an_answer_overrides_the_deltas() -> None:
    reply, _ = await run(ScriptedAdapter([TextDelta("draft"), Answer(data={"city": "Oslo"})]))
    assert reply.state == "completed" and reply.data == {"city": "Oslo"} and reply.text == "draft"


async def test_a_framework_that_raises_mid_stream_fails_with_the_reason_and_the_usage_so_far() -> None:
    adapter = ScriptedAdapter([TokensUsed(7, 3), TextDelta("part"), RuntimeError("model exploded")])
    reply, emit = await run(adapter)
    assert reply.state == "failed"
    assert reply.text == "bot: the scripted agent raised RuntimeError: model exploded"
    assert reply.usage is not None and (reply.usage.input_tokens, reply.usage.output_tokens) == (7, 3)
    assert emit.chunks() == [("result", "part", False, True)], "the streamed chunk is closed"
    assert adapter.closed.is_set()


async def test_cancel_closes_the_stream_and_calls_the_frameworks_cancel() -> None:
    adapter = ScriptedAdapter([TextDelta("working")], hang=True)
    running = asyncio.ensure_future(run(adapter))
    async with asyncio.timeout(WAIT_S):
        await adapter.started.wait()
    running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await running
    assert adapter.closed.is_set() and adapter.canceled == ["t1"]


def test_an_approval_is_one_of_the_yes_words_in_any_case_with_a_final_stop() -> None:
    assert [says_yes(t) for t in ("Yes.", " confirm ", "ALLOW!", "ok")] == [True, True, True, True]
    assert [says_yes(t) for t in ("no", "yesterday", "", "not ok")] == [False, False, False, False]


class Picky(FrameworkAdapter):
    framework = "picky"

    @classmethod
    def accepts(cls, obj: object) -> bool:
        return isinstance(obj, str)

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        yield Answer(self.agent)


def spec_for(tmp_path: Path, agent: str, options: dict[str, object] | None = None) -> AgentSpec:
    runtime = FrameworkRuntime(kind="langgraph", agent=agent, options=options or {})
    skill = SkillSpec(id="s", name="S", description="d", tags=["t"])
    return AgentSpec(format=1, name="fw", description="d", skills=[skill], runtime=runtime).read_from(
        tmp_path / "fw.yaml"
    )


def test_an_object_of_another_kind_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=r"fw\.yaml: json:JSONDecoder is a JSONDecoder, not a picky agent"):
        build_adapter(spec_for(tmp_path, "json:JSONDecoder"), StandaloneHost(), Picky)


def test_a_factory_that_raises_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=r"fw\.yaml: json:dumps\(\) raised TypeError: .*'obj'"):
        build_adapter(spec_for(tmp_path, "json:dumps"), StandaloneHost(), Picky)


def test_a_framework_not_installed_names_the_file_and_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def not_installed(name: str) -> None:
        raise ModuleNotFoundError("No module named 'langgraph'", name="langgraph")

    monkeypatch.setattr(runtimes.importlib, "import_module", not_installed)
    with pytest.raises(RuntimeLoadError, match=r"fw\.yaml: .*pip install 'switchboard-gateway\[langgraph\]'"):
        build_executor(spec_for(tmp_path, "os:sep"), StandaloneHost())


def test_unknown_options_are_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeLoadError, match=r"fw\.yaml: runtime.options: colour: Extra inputs"):
        build_adapter(spec_for(tmp_path, "os:sep", {"colour": "red"}), StandaloneHost(), Picky)
