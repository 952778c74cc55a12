"""Cleanup that must finish while its caller is being canceled, asyncio's way or anyio's.

A task's final save, a relay's cancel at its peer and a run's cancel of its child tasks run
after a ``CancelledError``. ``asyncio.shield`` keeps the work going but not the caller's wait
for it, and an anyio cancel scope (the MCP SDK cancels a request through one) cancels its task
again on every loop pass until the scope is left: an unshielded ``await`` in an ``except
CancelledError`` block is itself canceled, and the steps after it never run. ``finish`` runs the
work as a task of its own, shields the caller from anyio's re-delivery, absorbs asyncio's, and
waits until the work is done or its time is up; a cancel that came meanwhile is raised on after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import anyio

T = TypeVar("T")

CLEANUP_TIMEOUT_S = 30.0
"""How long a cleanup step may take before it is given up on (a store or peer that does not answer)."""


async def finish(work: Awaitable[T], within: float = CLEANUP_TIMEOUT_S) -> T:
    """Await ``work`` to its end even while the calling task is being canceled; its result.

    ``work`` runs as an asyncio task of its own, which no cancel of the caller reaches. Once it
    is done, a cancel the caller got meanwhile is raised (the same ``CancelledError``, so an
    anyio scope recognises its own); otherwise ``work``'s result or exception is. After
    ``within`` seconds ``work`` is canceled and ``TimeoutError`` raised (or the caller's cancel).
    """
    inner = asyncio.ensure_future(work)
    canceled: asyncio.CancelledError | None = None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    with anyio.CancelScope(shield=True):  # anyio stops re-delivering its scope's cancel in here
        while not inner.done() and (left := deadline - loop.time()) > 0:
            try:
                await asyncio.wait({inner}, timeout=left)
            except asyncio.CancelledError as exc:  # an asyncio cancel (delivered once): remembered, raised after
                canceled = canceled or exc
    if not inner.done():
        inner.cancel()
        inner.add_done_callback(_retrieve)
        if canceled is not None:
            raise canceled
        raise TimeoutError(f"cleanup did not finish within {within:g}s")
    if canceled is not None:
        _retrieve(inner)
        raise canceled
    return inner.result()


def _retrieve(future: asyncio.Future[object]) -> None:
    """Mark an abandoned cleanup's outcome as seen (its failure is the caller's to log, not asyncio's)."""
    if not future.cancelled():
        future.exception()
