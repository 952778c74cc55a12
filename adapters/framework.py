"""What every framework adapter shares: an agent framework's run as a ``(call, emit) -> Reply`` runtime.

An adapter (``adapters.langgraph``, ``adapters.openai_agents``...) subclasses ``FrameworkAdapter``
and turns one A2A message into the framework's run, yielding plain events as the framework
streams them; the base maps those onto the task:

- ``TextDelta``: chunks of the ``result`` artifact, as they come (with ``chunk_interval_s`` set, those
  that come that soon after the last chunk are gathered into one; the reply's text is their sum,
  unless an ``Answer`` says otherwise);
- ``Status``, ``ToolCall``, ``ToolResult``: working status updates (progress, on MCP too);
- ``TokensUsed``: added up into the reply's usage, which budgets of workflow runs count (priced by
  the file's ``input_price_per_1k``/``output_price_per_1k``, default the llm price settings);
- ``Artifact``: an artifact of the framework's own;
- ``InputRequired``: the task waits for input (A2A ``input-required``; an MCP caller is asked
  through elicitation); the caller's answer comes as the next call on the same task, with
  ``call.task_id`` and ``call.context_id`` unchanged, and the adapter resumes the framework's
  run (state it must keep between turns goes in ``self.waiting``, keyed by task id);
- ``Answer``: the final answer (text or data).

A framework that raises mid-stream fails the task with its reason (and the usage so far). A cancel
(A2A ``CancelTask``, an MCP cancel, a workflow's) cancels the asyncio task reading the stream, closes
the framework's stream and then calls ``cancel`` for what the framework stops on its own terms.
When the gateway stops, ``aclose`` lets go of what the framework holds beyond a run (a runner's
toolsets, sessions, threads).
"""

from __future__ import annotations

import asyncio
import logging
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from a2a.server.agent_execution import AgentExecutor
from pydantic import BaseModel, ConfigDict, ValidationError

from adapters.python import import_string
from gateway.errors import GatewayError, RuntimeLoadError
from gateway.hosting.cleanup import finish
from gateway.hosting.executor import RuntimeExecutor
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall, Emitter, Reply, Usage
from gateway.spec import AgentSpec, FrameworkRuntime

logger = logging.getLogger(__name__)

MAX_WAITING = 1000
"""Runs waiting for input an adapter remembers at most (the oldest is forgotten first)."""
CHUNK_INTERVAL_S = 0.05
"""What an adapter's ``chunk_interval_s`` may be: deltas within 50 ms of the last chunk go into the next."""
YES = frozenset({"y", "yes", "true", "ok", "approve", "approved", "confirm", "allow"})
"""Answers that approve a tool call a run waits on (any other text declines it)."""
ARGUMENTS_SHOWN = 200
"""Characters of a tool call's arguments shown in its progress message."""


class ModelUnavailableError(GatewayError):
    """A framework's model answered 429 or 5xx: the same call may succeed later."""

    message = "the framework's model is temporarily unavailable"
    reason = "model-unavailable"
    retryable: ClassVar[bool] = True


@dataclass(frozen=True)
class TextDelta:
    """A piece of the agent's answer, streamed."""

    text: str


@dataclass(frozen=True)
class Status:
    """Something the agent is doing, for the caller to watch."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """The agent calls a tool (or hands off inside the framework)."""

    name: str
    arguments: str = ""


@dataclass(frozen=True)
class ToolResult:
    """A tool call's outcome."""

    name: str
    output: str = ""
    error: bool = False


@dataclass(frozen=True)
class TokensUsed:
    """Tokens one model call used (added to the run's total)."""

    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class Artifact:
    """An artifact the framework produced."""

    name: str
    text: str | None = None
    data: dict[str, Any] | list[Any] | None = None


@dataclass(frozen=True)
class InputRequired:
    """The run waits for the caller: ``question`` is what it asks."""

    question: str


@dataclass(frozen=True)
class Answer:
    """The run's final answer (default: the text deltas joined)."""

    text: str = ""
    data: dict[str, Any] | list[Any] | None = None


FrameworkEvent = TextDelta | Status | ToolCall | ToolResult | TokensUsed | Artifact | InputRequired | Answer


@dataclass(frozen=True)
class Prices:
    """Price per 1000 tokens, for the cost of a run."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0

    def usage(self, input_tokens: int, output_tokens: int) -> Usage:
        """Usage with its cost."""
        cost = (input_tokens * self.input_per_1k + output_tokens * self.output_per_1k) / 1000
        return Usage(input_tokens, output_tokens, cost)


class NoOptions(BaseModel):
    """An adapter that takes no options."""

    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T")


class Recent(Generic[T]):
    """A bounded map by key: past its limit the least recently put is forgotten first."""

    def __init__(self, limit: int = MAX_WAITING) -> None:
        self._items: OrderedDict[str, T] = OrderedDict()
        self._limit = limit

    def put(self, key: str, value: T) -> None:
        """Remember ``value`` for ``key``, as the most recently used."""
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self._limit:
            self._forgot(*self._items.popitem(last=False))

    def take(self, key: str) -> T | None:
        """What was put for ``key`` (once), or None."""
        return self._items.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def remembered(self) -> list[str]:
        """The keys remembered now, the least recently put first."""
        return list(self._items)

    def _forgot(self, key: str, value: T) -> None:
        """Called with what was dropped to stay within the limit."""


class Waiting(Recent[T]):
    """What a run waiting for input needs to resume, by task id; dropping one is warned about (its answer fails)."""

    def _forgot(self, key: str, value: T) -> None:
        logger.warning("forgot the waiting run of task %s: more than %d runs wait for input", key, self._limit)


class TextArtifact:
    """Streams text deltas as chunks of one artifact.

    Deltas that come within ``interval_s`` of the last chunk are gathered into the next one (a fast
    model's tokens become a few chunks, not one event each, while a slow one's still show as they
    come), and one chunk is held back so that the last can say it is.
    """

    def __init__(self, emit: Emitter, name: str, interval_s: float) -> None:
        self._emit, self._name, self._interval_s = emit, name, interval_s
        self._pending: list[str] = []
        self._held: str | None = None
        self._started = False
        self._cut_at = time.monotonic()

    async def add(self, delta: str) -> None:
        """Take one delta (sent now, or gathered with the next ones)."""
        self._pending.append(delta)
        now = time.monotonic()
        if now - self._cut_at < self._interval_s:
            return
        if self._held is not None:
            await self._send(self._held, last=False)
        self._held, self._pending, self._cut_at = "".join(self._pending), [], now

    async def close(self) -> None:
        """Send what is left as the last chunk."""
        rest = (self._held or "") + "".join(self._pending)
        self._held, self._pending = None, []
        if rest:
            await self._send(rest, last=True)

    async def _send(self, text: str, *, last: bool) -> None:
        # The first chunk creates the artifact; the SDK refuses an append to one that does not exist.
        await self._emit.artifact(self._name, text=text, append=self._started, last_chunk=last)
        self._started = True


@dataclass
class _Turn:
    """What one turn of a run has said so far."""

    text: list[str] = field(default_factory=list)
    tokens: list[int] = field(default_factory=lambda: [0, 0])
    reply: Reply | None = None


class FrameworkAdapter(ABC):
    """One hosted framework agent as a ``(call, emit) -> Reply`` runtime (see the module).

    Subclasses set ``framework`` (the runtime kind), ``Options`` (a pydantic model of the file's
    ``options``), may override ``accepts`` (whether an object is the framework's agent) and
    ``cancel``, and implement ``stream``.
    """

    framework: ClassVar[str] = ""
    Options: ClassVar[type[BaseModel]] = NoOptions
    chunk_interval_s: ClassVar[float] = 0.0
    """Gather deltas that come within this long of the last chunk (``CHUNK_INTERVAL_S``); 0: one chunk each."""

    def __init__(
        self, name: str, agent: Any, options: BaseModel, prices: Prices = Prices(), folder: Path | None = None
    ) -> None:
        self.name = name
        self.agent = agent
        self.options = options
        self.prices = prices
        self.folder = folder or Path.cwd()  # the agent file's: relative paths in its options are from here
        self.waiting: Waiting[Any] = Waiting()

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """Whether ``obj`` is an agent of this framework (else, if callable, it is called to make one)."""
        return True

    @abstractmethod
    def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        """The framework's run for ``call`` (a first message, or an answer to its question), as events."""

    async def cancel(self, call: AgentCall) -> None:
        """Stop what the framework runs beyond the stream (closed already when this is called)."""
        self.waiting.take(call.task_id)

    async def forget(self, task_id: str) -> None:
        """The task was canceled while it waited for input: ``cancel`` what is left of its run."""
        await self.cancel(AgentCall(text="", task_id=task_id))

    async def aclose(self) -> None:
        """The gateway stops (its runs were canceled already): the runs still waiting for input are
        forgotten, as a cancel would. Subclasses add what their framework holds beyond a run."""
        for task_id in self.waiting.remembered():
            await self.forget(task_id)

    async def __call__(self, call: AgentCall, emit: Emitter) -> Reply:
        """Run ``call`` on the framework, mapping its events onto the task."""
        turn = _Turn()
        artifact = TextArtifact(emit, Reply.artifact_name, self.chunk_interval_s)
        events = self.stream(call)
        try:
            async for event in events:
                await self._apply(event, turn, artifact, emit)
                if turn.reply is not None:
                    break
        except asyncio.CancelledError:
            await finish(_closed(events))
            await finish(self.cancel(call))
            raise
        except Exception as exc:
            logger.exception("%s agent %s raised on task %s", self.framework, self.name, call.task_id)
            status = getattr(exc, "status_code", None)
            if isinstance(status, int) and (status == 429 or status >= 500):
                # the model is overloaded or down: the engine may retry the step (RuntimeExecutor says so)
                raise ModelUnavailableError(
                    f"the {self.framework} agent's model answered HTTP {status}: {exc}"
                ) from exc
            turn.reply = Reply(
                text=f"{self.name}: the {self.framework} agent raised {type(exc).__name__}: {exc}", state="failed"
            )
        finally:
            await artifact.close()
        await _closed(events)
        reply = turn.reply or Reply(text="".join(turn.text))
        tokens = turn.tokens
        usage = self.prices.usage(tokens[0], tokens[1]) if any(tokens) else None
        return replace(reply, usage=usage) if usage is not None else reply

    async def _apply(self, event: FrameworkEvent, turn: _Turn, artifact: TextArtifact, emit: Emitter) -> None:
        match event:
            case TextDelta(text=text) if text:
                turn.text.append(text)
                await artifact.add(text)
            case Status(text=text):
                await emit.progress(f"{self.name}: {text}")
            case ToolCall(name=tool, arguments=arguments):
                shown = arguments if len(arguments) <= ARGUMENTS_SHOWN else arguments[:ARGUMENTS_SHOWN] + "..."
                await emit.progress(f"{self.name}: calling {tool}({shown})")
            case ToolResult(name=tool, error=error):
                await emit.progress(f"{self.name}: {tool} {'failed' if error else 'returned'}")
            case TokensUsed(input_tokens=given, output_tokens=made):
                turn.tokens[0] += given
                turn.tokens[1] += made
            case Artifact(name=name, text=text, data=data):
                await emit.artifact(name, text=text, data=data)
            case InputRequired(question=question):
                turn.reply = Reply(text=question, state="input-required")
            case Answer(text=text, data=data):
                turn.reply = Reply(text=text or "".join(turn.text), data=data)


async def _closed(events: AsyncIterator[FrameworkEvent]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()


def says_yes(text: str) -> bool:
    """Whether the caller's answer to an approval question approves (``YES``, any case, a final . or !)."""
    return text.strip().lower().rstrip(".!") in YES


def prices_for(runtime: FrameworkRuntime, host: Host) -> Prices:
    """The file's prices, else the llm price settings."""
    settings = host.settings
    given_in, given_out = runtime.input_price_per_1k, runtime.output_price_per_1k
    return Prices(
        settings.llm_input_price_per_1k if given_in is None else given_in,
        settings.llm_output_price_per_1k if given_out is None else given_out,
    )


def load_agent(spec: AgentSpec, adapter: type[FrameworkAdapter]) -> Any:
    """The framework agent the file names (its module may sit beside the file); a factory is called."""
    runtime = spec.runtime
    assert isinstance(runtime, FrameworkRuntime)
    obj = import_string(runtime.agent, spec)
    if not adapter.accepts(obj) and callable(obj):
        try:
            obj = obj()
        except Exception as exc:  # the factory's own error, or not a factory at all (it takes arguments)
            raise RuntimeLoadError(f"{spec.where}: {runtime.agent}() raised {type(exc).__name__}: {exc}") from exc
    if not adapter.accepts(obj):
        kind = f"a {type(obj).__name__}, not a {adapter.framework} agent"
        raise RuntimeLoadError(f"{spec.where}: {runtime.agent} is {kind}")
    return obj


def build_adapter(spec: AgentSpec, host: Host, adapter: type[FrameworkAdapter]) -> FrameworkAdapter:
    """``adapter`` over the agent ``spec`` names, with its options checked."""
    runtime = spec.runtime
    assert isinstance(runtime, FrameworkRuntime)
    try:
        options = adapter.Options.model_validate(runtime.options)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise RuntimeLoadError(f"{spec.where}: runtime.options: {problems}") from exc
    folder = spec.file.parent if spec.file is not None else None
    return adapter(spec.name, load_agent(spec, adapter), options, prices_for(runtime, host), folder)


def build_framework(spec: AgentSpec, host: Host, adapter: type[FrameworkAdapter]) -> AgentExecutor:
    """The executor of a framework agent: ``adapter`` under ``RuntimeExecutor``."""
    return RuntimeExecutor(spec.name, build_adapter(spec, host, adapter))
