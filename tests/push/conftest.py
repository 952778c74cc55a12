"""A PostgreSQL database of its own per test: the outbox is shared by every gateway on a database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture
async def pg_database(pg_dsn: str) -> AsyncIterator[str]:
    """A fresh, empty database on the test server (dropped afterwards): no other test's gateway delivers from it."""
    name = f"push_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_dsn.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
