"""A LISTEN session on PostgreSQL that comes back after it drops.

The cluster's notifications only wake (the events and cancels are rows in their tables), so a
dropped session costs latency, never an event: while it is down, followers and the cancel poll
read the tables every ``POLL_S`` as they always do; once it is back, ``on_reconnect`` wakes every
follower to read at once what it may have missed. A PostgreSQL restart, a failover or a proxy
that cut the connection ends in the same place: listening again, with nothing lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

Notified = Callable[[object, int, str, str], None]
"""asyncpg's listener callback: (connection, server pid, channel, payload)."""
RETRY_FIRST_S = 0.1
RETRY_MAX_S = 5.0


class Listener:
    """One LISTEN connection on ``channels``, reconnected (with backoff) whenever it drops."""

    def __init__(self, dsn: Callable[[], str], channels: dict[str, Notified], on_reconnect: Callable[[], None]) -> None:
        self._dsn = dsn
        self._channels = channels
        self._on_reconnect = on_reconnect
        self._conn: Any = None
        self._dropped = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        """Set while the session listens."""
        self.reconnects = 0
        """How many times the session came back after a drop."""

    async def start(self) -> None:
        """Connect and listen (raises when PostgreSQL cannot be reached now); keep listening from then on."""
        await self._connect()
        self._keeper = asyncio.ensure_future(self._keep())

    async def close(self) -> None:
        """Stop listening."""
        if self._keeper is not None:
            self._keeper.cancel()
            await asyncio.gather(self._keeper, return_exceptions=True)
            self._keeper = None
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()
        self.connected.clear()

    @property
    def server_pid(self) -> int | None:
        """The listening session's backend pid (None while down)."""
        return int(self._conn.get_server_pid()) if self._conn is not None and not self._conn.is_closed() else None

    async def _connect(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self._dsn())
        try:
            for channel, callback in self._channels.items():
                await conn.add_listener(channel, callback)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._terminated)
        self._conn = conn
        self._dropped.clear()
        self.connected.set()

    def _terminated(self, conn: object) -> None:
        if conn is self._conn:
            self.connected.clear()
            self._dropped.set()

    async def _keep(self) -> None:
        while True:
            await self._dropped.wait()
            logger.warning("the cluster's LISTEN session dropped; reconnecting (followers poll meanwhile)")
            old, self._conn = self._conn, None
            if old is not None:
                old.terminate()
            delay = RETRY_FIRST_S
            while True:
                try:
                    await self._connect()
                    break
                except Exception as exc:  # any connection failure: PostgreSQL down or restarting
                    logger.info("cluster LISTEN: cannot reconnect yet (%s); retrying in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, RETRY_MAX_S)
            self.reconnects += 1
            logger.warning("the cluster's LISTEN session is back (reconnect %d)", self.reconnects)
            self._on_reconnect()
