"""Every request, seen once at the edge: its span, its metrics, its access-log line and its audit row.

``TelemetryMiddleware`` wraps the HTTP app; ``Telemetry.grpc_call`` wraps each gRPC call. Both
put a ``RequestRecord`` in a context variable for the request's duration; code deeper down that
learns something the edge cannot see (the task id, the skill a message names, the MCP tool
called) writes it there (``note_task``, ``note_agent``). Nothing reads a body beyond its first
chunk, and that only to find a JSON-RPC method name or error; bodies are never logged.

The access log (logger ``switchboard.access``, INFO) is one line per request: method, path or
rpc, agent, binding, status, duration, caller id, task id. It is formatted only when that logger
is enabled. Label children of the request metrics are bound once per (agent, binding, method).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import grpc
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.logs import clip
from gateway.telemetry import metrics, tracing
from gateway.telemetry.audit import AuditLog

ACCESS = logging.getLogger("switchboard.access")
ANONYMOUS = "anonymous"
AUDITED_BINDINGS = frozenset({"jsonrpc", "rest", "grpc"})
UNAUDITED_METHODS = frozenset({"GetAgentCard"})
A2A_METHODS = frozenset(
    {
        "SendMessage",
        "SendStreamingMessage",
        "GetTask",
        "ListTasks",
        "CancelTask",
        "SubscribeToTask",
        "CreateTaskPushNotificationConfig",
        "GetTaskPushNotificationConfig",
        "ListTaskPushNotificationConfigs",
        "DeleteTaskPushNotificationConfig",
        "GetExtendedAgentCard",
        "message/send",
        "message/stream",
        "tasks/get",
        "tasks/cancel",
        "tasks/resubscribe",
        "tasks/pushNotificationConfig/set",
        "tasks/pushNotificationConfig/get",
        "tasks/pushNotificationConfig/list",
        "tasks/pushNotificationConfig/delete",
        "agent/getAuthenticatedExtendedCard",
    }
)
MCP_METHODS = frozenset(
    {
        "initialize",
        "ping",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "notifications/initialized",
        "notifications/cancelled",
        "notifications/progress",
        "notifications/roots/list_changed",
        "server/discover",
    }
)
STREAMING_METHODS = frozenset({"SendStreamingMessage", "SubscribeToTask", "message/stream", "tasks/resubscribe"})
_METHOD = re.compile(rb'"method"\s*:\s*"([A-Za-z/_]{1,64})"')
_PEEK_BYTES = 4096


class RequestRecord:
    """What is known about one request; filled in at the edge and by code deeper down."""

    __slots__ = ("agent", "binding", "caller", "detail", "method", "skill", "task_id")

    def __init__(self, agent: str, binding: str, method: str) -> None:
        self.agent = agent
        self.binding = binding
        self.method = method
        self.caller = ""
        self.task_id = ""
        self.skill = ""
        self.detail = ""


CURRENT: ContextVar[RequestRecord | None] = ContextVar("switchboard_request", default=None)


def note_task(task_id: str, skill: str = "") -> None:
    """The current request's task (the first one named wins) and the skill its message names."""
    record = CURRENT.get()
    if record is not None and not record.task_id:
        record.task_id = task_id
        record.skill = record.skill or skill
    elif record is not None and skill and not record.skill:
        record.skill = skill


def message_skill(message: Any) -> str:
    """The skill an A2A message names in ``metadata.skill`` (``""`` when none)."""
    fields = message.metadata.fields
    if "skill" not in fields:
        return ""
    return clip(fields["skill"].string_value, 64)


def note_agent(agent: str, method: str = "") -> None:
    """The agent (and method) an MCP request turned out to call."""
    record = CURRENT.get()
    if record is not None:
        record.agent = agent
        if method:
            record.method = method


def note_caller(name: str) -> None:
    """The caller the current request was admitted as (gRPC: the scope carries it on HTTP)."""
    record = CURRENT.get()
    if record is not None:
        record.caller = name


def note_refusal(detail: str) -> None:
    """Why the current request was refused (its audit row's detail)."""
    record = CURRENT.get()
    if record is not None:
        record.detail = detail


def outcome_of_status(status: int) -> str:
    """ok, error (the caller's), refused (401/403) or failed (the gateway's or a peer's)."""
    if status < 400:
        return "ok"
    if status in (401, 403):
        return "refused"
    return "error" if status < 500 else "failed"


_GRPC_OUTCOMES = {
    grpc.StatusCode.OK: "ok",
    grpc.StatusCode.UNAUTHENTICATED: "refused",
    grpc.StatusCode.PERMISSION_DENIED: "refused",
    grpc.StatusCode.INTERNAL: "failed",
    grpc.StatusCode.UNKNOWN: "failed",
    grpc.StatusCode.UNAVAILABLE: "failed",
    grpc.StatusCode.DATA_LOSS: "failed",
}
_GRPC_HTTP = {"ok": 200, "refused": 403, "failed": 500, "error": 400}


class Telemetry:
    """One app's request telemetry: which parts are on, the bounded labels, the audit trail."""

    def __init__(
        self,
        agents: Collection[str],
        *,
        metrics_on: bool = True,
        access_log: bool = True,
        audit: AuditLog | None = None,
        audit_required: bool = False,
        default_grpc_agent: str = "",
    ) -> None:
        self.agents = frozenset(agents)
        self.metrics_on = metrics_on
        self.access_log = access_log
        self.audit = audit
        self.audit_required = audit_required and audit is not None
        self.default_grpc_agent = default_grpc_agent
        self._children: dict[tuple[str, str, str], tuple[Any, dict[str, Any]]] = {}

    @property
    def active(self) -> bool:
        """Whether anything is observed per request (otherwise the middleware is not installed)."""
        return self.metrics_on or self.access_log or self.audit is not None or tracing.TRACER is not None

    def agent_label(self, name: str) -> str:
        """``name`` when hosted here, else ``unknown``: the registry bounds the label."""
        return name if name in self.agents else metrics.UNKNOWN

    def _measure(self, record: RequestRecord, outcome: str, seconds: float) -> None:
        key = (record.agent, record.binding, record.method)
        bound = self._children.get(key)
        if bound is None:
            bound = self._children[key] = (metrics.REQUEST_DURATION.labels(*key), {})
        duration, counters = bound
        counter = counters.get(outcome)
        if counter is None:
            counter = counters[outcome] = metrics.REQUESTS.labels(*key, outcome)
        duration.observe(seconds)
        counter.inc()

    def audited(self, record: RequestRecord, outcome: str) -> bool:
        """Whether the request gets an audit row: every agent call and every refusal."""
        if self.audit is None:
            return False
        if outcome == "refused":
            return True
        if record.binding == "mcp":
            return record.method == "tools/call"
        return record.binding in AUDITED_BINDINGS and record.method not in UNAUDITED_METHODS

    def write_audit(self, record: RequestRecord, outcome: str) -> Any:
        """Queue the request's audit row; the future of its batch."""
        assert self.audit is not None
        return self.audit.record(
            "refusal" if outcome == "refused" else "call",
            caller=record.caller or ANONYMOUS,
            agent=record.agent,
            skill=record.skill,
            task_id=record.task_id,
            binding=record.binding,
            method=record.method,
            outcome=outcome,
            detail=record.detail,
        )

    def finish(
        self,
        record: RequestRecord,
        outcome: str,
        status: int,
        seconds: float,
        what: tuple[str, str],
        audited_already: bool,
    ) -> None:
        """Count, log and audit a finished request (``what``: its method and path, or ``GRPC`` and its rpc)."""
        if self.metrics_on:
            self._measure(record, outcome, seconds)
        if not audited_already and self.audited(record, outcome):
            self.write_audit(record, outcome)
        if self.access_log and ACCESS.isEnabledFor(logging.INFO):
            log_access(record, f"{what[0]} {clip(what[1])}", status, seconds)

    # -- gRPC --------------------------------------------------------------------------------

    @asynccontextmanager
    async def grpc_call(self, context: grpc.aio.ServicerContext, method: str, request: Any) -> AsyncIterator[None]:
        """Observe one gRPC call (the whole stream, for a streaming one)."""
        started = time.perf_counter()
        agent = self.agent_label(getattr(request, "tenant", "") or self.default_grpc_agent)
        record = RequestRecord(agent, "grpc", method if method in A2A_METHODS else "other")
        token = CURRENT.set(record)
        streaming = method in STREAMING_METHODS
        if streaming and self.metrics_on:
            metrics.STREAMS_OPEN.inc()
        outcome = "ok"
        traceparent = _metadata(context, "traceparent") if tracing.TRACER is not None else ""
        try:
            with tracing.request_span(f"grpc {method}", traceparent, {"rpc.method": method, "a2a.agent": agent}):
                try:
                    yield
                except grpc.aio.AbortError:
                    outcome = _GRPC_OUTCOMES.get(context.code(), "error")  # type: ignore[arg-type]
                    raise
                except BaseException:
                    outcome = "failed"
                    raise
                if self.audit_required and self.audited(record, outcome):
                    try:
                        await self.write_audit(record, outcome)
                    except Exception:
                        outcome = "failed"
                        await context.abort(grpc.StatusCode.UNAVAILABLE, "the audit trail cannot be written")
                    finally:
                        self.finish(record, outcome, 200, time.perf_counter() - started, ("GRPC", method), True)
                    return
        finally:
            CURRENT.reset(token)
            if streaming and self.metrics_on:
                metrics.STREAMS_OPEN.dec()
        status = _GRPC_HTTP.get(outcome, 400)
        self.finish(record, outcome, status, time.perf_counter() - started, ("GRPC", method), False)


def _metadata(context: grpc.aio.ServicerContext, name: str) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else value.decode("latin-1")
    return ""


def log_access(record: RequestRecord, what: str, status: int, seconds: float) -> None:
    """The access-log line of a finished request (its fields also as ``fields`` for the JSON formatter)."""
    caller = record.caller or ANONYMOUS
    ms = seconds * 1000
    fields = {
        "request": what,
        "agent": record.agent,
        "binding": record.binding,
        "method": record.method,
        "status": status,
        "duration_ms": round(ms, 3),
        "caller": caller,
        "task_id": record.task_id,
    }
    ACCESS.info(
        "%s %s %s agent=%s status=%d %.1fms caller=%s task=%s",
        what,
        record.binding,
        record.method,
        record.agent,
        status,
        ms,
        caller,
        record.task_id or "-",
        extra={"fields": fields},
    )


# --- HTTP ---------------------------------------------------------------------------------------


def _rest_method(http_method: str, rest: str) -> str:
    """The A2A method of an HTTP+JSON request from its path below the agent's prefix."""
    if rest.endswith("/message:send"):
        return "SendMessage"
    if rest.endswith("/message:stream"):
        return "SendStreamingMessage"
    if rest.endswith(":cancel"):
        return "CancelTask"
    if rest.endswith(":subscribe"):
        return "SubscribeToTask"
    if rest.endswith("/agent-card.json"):
        return "GetAgentCard"
    if rest.endswith("/extendedAgentCard"):
        return "GetExtendedAgentCard"
    if "/pushNotificationConfigs" in rest:
        by_method = {"POST": "Create", "DELETE": "Delete"}
        if http_method in by_method:
            return f"{by_method[http_method]}TaskPushNotificationConfig"
        return "ListTaskPushNotificationConfigs" if rest.endswith("Configs") else "GetTaskPushNotificationConfig"
    if rest.endswith("/tasks"):
        return "ListTasks"
    if "/tasks/" in rest:
        return "GetTask"
    return "other"


class TelemetryMiddleware:
    """ASGI: observes every HTTP request (see the module)."""

    def __init__(self, app: ASGIApp, telemetry: Telemetry, caller_of: Callable[[Scope], str]) -> None:
        self.app = app
        self.telemetry = telemetry
        self.caller_of = caller_of

    def classify(self, http_method: str, path: str) -> RequestRecord:
        """The request's agent, binding and (when the path says it) method."""
        if path.startswith("/agents/"):
            name, _, rest = path[8:].partition("/")
            agent = self.telemetry.agent_label(name)
            if http_method == "POST" and rest in ("", "/"):
                return RequestRecord(agent, "jsonrpc", "other")
            return RequestRecord(agent, "rest", _rest_method(http_method, "/" + rest))
        if path == "/mcp" or path.startswith("/mcp/"):
            return RequestRecord("-", "mcp", http_method if http_method != "POST" else "other")
        return RequestRecord("-", "http", http_method)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await _Exchange(self, scope, receive, send).run()


class _Exchange:
    """One HTTP request going through ``TelemetryMiddleware``."""

    __slots__ = (
        "_inner",
        "audited",
        "edge",
        "error",
        "receive",
        "record",
        "replaced",
        "scope",
        "send",
        "status",
        "stream",
    )

    def __init__(self, edge: TelemetryMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.edge = edge
        self.scope = scope
        self.send = send
        self.record = edge.classify(scope["method"], scope["path"])
        self.receive = self._peek if self.record.method == "other" and scope["method"] == "POST" else receive
        self._inner = receive
        self.status = 500
        self.stream = False
        self.error = False
        self.audited = False
        self.replaced = False

    async def _peek(self) -> Message:
        message = await self._inner()
        self.receive = self._inner
        if message["type"] == "http.request":
            found = _METHOD.search(message.get("body", b"")[:_PEEK_BYTES])
            if found is not None:
                name = found.group(1).decode()
                known = MCP_METHODS if self.record.binding == "mcp" else A2A_METHODS
                self.record.method = name if name in known else "other"
        return message

    async def run(self) -> None:
        telemetry, record, scope = self.edge.telemetry, self.record, self.scope
        started = time.perf_counter()
        token = CURRENT.set(record)
        try:
            if tracing.TRACER is None:
                await self.edge.app(scope, self._receive, self._send)
            else:
                await self._traced()
        finally:
            CURRENT.reset(token)
            if self.stream and telemetry.metrics_on:
                metrics.STREAMS_OPEN.dec()
            if not record.caller:
                record.caller = self.edge.caller_of(scope)
            outcome = outcome_of_status(self.status)
            if outcome == "ok" and self.error:
                outcome = "error"
            what = (scope["method"], scope["path"])
            telemetry.finish(record, outcome, self.status, time.perf_counter() - started, what, self.audited)

    async def _traced(self) -> None:
        scope, record = self.scope, self.record
        traceparent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), "")
        attributes = {"http.request.method": scope["method"], "url.path": clip(scope["path"])}
        with tracing.request_span(f"{scope['method']} {record.binding}", traceparent, attributes) as span:
            await self.edge.app(scope, self._receive, self._send)
            span.set_attribute("http.response.status_code", self.status)
            span.set_attribute("a2a.method", record.method)
            if record.task_id:
                span.set_attribute("a2a.task_id", record.task_id)

    async def _receive(self) -> Message:
        return await self.receive()

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if self.replaced:
            return  # the answer was replaced by the audit trail's refusal
        if kind == "http.response.start":
            self.status = message["status"]
            for key, value in message.get("headers", ()):
                if key == b"content-type" and value.startswith(b"text/event-stream"):
                    self.stream = True
                    if self.edge.telemetry.metrics_on:
                        metrics.STREAMS_OPEN.inc()
            if self.edge.telemetry.audit_required and not await self._audit_committed():
                return
        elif kind == "http.response.body" and not self.stream and self.record.binding in ("jsonrpc", "mcp"):
            body = message.get("body", b"")
            if body and not self.error:
                error, result = body.find(b'"error"', 0, 512), body.find(b'"result"', 0, 512)
                self.error = error != -1 and (result == -1 or error < result)
        await self.send(message)

    async def _audit_committed(self) -> bool:
        """With ``audit_required``: the row is committed before the answer starts; if it cannot be, 503 instead."""
        telemetry, record = self.edge.telemetry, self.record
        record.caller = record.caller or self.edge.caller_of(self.scope)
        outcome = outcome_of_status(self.status)
        if not telemetry.audited(record, outcome):
            return True
        self.audited = True
        try:
            await telemetry.write_audit(record, outcome)
            return True
        except Exception:
            self.replaced, self.status = True, 503
            body = {"error": {"code": 503, "status": "UNAVAILABLE", "message": "the audit trail cannot be written"}}
            await JSONResponse(body, status_code=503)(self.scope, self._inner, self.send)
            return False
