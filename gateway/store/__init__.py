"""Persistence: one ``Database`` seam (SQLite by default, PostgreSQL by DSN) and the stores on it."""

from __future__ import annotations

from gateway.store.database import Database
from gateway.store.tasks import SqlPushConfigStore, SqlTaskStore, fail_interrupted


async def open_database(url: str) -> Database:
    """Open the database named by ``url`` (``sqlite:///path`` or ``postgresql://...``) and create its tables."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteDatabase

        db: Database = SqliteDatabase(url.removeprefix("sqlite:///"))
    elif url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgres import PostgresDatabase

        db = await PostgresDatabase.connect(url)
    else:
        raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")
    await db.migrate()
    return db


__all__ = ["Database", "SqlPushConfigStore", "SqlTaskStore", "fail_interrupted", "open_database"]
