"""``gateway.hosting.cleanup.finish``: cleanup runs to its end under asyncio's and anyio's cancellation, bounded."""

from __future__ import annotations

import asyncio

import anyio
import pytest

from gateway.hosting.cleanup import finish

WAIT_S = 10.0


class Cleanup:
    """A cleanup step that needs several loop passes (a save, a call to a peer) and records that it finished."""

    def __init__(self, passes: int = 20) -> None:
        self.passes = passes
        self.entered = asyncio.Event()
        self.finished = asyncio.Event()

    async def __call__(self) -> str:
        self.entered.set()
        for _ in range(self.passes):
            await asyncio.sleep(0)
        self.finished.set()
        return "done"


async def test_cleanup_under_an_anyio_cancel_scope_finishes_and_the_scope_still_ends() -> None:
    cleanup = Cleanup()
    after: list[str] = []

    async def caller() -> None:
        try:
            await asyncio.Event().wait()
        except anyio.get_cancelled_exc_class():
            await finish(cleanup())
            after.append("reached")  # the code after the cleanup runs too
            raise

    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(caller)
            await asyncio.sleep(0)
            group.cancel_scope.cancel()

    assert cleanup.finished.is_set() and after == ["reached"]


async def test_an_unshielded_cleanup_is_what_an_anyio_cancel_cuts_short() -> None:
    """The failure ``finish`` exists for: the same cleanup awaited plainly never finishes."""
    cleanup = Cleanup()

    async def caller() -> None:
        try:
            await asyncio.Event().wait()
        except anyio.get_cancelled_exc_class():
            await cleanup()
            raise

    with anyio.fail_after(WAIT_S):
        async with anyio.create_task_group() as group:
            group.start_soon(caller)
            await asyncio.sleep(0)
            group.cancel_scope.cancel()

    assert cleanup.entered.is_set() and not cleanup.finished.is_set()


async def test_a_cancel_during_the_cleanup_is_raised_once_it_finished() -> None:
    cleanup = Cleanup(passes=50)
    caller = asyncio.ensure_future(finish(cleanup()))
    await asyncio.wait_for(cleanup.entered.wait(), WAIT_S)

    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(caller, WAIT_S)

    assert cleanup.finished.is_set()


async def test_the_cleanups_result_or_error_reaches_the_caller() -> None:
    async def broken() -> None:
        raise ValueError("the store refused")

    assert await finish(Cleanup()()) == "done"
    with pytest.raises(ValueError, match="the store refused"):
        await finish(broken())


async def test_a_cleanup_that_hangs_is_given_up_after_its_time() -> None:
    stopped = asyncio.Event()

    async def hangs() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()

    with pytest.raises(TimeoutError, match=r"within 0\.05s"):
        await finish(hangs(), 0.05)
    await asyncio.wait_for(stopped.wait(), WAIT_S)
