"""An agent for the team pattern's tests."""

from __future__ import annotations

from gateway.runtime import AgentCall, Emitter, Reply


async def upper(call: AgentCall, emit: Emitter) -> Reply:
    """Answers the text in capitals."""
    return Reply(text=call.text.upper())
