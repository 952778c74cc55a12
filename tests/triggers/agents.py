"""Agents for trigger tests: each call is appended to a log file (one JSON line), which a test reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from gateway.runtime import AgentCall, Emitter, Reply, Runtime

MODULE = "tests.triggers.agents"


def inbox(log: str, delay_s: float = 0.0) -> Runtime:
    """Records what it got (text, data, metadata's skill), waits ``delay_s``, answers with it as data."""

    async def run(call: AgentCall, emit: Emitter) -> Reply:
        record = {"text": call.text, "data": list(call.data), "context_id": call.context_id}
        _append(Path(log), record)
        if delay_s:
            await asyncio.sleep(delay_s)
        return Reply(text=f"got {call.text or 'data'}", data={"received": record["data"], "text": call.text})

    return run


def _append(log: Path, record: dict[str, object]) -> None:
    with log.open("a") as out:
        out.write(json.dumps(record) + "\n")


def calls(log: Path) -> list[dict[str, object]]:
    """Every call ``inbox`` recorded in ``log``."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
