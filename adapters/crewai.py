"""The ``crewai`` runtime: a CrewAI ``Crew`` served as an A2A agent.

``runtime.agent`` names a ``Crew`` (or a function returning one). Each A2A task kicks off a copy
of it (a crew holds the state of one run) with the message as its inputs: the text under
``options.input_key`` (default ``request``, so task descriptions say ``{request}``) and the keys of a
data part beside it. The crew runs in a thread of its own, and its progress maps onto the task: each
task's start and end as progress and each task's output as an artifact (``task-<n>``), each tool use
(an agent step) as progress, the crew's final output as the reply (its JSON output as data), and the
crew's token usage to the run's usage.

Human in the loop: a CrewAI task with ``human_input=True`` asks for feedback on its answer, which
CrewAI reads from the terminal; here the task goes ``input-required`` with the answer, and the caller's
follow-up is the feedback (``ok``, ``yes``, ``accept`` or an empty text accepts the answer; anything else
is sent back to the agent, which revises and asks again). A question unanswered for
``options.input_timeout_s`` (default an hour) ends the run.

Cancel: CrewAI has no cancel, so the run is stopped where CrewAI lets a hook stop it: its next model
call is refused (a global ``before_llm_call`` hook), its next step or task callback raises, and a
pending question is withdrawn. A model call already under way ends first.

CrewAI asks on the terminal, on a user's first run, whether to share traces; a server has no terminal,
so the adapter answers no the first time (set ``CREWAI_TRACING_ENABLED=true`` or ``Crew(tracing=True)``
to trace). Its anonymous telemetry stays CrewAI's to configure (``CREWAI_DISABLE_TELEMETRY=true``).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import queue
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from a2a.server.agent_execution import AgentExecutor
from crewai import Crew, CrewOutput, TaskOutput
from crewai.agents.agent_builder.base_agent_executor_mixin import CrewAgentExecutorMixin
from crewai.agents.parser import AgentAction
from crewai.events.listeners.tracing import utils as tracing
from crewai.events.listeners.tracing.trace_listener import TraceCollectionListener
from crewai.hooks import LLMCallHookContext, register_before_llm_call_hook
from pydantic import BaseModel, ConfigDict, Field

from adapters.framework import (
    Answer,
    Artifact,
    FrameworkAdapter,
    FrameworkEvent,
    InputRequired,
    Status,
    TokensUsed,
    ToolCall,
    ToolResult,
    build_framework,
)
from gateway.hosting.runtimes import Host
from gateway.runtime import AgentCall
from gateway.spec import AgentSpec

logger = logging.getLogger(__name__)

ACCEPT = frozenset({"", "ok", "okay", "yes", "y", "accept", "approve", "approved", "lgtm"})
SHOWN = 80
"""Characters of a task's description shown in progress."""
CLOSE_TIMEOUT_S = 10.0
"""How long the gateway's stop waits for the threads of the crews it stopped."""


class CrewAiOptions(BaseModel):
    """The ``options`` of a ``crewai`` agent file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_key: str = Field(default="request", pattern=r"^[A-Za-z_]\w*$", description="the input the text goes in")
    input_timeout_s: float = Field(default=3600.0, gt=0, description="how long a question waits for its answer")


class CrewCanceledError(Exception):
    """Raised inside a crew's thread to stop it (its task was canceled, or a question went unanswered)."""


@dataclass(frozen=True)
class _Finished:
    """The crew's thread ended: its output, or what it raised."""

    output: CrewOutput | None = None
    error: BaseException | None = None


_RUN: contextvars.ContextVar[_CrewRun | None] = contextvars.ContextVar("switchboard_crew_run", default=None)


class _CrewRun:
    """One kickoff in a thread of its own, its events crossing to the gateway's loop."""

    def __init__(self, crew: Crew, inputs: dict[str, Any], timeout_s: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._events: asyncio.Queue[FrameworkEvent | _Finished] = asyncio.Queue()
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._timeout_s = timeout_s
        self.canceled = threading.Event()
        self.crew, self.inputs = crew, inputs
        self.done = threading.Event()
        self._watch(crew)

    def start(self) -> None:
        context = contextvars.copy_context()
        context.run(_RUN.set, self)
        threading.Thread(target=context.run, args=(self._work,), name="crewai-run", daemon=True).start()

    def _work(self) -> None:
        try:
            self.put(self._task_status(1))
            output = self.crew.kickoff(inputs=self.inputs)
            if not isinstance(output, CrewOutput):  # a streaming crew (Crew(stream=True)) answers chunk by chunk
                raise TypeError(
                    f"the crew answered a {type(output).__name__}; give the gateway a Crew without stream=True"
                )
            self._put(_Finished(output=output))
        except BaseException as exc:
            self._put(_Finished(error=exc))
        finally:
            self.done.set()

    def _put(self, item: FrameworkEvent | _Finished) -> None:
        self._loop.call_soon_threadsafe(self._events.put_nowait, item)

    def put(self, event: FrameworkEvent | None) -> None:
        """Send ``event`` to the task (from the crew's thread), unless the run was canceled."""
        self.check()
        if event is not None:
            self._put(event)

    def check(self) -> None:
        """Stop the crew's thread here if its task was canceled."""
        if self.canceled.is_set():
            raise CrewCanceledError("the task was canceled")

    def ask(self, question: str) -> str:
        """Ask the caller (from the crew's thread) and wait for the answer."""
        self.put(InputRequired(question))
        try:
            answer = self._answers.get(timeout=self._timeout_s)
        except queue.Empty:
            raise CrewCanceledError(f"no answer came within {self._timeout_s:g}s") from None
        if answer is None:
            raise CrewCanceledError("the task was canceled while it waited for an answer")
        return answer

    def answer(self, text: str) -> None:
        """The caller's answer to the pending question."""
        self._answers.put(text)

    def cancel(self) -> None:
        """Stop the run at its next model call, step or callback; withdraw a pending question."""
        self.canceled.set()
        self._answers.put(None)

    async def events(self) -> AsyncIterator[FrameworkEvent]:
        """The run's events up to its next question or its end."""
        while True:
            item = await self._events.get()
            if isinstance(item, _Finished):
                for event in _finished(item):
                    yield event
                return
            yield item
            if isinstance(item, InputRequired):
                return

    # -- what the crew's callbacks report (in its thread) --

    def _watch(self, crew: Crew) -> None:
        for n, task in enumerate(crew.tasks, start=1):
            task.callback = _chained(functools.partial(self._task_done, n), task.callback)
        for agent in crew.agents:
            agent.step_callback = _chained(self._step, getattr(agent, "step_callback", None))  # type: ignore[attr-defined]

    def _task_status(self, n: int) -> Status | None:
        if n > len(self.crew.tasks):
            return None
        task = self.crew.tasks[n - 1]
        role = task.agent.role if task.agent is not None else "the crew"
        return Status(f"task {n}/{len(self.crew.tasks)} · {role}: {_short(self._filled(task.description))}")

    def _filled(self, text: str) -> str:
        # The first task's status goes out before kickoff fills its {placeholders} in.
        for key, value in self.inputs.items():
            text = text.replace("{" + key + "}", str(value))
        return text

    def _task_done(self, n: int, output: TaskOutput) -> None:
        self.put(Status(f"task {n}/{len(self.crew.tasks)} · {output.agent}: done"))
        self.put(Artifact(f"task-{n}", text=output.raw))
        self.put(self._task_status(n + 1))

    def _step(self, step: Any) -> None:
        if isinstance(step, AgentAction):
            self.put(ToolCall(step.tool, step.tool_input))
            self.put(ToolResult(step.tool, str(step.result or "")))
        else:
            self.check()


def _chained(first: Callable[[Any], None], then: Callable[[Any], Any] | None) -> Callable[[Any], None]:
    def both(value: Any) -> None:
        first(value)
        if then is not None:
            then(value)

    return both


def _short(text: str) -> str:
    line = re.sub(r"\s+", " ", text).strip()
    return line if len(line) <= SHOWN else line[: SHOWN - 1] + "…"


def _finished(item: _Finished) -> list[FrameworkEvent]:
    if item.error is not None:
        raise item.error
    output = item.output
    assert output is not None
    usage = output.token_usage
    events: list[FrameworkEvent] = [TokensUsed(usage.prompt_tokens, usage.completion_tokens)]
    return [*events, Answer(text=output.raw, data=output.json_dict or None)]


# -- CrewAI's hooks, installed once: each acts only inside a gateway's run --


def _ask_human_input(self: CrewAgentExecutorMixin, final_answer: str) -> str:
    run = _RUN.get()
    if run is None:
        return _terminal_input(self, final_answer)
    task = getattr(self, "task", None)
    role = getattr(getattr(self, "agent", None), "role", "the agent")
    about = f" on {_short(task.description)!r}" if task is not None else ""
    question = f"{role}'s answer{about}:\n\n{final_answer}\n\nReply ok to accept it, or say what to change."
    answer = run.ask(question)
    return "" if answer.strip().lower() in ACCEPT else answer


def _refuse_when_canceled(context: LLMCallHookContext) -> bool | None:
    run = _RUN.get()
    return False if run is not None and run.canceled.is_set() else None


_terminal_input = CrewAgentExecutorMixin._ask_human_input
CrewAgentExecutorMixin._ask_human_input = _ask_human_input  # type: ignore[method-assign]
register_before_llm_call_hook(_refuse_when_canceled)


def _decline_first_run_tracing() -> None:
    if not tracing.is_first_execution():
        return
    tracing.mark_first_execution_done(user_consented=False)
    # The trace listener (one per process) read "first run" when CrewAI was imported; it would still ask.
    TraceCollectionListener().first_time_handler.is_first_time = False
    logger.warning(
        "CrewAI's first-run question about sharing traces was answered no (a gateway has no terminal); "
        "set CREWAI_TRACING_ENABLED=true or Crew(tracing=True) to trace"
    )


_decline_first_run_tracing()


class CrewAiAdapter(FrameworkAdapter):
    """A CrewAI ``Crew``, a copy kicked off per A2A task."""

    framework: ClassVar[str] = "crewai"
    Options: ClassVar[type[BaseModel]] = CrewAiOptions

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._runs: set[_CrewRun] = set()  # kicked off, their threads maybe still running

    @classmethod
    def accepts(cls, obj: object) -> bool:
        """A ``Crew``."""
        return isinstance(obj, Crew)

    async def aclose(self) -> None:
        """The gateway stops: the questions crews wait on are withdrawn, the crews still running stopped, and
        their threads waited for (up to ``CLOSE_TIMEOUT_S``: a thread stops at its next step or model call)."""
        await super().aclose()
        running = [run for run in self._runs if not run.done.is_set()]
        for run in running:
            run.cancel()
        if not await asyncio.to_thread(_all_done, running, CLOSE_TIMEOUT_S):
            logger.warning(
                "%s: a crew's thread was still running %gs after the gateway stopped it", self.name, CLOSE_TIMEOUT_S
            )

    async def stream(self, call: AgentCall) -> AsyncIterator[FrameworkEvent]:
        """A new kickoff, or the answer to the question a running kickoff waits on."""
        run: _CrewRun | None = self.waiting.take(call.task_id)
        if run is None:
            options = self.options
            assert isinstance(options, CrewAiOptions)
            inputs = {key: value for data in call.data for key, value in data.items()}
            inputs[options.input_key] = call.text
            run = _CrewRun(self.agent.copy(), inputs, options.input_timeout_s)
            self._runs = {each for each in self._runs if not each.done.is_set()}
            self._runs.add(run)
            run.start()
        else:
            run.answer(call.text)
        last: FrameworkEvent | None = None
        try:
            async for event in run.events():
                last = event
                if isinstance(event, InputRequired):
                    self.waiting.put(call.task_id, run)
                yield event
        except BaseException:
            # Canceled (or closed) mid-run: stop the crew. Closed after its question or its answer: nothing to stop.
            if not isinstance(last, InputRequired | Answer):
                run.cancel()
            raise

    async def cancel(self, call: AgentCall) -> None:
        """Withdraw the question the task's crew waits on (a running crew was stopped as its stream closed)."""
        run = self.waiting.take(call.task_id)
        if run is not None:
            run.cancel()


def _all_done(runs: list[_CrewRun], within_s: float) -> bool:
    """Whether the threads of ``runs`` all end within ``within_s`` (waited on in a thread)."""
    deadline = time.monotonic() + within_s
    return all(run.done.wait(max(0.0, deadline - time.monotonic())) for run in runs)


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The executor for a ``crewai`` agent file."""
    return build_framework(spec, host, CrewAiAdapter)
