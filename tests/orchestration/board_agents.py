"""Agents for blackboard tests: each reads the board from its data part and may send back a write."""

from __future__ import annotations

from typing import Any

from gateway.runtime import AgentCall, Emitter, Reply, Runtime


def board_of(call: AgentCall) -> dict[str, Any]:
    """The ``blackboard`` view a turn gets (empty when the call has none: a follow-up answer)."""
    for part in call.data:
        if isinstance(part.get("blackboard"), dict):
            return dict(part["blackboard"])
    return {}


def write(base: int, **values: Any) -> dict[str, Any]:
    return {"write": {"base_version": base, "set": values}}


def drafter(key: str, text: str) -> Runtime:
    """Writes ``text`` under ``key`` when the board has none yet."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        view = board_of(call)
        if key in view["board"]:
            return Reply(text="nothing to add")
        return Reply(text="drafted", data=write(view["version"], **{key: text}))

    return run


def appender(key: str, suffix: str) -> Runtime:
    """Adds ``suffix`` to the text under ``key`` once."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        view = board_of(call)
        current = str(view["board"].get(key, ""))
        if suffix.strip() in current.split():
            return Reply(text="already there", data={"write": None})
        return Reply(text=f"appended {suffix.strip()}", data=write(view["version"], **{key: current + suffix}))

    return run


def approver(key: str, needs: str) -> Runtime:
    """Approves the text under ``key`` once it carries ``needs``, copying it to ``answer``."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        view = board_of(call)
        text = str(view["board"].get(key, ""))
        if needs not in text:
            return Reply(text="not yet")
        return Reply(text="approved", data=write(view["version"], verdict="approved", answer=text))

    return run


def stale(key: str) -> Runtime:
    """Always writes ``key`` as if the board were still at version 0."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        return Reply(text="stale", data=write(0, **{key: "from an old version"}))

    return run


async def garbage(call: AgentCall, emit: Emitter) -> Reply:
    """Sends a write that is not one."""
    return Reply(text="garbage", data={"write": {"base_version": "soon", "set": ["not", "a", "map"]}})


async def asker(call: AgentCall, emit: Emitter) -> Reply:
    """On its first turn asks who owns the work; the answer (a follow-up) is written under ``owner``."""
    view = board_of(call)
    if view:
        return Reply(text="who owns this?", state="input-required")
    return Reply(text=f"owner: {call.text}", data=write(0, owner=call.text))


def logging_drafter(log: str, key: str, text: str) -> Runtime:
    """A ``drafter`` that records each turn's board version in ``log`` (it survives a restart)."""
    inner = drafter(key, text)

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        _append(log, f"turn on version {board_of(call).get('version')}")
        return await inner(call, emit)

    return run


def _append(log: str, line: str) -> None:
    with open(log, "a") as out:
        out.write(f"{line}\n")
