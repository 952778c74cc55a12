"""``switchboard audit``: the trail read while the gateway runs; admin actions the CLI takes, recorded.

The gateway holds its SQLite database's lock, so the CLI reads it read-only through ``sqlite3``
(WAL readers never wait for the writer) and appends an admin row through a plain connection,
as one more WAL writer. PostgreSQL is read with ``asyncpg``.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.store.database import SCHEMA, Database
from gateway.telemetry.audit import COLUMNS, INSERT, AuditEntry, iso, query_sql

_AGO = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_ns(text: str, now: float | None = None) -> int:
    """``90m``, ``24h``, ``7d`` ago, or an ISO 8601 time, as epoch nanoseconds; ``ValueError`` otherwise."""
    moment = time.time() if now is None else now
    match = _AGO.match(text)
    if match is not None:
        return int((moment - float(match.group(1)) * _UNIT_S[match.group(2)]) * 1e9)
    parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return int(parsed.timestamp() * 1e9)


def read_sqlite(path: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on a SQLite database another process may be writing."""
    if not Path(path).exists():
        return []
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []  # a database from before the audit trail
        raise
    finally:
        conn.close()


async def read_postgres(dsn: str, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
    """Rows of a query on PostgreSQL (``?`` placeholders numbered)."""
    import asyncpg

    numbers = iter(range(1, 1000))
    numbered = re.sub(r"\?", lambda _: f"${next(numbers)}", sql)
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await conn.fetch(numbered, *params)]
    except asyncpg.UndefinedTableError:
        return []  # no gateway made the table here yet (as ``read_sqlite`` answers)
    finally:
        await conn.close()


def show(store_url: str, since: str, caller: str, agent: str, limit: int, *, as_json: bool = False) -> int:
    """Print the trail's rows (oldest first) matching the filters; the exit code."""
    try:
        start = since_ns(since)
    except ValueError:
        sys.stderr.write(f"switchboard audit: --since {since!r} is neither 90m/24h/7d nor an ISO 8601 time\n")
        return 2
    sql, params = query_sql(start, caller, agent, max(limit, 1))
    if store_url.startswith("sqlite:///"):
        rows = read_sqlite(store_url.removeprefix("sqlite:///"), sql, params)
    else:
        rows = asyncio.run(read_postgres(store_url, sql, params))
    if not rows and not as_json:
        sys.stderr.write("switchboard audit: no entries match\n")
    for row in reversed(rows):
        entry = AuditEntry(*row)
        if as_json:
            sys.stdout.write(json.dumps(entry.json(), ensure_ascii=False) + "\n")
        else:
            task = f" task={entry.task_id}" if entry.task_id else ""
            detail = f" ({entry.detail})" if entry.detail else ""
            where = f"{entry.binding} {entry.method}".strip()
            sys.stdout.write(
                f"{iso(entry.at_ns)} {entry.kind:<7} {entry.outcome:<8} {entry.caller} -> {entry.agent or '-'}"
                f"{'/' + entry.skill if entry.skill else ''} {where}{task}{detail}\n"
            )
    return 0


def _admin_row(action: str, detail: str) -> tuple[Any, ...]:
    """The audit row of an admin action the CLI took."""
    return (time.time_ns(), "admin", "cli", "", "", "", "cli", action, "ok", detail)


def record_admin(data_dir: Path, action: str, detail: str) -> None:
    """Append an admin row (``keys.rotate``, ``keys.retire``) to the data dir's SQLite database; a failure is said."""
    path = data_dir / "switchboard.db"
    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(next(sql for sql in SCHEMA if "TABLE IF NOT EXISTS audit" in sql))
            conn.execute(INSERT, _admin_row(action, detail))
        finally:
            conn.close()
    except sqlite3.Error as exc:
        sys.stderr.write(f"switchboard: {action} done, but not recorded in the audit trail: {exc}\n")


async def record_admin_on(db: Database, action: str, detail: str) -> None:
    """Append an admin row to ``db`` (the replicas' trail), whose audit table exists; a failure is said."""
    try:
        await db.write(INSERT, _admin_row(action, detail))
    except Exception as exc:  # any driver error: the action itself is done
        sys.stderr.write(f"switchboard: {action} done, but not recorded in the audit trail: {exc}\n")


__all__ = [
    "COLUMNS",
    "read_postgres",
    "read_sqlite",
    "record_admin",
    "record_admin_on",
    "show",
    "since_ns",
]
