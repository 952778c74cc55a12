"""A PostgreSQL database of its own per test: the outbox is shared by every gateway on a database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest


@asynccontextmanager
async def fresh_pg_database(dsn: str) -> AsyncIterator[str]:
    """A new, empty database on the server of ``dsn`` (its DSN), dropped when the block ends."""
    name = f"push_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pg_database(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh database for one test: no other test's gateway delivers from its outbox."""
    async with fresh_pg_database(pg_dsn) as dsn:
        yield dsn
