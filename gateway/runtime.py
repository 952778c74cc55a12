"""The contract between the gateway and an agent runtime.

A runtime is an async callable ``(call, emit) -> Reply``. It receives what the caller sent
(text, files, structured data, earlier turns of the same task), may report progress and emit
artifacts while it works, and returns one ``Reply``. The executor (``gateway.hosting.executor``) maps
all of this onto the A2A task lifecycle, so a runtime never touches protocol objects unless it
wants to (a runtime may instead be an a2a ``AgentExecutor`` for full control).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

ReplyState = Literal["completed", "input-required", "failed", "rejected"]


@dataclass(frozen=True)
class FileInput:
    """One file the caller sent: inline bytes (decoded to ``text`` when UTF-8) or a URL."""

    name: str
    media_type: str = ""
    text: str | None = None
    raw: bytes | None = None
    url: str | None = None


@dataclass(frozen=True)
class FileOutput:
    """A file a runtime returns: its bytes, media type and name (an A2A file part)."""

    name: str
    raw: bytes
    media_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Turn:
    """An earlier message of the same task, reduced to what a runtime needs."""

    role: Literal["user", "agent"]
    text: str


def entrypoint_of(logic: Callable[..., object]) -> str:
    """The ``module:attr`` an agent file names ``logic`` by (``gateway.agents.security:run``)."""
    return f"{logic.__module__}:{logic.__qualname__}"


def _anyone_may(entrypoint_or_agent: str) -> str | None:
    return None


@dataclass(frozen=True)
class AgentCall:
    """What one A2A message asks of an agent.

    ``reuse_refusal`` says why the caller may not have this agent run another agent's logic
    in-process (the entry point of that agent's file), or None when it may: reusing an agent's
    logic is checked as a call to that agent would be (see ``may_reuse``). ``call_refusal`` says why
    the caller may not have this agent hand its work to (or call) another hosted agent by name, or None
    when it may: what a runtime offers its model, and what it follows, is what the caller could call.
    """

    text: str
    files: tuple[FileInput, ...] = ()
    data: tuple[dict[str, Any], ...] = ()
    history: tuple[Turn, ...] = ()
    task_id: str = ""
    context_id: str = ""
    message_id: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    owner: str = ""  # the task's owner as the store records it: a context id is the caller's to choose, not proof
    reuse_refusal: Callable[[str], str | None] = field(default=_anyone_may, compare=False, repr=False)
    call_refusal: Callable[[str], str | None] = field(default=_anyone_may, compare=False, repr=False)

    @property
    def conversation(self) -> str:
        """The key of state a runtime keeps across a conversation: its context, within its owner's.

        A context id is chosen by the caller; keyed by it alone, another caller naming the same context
        would continue (and read) someone else's conversation.
        """
        return f"{self.owner}/{self.context_id or self.task_id}"

    def may_reuse(self, logic: Callable[..., object]) -> str | None:
        """Why the caller may not have ``logic`` (another agent's entry point) run for it here; None: it may."""
        return self.reuse_refusal(entrypoint_of(logic))

    def may_call(self, agent: str) -> str | None:
        """Why the caller may not have ``agent`` (a hosted agent's name) run through this one; None: it may."""
        return self.call_refusal(agent)


@dataclass(frozen=True)
class Usage:
    """Token usage and cost a runtime reports, for budgets."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost: float = 0.0


def add_usage(total: Usage | None, more: Usage | None) -> Usage | None:
    """The sum of two usages (None when neither reported any)."""
    if more is None:
        return total
    if total is None:
        return more
    return Usage(
        total.input_tokens + more.input_tokens, total.output_tokens + more.output_tokens, total.cost + more.cost
    )


@dataclass(frozen=True)
class Reply:
    """The outcome of one call.

    ``text`` becomes the status message (and a text artifact when ``data`` is absent);
    ``data`` becomes a structured data artifact named ``artifact_name``. ``input-required``
    leaves the task waiting for a follow-up message, which arrives as a new call whose
    ``history`` holds the earlier turns. ``handoff_to`` names the agent this one transfers to
    (an LLM's ``transfer_to_<agent>`` tool call); orchestration decides whether to follow it.
    """

    text: str = ""
    data: dict[str, Any] | list[Any] | None = None
    state: ReplyState = "completed"
    artifact_name: str = "result"
    usage: Usage | None = None
    handoff_to: str = ""
    handoff_note: str = ""

    @property
    def is_handoff(self) -> bool:
        """Whether the agent asked to transfer the conversation (``transfer_to_<agent>``)."""
        return bool(self.handoff_to)


class Emitter(Protocol):
    """What a runtime may do while it works."""

    async def progress(self, text: str) -> None:
        """Report a working status update with a human-readable message."""

    async def artifact(
        self,
        name: str,
        *,
        text: str | None = None,
        data: dict[str, Any] | list[Any] | None = None,
        append: bool = False,
        last_chunk: bool | None = None,
        file: FileOutput | None = None,
    ) -> None:
        """Emit (or append to) an artifact: a text part, a data part and a file part, each when given."""


Runtime = Callable[[AgentCall, Emitter], Awaitable[Reply]]
