"""The audit trail's table on both dialects: pruned past its retention, read by `switchboard audit`, and
admin actions the CLI takes recorded (gateway/telemetry/audit.py, audit_cli.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.store import open_database
from gateway.telemetry.audit import AuditLog
from gateway.telemetry.audit_cli import since_ns
from tests.store.test_task_store import pg_schema_dsn  # noqa: F401  (a fixture)

DAY_NS = 86_400 * 10**9


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


async def _record_old_and_new(url: str) -> int:
    """Two rows, 10 days apart; prunes with a 7-day retention; how many it deleted."""
    db = await open_database(url)
    clock = Clock(since_ns("1d"))
    trail = AuditLog(db, retention_s=7 * 86_400, clock=clock)
    try:
        clock.now_ns -= 10 * DAY_NS
        trail.record("call", caller="apikey:old", agent="echo", binding="jsonrpc", method="SendMessage", outcome="ok")
        await trail.flush()
        clock.now_ns += 10 * DAY_NS
        trail.record("refusal", caller="anonymous", agent="echo", outcome="refused", detail="no credentials")
        await trail.flush()
        return await trail.prune()
    finally:
        await db.close()


def _cli_rows(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict[str, str]]:
    capsys.readouterr()
    assert main(["audit", "--json", "--since", "30d", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_rows_past_the_retention_are_pruned_and_the_rest_read_back(
    dialect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    if dialect == "sqlite":
        url, where = f"sqlite:///{tmp_path / 'switchboard.db'}", ["--data-dir", str(tmp_path)]
    else:
        url = request.getfixturevalue("pg_schema_dsn")
        where = ["--database-url", url]
    assert asyncio.run(_record_old_and_new(url)) == 1
    rows = _cli_rows(capsys, *where)
    assert [(r["kind"], r["caller"], r["detail"]) for r in rows] == [("refusal", "anonymous", "no credentials")]
    assert _cli_rows(capsys, *where, "--caller", "apikey:old") == []


def test_key_rotation_is_recorded_as_an_admin_action(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "list", "--data-dir", str(tmp_path)]) == 0  # the first key, generated
    assert main(["keys", "rotate", "--data-dir", str(tmp_path)]) == 0
    rows = _cli_rows(capsys, "--data-dir", str(tmp_path))
    assert [(r["kind"], r["method"], r["caller"]) for r in rows] == [("admin", "keys.rotate", "cli")]


def test_a_since_that_is_no_time_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit", "--data-dir", str(tmp_path), "--since", "yesterday-ish"]) == 2
    assert "--since" in capsys.readouterr().err
