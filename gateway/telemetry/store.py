"""Store latency: the gateway's ``DeferredDatabase`` with each call timed
(``switchboard_store_duration_seconds{op}``) and, inside a traced request, a span (background polls make none)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from gateway.store.database import DeferredDatabase, Params
from gateway.telemetry import metrics, tracing

_WRITE, _WRITE_MANY, _FETCH_ONE, _FETCH_ALL, _SCAN = (
    metrics.STORE_DURATION.labels(op) for op in ("write", "write_many", "fetch_one", "fetch_all", "scan")
)


class MeasuredDatabase(DeferredDatabase):
    """A ``DeferredDatabase`` whose calls are measured; the opened database (``.db``) is the real one."""

    async def write(self, sql: str, params: Params = ()) -> int:
        """Run one statement in its own committed transaction (measured)."""
        started = time.perf_counter()
        with tracing.child_span("store write"):
            try:
                return await self.db.write(sql, params)
            finally:
                _WRITE.observe(time.perf_counter() - started)

    async def write_many(self, statements: Sequence[tuple[str, Params]]) -> None:
        """Run several statements in one committed transaction (measured)."""
        started = time.perf_counter()
        with tracing.child_span("store write_many"):
            try:
                await self.db.write_many(statements)
            finally:
                _WRITE_MANY.observe(time.perf_counter() - started)

    async def fetch_one(self, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
        """The first row (measured)."""
        started = time.perf_counter()
        with tracing.child_span("store fetch_one"):
            try:
                return await self.db.fetch_one(sql, params)
            finally:
                _FETCH_ONE.observe(time.perf_counter() - started)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows (measured)."""
        started = time.perf_counter()
        with tracing.child_span("store fetch_all"):
            try:
                return await self.db.fetch_all(sql, params)
            finally:
                _FETCH_ALL.observe(time.perf_counter() - started)

    async def scan(self, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
        """All rows of a read that may visit many rows (measured)."""
        started = time.perf_counter()
        with tracing.child_span("store scan"):
            try:
                return await self.db.scan(sql, params)
            finally:
                _SCAN.observe(time.perf_counter() - started)
