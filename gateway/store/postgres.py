"""PostgreSQL through an asyncpg pool, for several replicas sharing one database."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import asyncpg

from gateway.store.database import ADDED_COLUMNS, SCHEMA, Params, check_storable

_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """Turn the stores' ``?`` placeholders into PostgreSQL's ``$1, $2, ...``."""
    counter = iter(range(1, 10_000))
    return _PLACEHOLDER.sub(lambda _: f"${next(counter)}", sql)


def _count(status: str) -> int:
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresDatabase:
    """A shared database; asyncpg commits each statement unless it runs in a transaction."""

    dialect = "postgresql"
    exclusive = False  # replicas share it

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, dsn: str, *, min_size: int = 2, max_size: int = 10) -> PostgresDatabase:
        """Open a pool on ``dsn``."""
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        return cls(pool)

    async def migrate(self) -> None:
        """Create the tables if they do not exist (serialised across replicas by an advisory lock)."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(7245061)")
            for sql in SCHEMA:
                await conn.execute(sql.format(blob="BYTEA"))
            for table, column, kind in ADDED_COLUMNS:
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own transaction."""
        check_storable(((sql, params),))
        status = await self._pool.execute(_numbered(sql), *params)
        return _count(status)

    async def write_many(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements in one transaction (rolled back whole on any error, by asyncpg)."""
        check_storable(statements)
        async with self._pool.acquire() as conn, conn.transaction():
            for sql, params in statements:
                await conn.execute(_numbered(sql), *params)

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row, or None."""
        row = await self._pool.fetchrow(_numbered(sql), *params)
        return tuple(row) if row is not None else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows."""
        return [tuple(r) for r in await self._pool.fetch(_numbered(sql), *params)]

    async def scan(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows of a read that may visit many of them (asyncpg never blocks the loop on one)."""
        return await self.fetch_all(sql, params)

    async def close(self) -> None:
        """Close the pool."""
        await self._pool.close()
