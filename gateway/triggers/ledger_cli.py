"""``switchboard triggers``: the events triggers received, the runs they started and the dead letters, read
while the gateway runs (read-only, as ``switchboard audit`` reads its trail)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from gateway.telemetry.audit import iso
from gateway.telemetry.audit_cli import read_postgres, read_sqlite, since_ns


def query_sql(start_ns: int, agent: str, trigger: str, dead: bool, limit: int) -> tuple[str, list[Any]]:
    """The newest ``limit`` events since ``start_ns`` matching the filters."""
    clauses, params = ["received_ns >= ?"], [start_ns]
    for column, value in (("agent", agent), ("trigger_name", trigger)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    if dead:
        clauses.append("state = 'dead'")
    sql = (
        "SELECT received_ns, agent, trigger_name, event_id, state, task_id, reason FROM trigger_events "
        f"WHERE {' AND '.join(clauses)} ORDER BY received_ns DESC LIMIT {max(limit, 1)}"
    )
    return sql, params


def show(store_url: str, since: str, agent: str, trigger: str, *, dead: bool, limit: int, as_json: bool) -> int:
    """Print the matching events, oldest first; the exit code."""
    try:
        start = since_ns(since)
    except ValueError:
        sys.stderr.write(f"switchboard triggers: --since {since!r} is neither 90m/24h/7d nor an ISO 8601 time\n")
        return 2
    sql, params = query_sql(start, agent, trigger, dead, limit)
    if store_url.startswith("sqlite:///"):
        rows = read_sqlite(store_url.removeprefix("sqlite:///"), sql, params)
    else:
        rows = asyncio.run(read_postgres(store_url, sql, params))
    if not rows and not as_json:
        sys.stderr.write("switchboard triggers: no events match\n")
    for at_ns, agent_name, trigger_name, event_id, state, task_id, reason in reversed(rows):
        if as_json:
            entry = {"at": iso(at_ns), "agent": agent_name, "trigger": trigger_name, "eventId": event_id}
            entry.update(state=state, taskId=task_id, reason=reason)
            sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
        else:
            outcome = f"task={task_id}" if task_id else reason
            sys.stdout.write(f"{iso(at_ns)} {agent_name}/{trigger_name} {state:<7} {event_id} {outcome}\n")
    return 0
