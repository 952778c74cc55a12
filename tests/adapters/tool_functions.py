"""Python functions an ``llm`` agent file offers its model as tools (``tools: [{function: ...}]``)."""

from __future__ import annotations

import asyncio


def multiply(a: float, b: float) -> float:
    """Multiplies two numbers."""
    return a * b


async def lookup(key: str) -> dict[str, str]:
    """Looks up a key in the team directory."""
    return {"key": key, "owner": "platform-team"}


def broken(path: str) -> str:
    """Reads a file (and always fails)."""
    raise FileNotFoundError(f"no such file: {path}")


async def forever() -> str:
    """Never returns."""
    await asyncio.Event().wait()
    return "unreachable"
