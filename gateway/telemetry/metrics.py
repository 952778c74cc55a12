"""Prometheus metrics: the families, and ``/metrics`` in the text format (``prometheus-client``).

Counters and histograms that move on the request path live in one process-wide registry (as
prometheus-client is meant to be used; a test that starts several apps reads deltas). What is
cheaper to read when scraped than to count as it changes (tasks by state, breaker states, open
MCP sessions, peer card health, push deliveries, which the push worker counts already) is read
by ``GatewayCollector`` from the app's own objects at scrape time.

Labels are bounded: ``agent`` is a hosted agent's name or ``unknown`` (the registry bounds it),
``binding`` one of ``jsonrpc rest grpc mcp http``, ``method`` a protocol method name or
``other``, ``peer`` a configured peer, ``op`` a store operation, ``server`` and ``tool`` an MCP server and
tool an agent file names (never a name a server sends), ``workflow`` a hosted workflow. No task id,
no caller.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN = "unknown"
TASK_COUNT_TTL_S = 10.0
"""Tasks by state are counted in the database at most this often (a scrape in between reads the last count)."""
TASK_COUNT_TIMEOUT_S = 2.0
"""A count the database does not answer within this is skipped: a scrape under load still returns."""
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STORE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BREAKER_CODES = {"closed": 0, "half-open": 1, "open": 2}

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)  # CPU, memory, open fds of this process

REQUESTS = Counter(
    "switchboard_requests",
    "Requests answered, by agent, binding, method and outcome (ok, error, refused, failed)",
    ["agent", "binding", "method", "outcome"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "switchboard_request_duration_seconds",
    "Time from a request's arrival to its answer's end (a stream: until it closes)",
    ["agent", "binding", "method"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STREAMS_OPEN = Gauge("switchboard_streams_open", "Streaming responses open now (SSE and gRPC)", registry=REGISTRY)
WORKFLOW_RUNS = Counter(
    "switchboard_workflow_runs", "Workflow runs ended, by pattern, outcome", ["pattern", "outcome"], registry=REGISTRY
)
WORKFLOW_STEP_DURATION = Histogram(
    "switchboard_workflow_step_duration_seconds",
    "Time a workflow step took (retries and fallbacks included)",
    ["pattern"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
FAILOVER = Counter(
    "switchboard_failover",
    "Cluster failover on this replica: run_taken_over, run_ended_unhosted, lease_lost, task_ended_replica_gone, "
    "task_ended_unsaved",
    ["event"],
    registry=REGISTRY,
)
RETRIES = Counter("switchboard_retries", "Workflow step attempts retried after a retryable failure", registry=REGISTRY)
BREAKER_STATE = Gauge(
    "switchboard_breaker_state", "Circuit per agent: 0 closed, 1 half-open, 2 open", ["agent"], registry=REGISTRY
)
BREAKER_REFUSALS = Counter(
    "switchboard_breaker_refusals", "Step attempts refused at once by an open circuit", ["agent"], registry=REGISTRY
)
LIMIT_TRIPS = Counter(
    "switchboard_limit_trips", "Runs stopped by a limit (step, time, token, cost, hop)", ["limit"], registry=REGISTRY
)
PEER_RELAY_DURATION = Histogram(
    "switchboard_peer_relay_duration_seconds",
    "Time a relay to a peer took, from sending the message to the remote task settling",
    ["peer"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
STORE_DURATION = Histogram(
    "switchboard_store_duration_seconds",
    "Database calls by operation",
    ["op"],
    buckets=STORE_BUCKETS,
    registry=REGISTRY,
)
TRIGGER_EVENTS = Counter(
    "switchboard_trigger_events",
    "Events received by triggers, by agent, trigger, kind and outcome (started, repeat, dead, refused)",
    ["agent", "trigger", "kind", "outcome"],
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "switchboard_cache_lookups",
    "Result-cache lookups by agent and outcome (hit, miss)",
    ["agent", "outcome"],
    registry=REGISTRY,
)
ADMISSION_REFUSALS = Counter(
    "switchboard_admission_refusals",
    "Messages refused by an agent's admission control (busy)",
    ["agent"],
    registry=REGISTRY,
)
ADMISSION_SLOTS = Gauge(
    "switchboard_admission_slots",
    "Runs holding or waiting for a slot, by agent and state (running, queued)",
    ["agent", "state"],
    registry=REGISTRY,
)
AUDIT_WRITE_FAILURES = Counter(
    "switchboard_audit_write_failures", "Audit rows that could not be written (logged as errors)", registry=REGISTRY
)
TOOL_CALLS = Counter(
    "switchboard_tool_calls",
    "MCP tool calls made by agents, by agent, server, tool and outcome (ok, error, failed, asked, canceled)",
    ["agent", "server", "tool", "outcome"],
    registry=REGISTRY,
)
TOOL_CALL_DURATION = Histogram(
    "switchboard_tool_call_duration_seconds",
    "Time an MCP tool call took, from sending it to its result (or its failure)",
    ["agent", "server", "tool"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
WORK_QUEUE_ITEMS = Counter(
    "switchboard_work_queue_items",
    "Work-queue items by workflow and event (queued, claimed, requeued, completed, dead_lettered)",
    ["workflow", "event"],
    registry=REGISTRY,
)
WORK_QUEUE_WAIT = Histogram(
    "switchboard_work_queue_wait_seconds",
    "Time a work-queue item waited in its run's queue, from (re)queued to claimed by an agent",
    ["workflow"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
WORK_ITEMS = Counter(
    "switchboard_work_items",
    "Shared work items (distribute on PostgreSQL) on this replica, by agent and event "
    "(posted, claimed, finished, requeued, withdrawn)",
    ["agent", "event"],
    registry=REGISTRY,
)
WORK_ITEM_CLAIM = Histogram(
    "switchboard_work_item_claim_seconds",
    "Time from a shared work item's posting (on any replica) to its claim by this one",
    ["agent"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
SPANS_DROPPED = Counter(
    "switchboard_spans_dropped", "Spans not exported (the collector refused or could not be reached)", registry=REGISTRY
)


def breaker_state(agent: str, state: str) -> None:
    """Show ``agent``'s circuit as ``state`` (closed, half-open, open)."""
    BREAKER_STATE.labels(agent).set(BREAKER_CODES.get(state, 0))


class MetricSources(Protocol):
    """Scrape-time readers; each returns the current values."""

    def push_counts(self) -> tuple[int, int, int]:
        """Push notifications delivered, retried, dropped since start."""
        ...

    def mcp_sessions(self) -> int:
        """Open 2025-11-25 MCP sessions."""
        ...

    def peer_cards(self) -> Iterable[tuple[str, str]]:
        """(peer, health) of every remote agent's card."""
        ...


class TaskCounts:
    """Tasks by state, counted in the database at most every ``TASK_COUNT_TTL_S`` (bounded)."""

    def __init__(self, count: Callable[[], Any], clock: Callable[[], float] = time.monotonic) -> None:
        self._count = count
        self._clock = clock
        self.ttl_s = TASK_COUNT_TTL_S
        self._at = float("-inf")
        self.by_state: dict[str, int] = {}

    async def refresh(self) -> None:
        """Count again if the last count is older than the TTL; a slow or failed count keeps the last one."""
        if self._clock() - self._at < self.ttl_s:
            return
        self._at = self._clock()
        try:
            async with asyncio.timeout(TASK_COUNT_TIMEOUT_S):
                self.by_state = dict(await self._count())
        except Exception as exc:  # a scrape must answer: the count is skipped, the cause logged
            logger.warning("metrics: tasks by state not counted: %s: %s", type(exc).__name__, exc)


class GatewayCollector(Collector):
    """The metrics read from one app's objects when scraped."""

    def __init__(self, sources: MetricSources, tasks: TaskCounts) -> None:
        self.sources = sources
        self.tasks = tasks

    def collect(self) -> Iterator[Metric]:
        tasks = GaugeMetricFamily("switchboard_tasks", "Stored tasks by state", labels=["state"])
        for state, count in sorted(self.tasks.by_state.items()):
            tasks.add_metric([state], count)
        yield tasks
        delivered, retried, dropped = self.sources.push_counts()
        push = CounterMetricFamily(
            "switchboard_push_deliveries", "Push notifications: ok, retried, dropped", labels=["outcome"]
        )
        for outcome, value in (("ok", delivered), ("retried", retried), ("dropped", dropped)):
            push.add_metric([outcome], value)
        yield push
        yield GaugeMetricFamily("switchboard_mcp_sessions", "Open MCP sessions", value=self.sources.mcp_sessions())
        cards = GaugeMetricFamily(
            "switchboard_peer_cards", "Remote agents' cards by peer and health", labels=["peer", "health"]
        )
        counted: dict[tuple[str, str], int] = {}
        for key in self.sources.peer_cards():
            counted[key] = counted.get(key, 0) + 1
        for (peer, health), count in sorted(counted.items()):
            cards.add_metric([peer, health], count)
        yield cards


class _Union(Collector):
    """The process-wide families and one app's, as one registry to render."""

    def __init__(self, app: Collector) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.app.collect()


def exposition(app: Collector) -> bytes:
    """The text format of every metric: the process's and ``app``'s."""
    return generate_latest(_Union(app))  # type: ignore[arg-type]  # any collector renders


def union(app: Collector) -> Collector:
    """A collector of the process-wide families and ``app``'s (for a listener of its own)."""
    return _Union(app)
