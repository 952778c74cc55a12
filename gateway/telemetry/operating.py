"""One app's operator surface: ``/metrics`` (or its own listener), the request middleware, the audit trail.

``/metrics`` is on the HTTP port by default. With auth on, a scrape is a caller like any other:
it must authenticate and hold ``metrics_scope`` (``metrics:read``), or it gets 401/403 (and an
audit row). ``metrics_listen`` (``host:port``) moves it to a listener of its own that serves
nothing else and asks for no credentials: for a scraper on a private network or a sidecar.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from a2a.types.a2a_pb2 import TaskState
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Scope

from gateway.auth.policy import API_KEY_HEADER, AuthPolicy
from gateway.errors import AuthenticationError, GatewayError, PermissionDeniedError, wire_for
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.telemetry import metrics, tracing
from gateway.telemetry.access import Telemetry, TelemetryMiddleware, note_refusal
from gateway.telemetry.audit import AuditLog

logger = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
TASK_COUNT_SQL = "SELECT state, COUNT(*) FROM tasks GROUP BY state"


def state_name(state: int) -> str:
    """``TASK_STATE_COMPLETED`` -> ``completed``."""
    try:
        return TaskState.Name(state).removeprefix("TASK_STATE_").lower()  # type: ignore[arg-type]
    except ValueError:
        return metrics.UNKNOWN


def caller_of(scope: Scope) -> str:
    """The admitted caller's id (``apikey:NAME``, ``ISS|SUB``), or ``""`` for an anonymous one."""
    caller = getattr(scope.get("user"), "caller", None)
    return str(getattr(caller, "name", "")) if caller is not None else ""


@dataclass
class Operating:
    """Metrics, request telemetry and the audit trail of one app."""

    settings: Settings
    auth: AuthPolicy
    db: Database
    telemetry: Telemetry
    audit: AuditLog | None
    collector: metrics.GatewayCollector | None = None
    _listener: Any = None
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, auth: AuthPolicy, db: Database, agents: Iterable[str]) -> Operating:
        """The operator surface ``settings`` ask for."""
        audit = AuditLog(db, settings.audit_retention_days * 86400) if settings.audit else None
        telemetry = Telemetry(
            list(agents),
            metrics_on=settings.metrics,
            access_log=settings.access_log,
            audit=audit,
            audit_required=settings.audit_required,
            default_grpc_agent=settings.grpc_default_agent,
        )
        return cls(settings=settings, auth=auth, db=db, telemetry=telemetry, audit=audit)

    def attach(self, sources: metrics.MetricSources) -> None:
        """Read the app's own state when scraped."""
        self.collector = metrics.GatewayCollector(sources, metrics.TaskCounts(self._count_tasks))

    async def _count_tasks(self) -> Mapping[str, int]:
        rows = await self.db.scan(TASK_COUNT_SQL)
        return {state_name(int(state)): int(count) for state, count in rows}

    def routes(self) -> list[BaseRoute]:
        """``/metrics`` on the HTTP port (none when metrics are off or served on their own listener)."""
        if not self.settings.metrics or self.settings.metrics_listen:
            return []
        return [Route(METRICS_PATH, self._scrape, methods=["GET"])]

    def middleware(self) -> list[Middleware]:
        """The request middleware, when anything is observed per request (all off: none, zero cost)."""
        if not self.telemetry.active:
            return []
        return [Middleware(TelemetryMiddleware, telemetry=self.telemetry, caller_of=caller_of)]

    async def _scrape(self, request: Request) -> Response:
        if self.auth.enabled:
            refusal = await self._refusal(request)
            if refusal is not None:
                return refusal
        assert self.collector is not None
        await self.collector.tasks.refresh()
        return Response(metrics.exposition(self.collector), media_type=metrics.CONTENT_TYPE)

    async def _refusal(self, request: Request) -> Response | None:
        try:
            headers = request.headers
            identity = await self.auth.authenticate(headers.get("authorization"), headers.get(API_KEY_HEADER))
            if self.settings.metrics_scope and self.settings.metrics_scope not in identity.scopes:
                raise PermissionDeniedError(f"{identity.name} lacks scope {self.settings.metrics_scope} for /metrics")
        except (AuthenticationError, PermissionDeniedError) as error:
            note_refusal(error.detail)
            wire = wire_for(error)
            body = {"error": {"code": wire.http_status, "status": wire.grpc_status, "message": error.detail}}
            return JSONResponse(body, status_code=wire.http_status)
        return None

    async def start(self, spawn: Callable[[Coroutine[Any, Any, None], str], None]) -> None:
        """Start the audit trail's pruning and, if configured, the metrics listener."""
        if self.audit is not None and self.settings.audit_retention_days > 0:
            spawn(self.audit.keep_pruning(), "audit:prune")
        if self.settings.metrics and self.settings.metrics_listen and self.collector is not None:
            self._listener = _listen(self.settings.metrics_listen, self.collector)
            spawn(self._keep_counting(), "metrics:tasks")

    async def _keep_counting(self) -> None:
        assert self.collector is not None
        while True:
            await self.collector.tasks.refresh()
            await asyncio.sleep(metrics.TASK_COUNT_TTL_S)

    async def stop(self) -> None:
        """Write what the audit trail holds; stop the listener."""
        if self.audit is not None:
            await self.audit.flush()
        if self._listener is not None:
            server, thread = self._listener
            server.shutdown()
            server.server_close()
            thread.join(5)
            self._listener = None

    def record_trust(self, agent: str, peer: str, health: str, problem: str) -> None:
        """A remote agent's card changed or its trust did (``Gateway.refresh_card``): an audit row."""
        if self.audit is not None:
            outcome = "ok" if health == "trusted" else health
            self.audit.record("trust", agent=agent, binding="federation", method=peer, outcome=outcome, detail=problem)


def _listen(address: str, collector: metrics.GatewayCollector) -> Any:
    from prometheus_client import start_http_server

    host, _, port = address.rpartition(":")
    try:
        return start_http_server(int(port), host.strip("[]") or "127.0.0.1", registry=metrics.union(collector))
    except (OSError, ValueError) as exc:
        raise MetricsListenError(f"cannot serve /metrics on {address!r}: {exc}") from exc


class MetricsListenError(GatewayError):
    """The metrics listener's address is not one this process can listen on."""

    message = "the metrics listener cannot start"
    reason = "metrics-listen"


def start_tracing(settings: Settings, instance: str) -> bool:
    """Tracing for this process (once), as ``OTEL_*`` says."""
    del settings  # traces are configured by the OpenTelemetry environment alone
    return tracing.setup(instance=instance)
