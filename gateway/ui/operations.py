"""What the dashboard shows beside the protocols: agents' runtimes, peers and trust, keys, audit, metrics.

Each function reads the running gateway's own objects (or one bounded query) and returns JSON.
Nothing here holds a secret: keys are public JWK ids and their states, trust anchors are the
pinned key ids and allowed ``jku`` origins, never a peer's credentials.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import Metric

from gateway.cards.keys import KeyRing
from gateway.federation.hub import Federation
from gateway.hosting.hosted import HostedAgent
from gateway.spec import A2ARuntime, WorkflowRuntime
from gateway.store.database import Database
from gateway.telemetry import metrics
from gateway.telemetry.access import STREAMING_METHODS
from gateway.telemetry.audit import COLUMNS, AuditEntry

MAX_AUDIT_PAGE = 100


def agents_json(agents: Mapping[str, HostedAgent], federation: Federation) -> list[dict[str, Any]]:
    """Each hosted agent's runtime: its kind, a workflow's pattern and participants, a remote one's origin."""
    found = []
    for name, hosted in agents.items():
        runtime = hosted.spec.runtime
        entry: dict[str, Any] = {"name": name, "kind": runtime.kind, "security": hosted.spec.security}
        if isinstance(runtime, WorkflowRuntime):
            entry["pattern"] = runtime.pattern
            entry["participants"] = list(runtime.participants)
        remote = federation.remotes.get(name)
        if remote is not None:
            source = remote.source
            entry["origin"] = {
                "peer": remote.peer.name,
                "url": source.url,
                "health": source.health,
                "problem": source.problem,
                "kids": list(source.trusted.verified.kids) if source.trusted is not None else [],
            }
        elif isinstance(runtime, A2ARuntime):
            entry["origin"] = {"peer": runtime.peer, "url": runtime.card_url, "health": "unchecked", "problem": ""}
        found.append(entry)
    return found


def keys_json(keyring: KeyRing | None, now: datetime | None = None) -> dict[str, Any]:
    """The signing keys: ``current`` (signing), ``retiring`` (published until ``notAfter``), or ``expired``."""
    moment = now or datetime.now(UTC)
    keys = []
    for key in keyring.keys if keyring is not None else ():
        state = "current" if key.signs_at(moment) else "retiring" if key.published_at(moment) else "expired"
        not_after = key.not_after.isoformat() if key.not_after is not None else None
        keys.append({"kid": key.kid, "alg": key.alg, "state": state, "notAfter": not_after})
    return {"signing": keyring is not None, "keys": keys}


def _relay_latency() -> dict[str, dict[str, float]]:
    """Per peer: relays counted since start and their mean and p95 duration in seconds."""
    return {labels[0]: stats for labels, stats in _histograms(metrics.PEER_RELAY_DURATION.collect(), ("peer",)).items()}


def peers_json(federation: Federation) -> dict[str, Any]:
    """Each partner gateway: its trust anchors, its agents imported here with their card state, relay latency."""
    latency = _relay_latency()
    known = dict(federation.peers)
    for remote in federation.remotes.values():  # a remote agent's own file may name a peer the peers file does not
        known.setdefault(remote.peer.name, remote.peer)
    peers = []
    for name, peer in known.items():
        policy = peer.policy
        agents = [
            {
                "name": remote.name,
                "url": remote.source.url,
                "health": remote.source.health,
                "problem": remote.source.problem,
                "checkedAt": remote.source.checked_at,
            }
            for remote in federation.remotes.values()
            if remote.peer.name == name
        ]
        policies = {id(r.peer.policy): r.peer.policy for r in federation.remotes.values() if r.peer.name == name}
        pinned = [str(k.get("kid", "")) for k in (policy.jwks or {}).get("keys", []) if isinstance(k, dict)]
        peers.append(
            {
                "name": name,
                "baseUrl": peer.base_url,
                "configured": "peers file" if name in federation.peers else "agent file",
                # Agents whose own files name the same origin may each trust it differently: then none is shown.
                "trust": None
                if len({repr(p) for p in policies.values()}) > 1
                else {
                    "pinnedKids": pinned,
                    "jkuOrigins": list(policy.allowed_jku_origins),
                    "algorithms": list(policy.algorithms),
                    "requireSignature": policy.require_signature,
                },
                "agents": agents,
                "outOfService": [a for a in agents if a["health"] != "trusted"],
                "relay": latency.get(name, {"count": 0, "meanS": 0.0, "p95S": 0.0}),
            }
        )
    return {"gatewayId": federation.gateway_id, "peers": peers}


async def audit_json(db: Database, caller: str | None, limit: int, before_ns: int | None) -> dict[str, Any]:
    """The newest audit rows (``caller``'s own only, unless None: an operator), paged by time."""
    where: list[str] = []
    args: list[Any] = []
    if caller is not None:
        where.append("caller = ?")
        args.append(caller)
    if before_ns is not None:
        where.append("at_ns < ?")
        args.append(before_ns)
    clause = f"WHERE {' AND '.join(where)} " if where else ""
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit {clause}ORDER BY at_ns DESC LIMIT ?"
    rows = await db.scan(sql, [*args, limit + 1])
    entries = [AuditEntry(*row) for row in rows[:limit]]
    after = str(entries[-1].at_ns) if len(rows) > limit else ""
    return {"entries": [e.json() for e in entries], "next": after}


def _quantile(buckets: list[tuple[float, float]], count: float, q: float) -> float:
    """The upper bound of the bucket holding the ``q`` quantile (Prometheus' estimate, without interpolation)."""
    wanted = q * count
    for bound, cumulative in buckets:
        if cumulative >= wanted:
            return bound if math.isfinite(bound) else buckets[-2][0] if len(buckets) > 1 else 0.0
    return 0.0


def _histograms(families: Iterable[Metric], keys: tuple[str, ...]) -> dict[tuple[str, ...], dict[str, float]]:
    """Count, mean and p95 of a histogram family's series, summed over the labels not in ``keys``."""
    counts: dict[tuple[str, ...], float] = {}
    sums: dict[tuple[str, ...], float] = {}
    buckets: dict[tuple[str, ...], dict[float, float]] = {}
    for family in families:
        for sample in family.samples:
            if sample.labels.get("method") in STREAMING_METHODS:
                continue  # a stream's duration is how long it stayed open, not a latency
            key = tuple(sample.labels.get(k, "") for k in keys)
            if sample.name.endswith("_count"):
                counts[key] = counts.get(key, 0.0) + sample.value
            elif sample.name.endswith("_sum"):
                sums[key] = sums.get(key, 0.0) + sample.value
            elif sample.name.endswith("_bucket"):
                bound = float(sample.labels["le"])
                series = buckets.setdefault(key, {})
                series[bound] = series.get(bound, 0.0) + sample.value
    found = {}
    for key, count in counts.items():
        ordered = sorted(buckets.get(key, {}).items())
        mean = sums.get(key, 0.0) / count if count else 0.0
        found[key] = {"count": count, "meanS": mean, "p95S": _quantile(ordered, count, 0.95) if count else 0.0}
    return found


def metrics_json(agents: Iterable[str], started: float, tasks_by_state: Mapping[str, int]) -> dict[str, Any]:
    """The main figures since start: requests and errors per agent, latency, streams, runs, tasks by state."""
    outcomes: dict[str, dict[str, float]] = {}
    for family in metrics.REQUESTS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                per = outcomes.setdefault(sample.labels["agent"], {})
                outcome = sample.labels["outcome"]
                per[outcome] = per.get(outcome, 0.0) + sample.value
    latency = _histograms(metrics.REQUEST_DURATION.collect(), ("agent",))
    rows = []
    for agent in sorted(set(agents)):
        per = outcomes.get(agent, {})
        stats = latency.get((agent,), {"count": 0.0, "meanS": 0.0, "p95S": 0.0})
        rows.append(
            {
                "agent": agent,
                "requests": sum(per.values()),
                "errors": per.get("error", 0.0) + per.get("failed", 0.0),
                "refused": per.get("refused", 0.0),
                "meanS": stats["meanS"],
                "p95S": stats["p95S"],
            }
        )
    runs: dict[str, float] = {}
    for family in metrics.WORKFLOW_RUNS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                runs[sample.labels["outcome"]] = runs.get(sample.labels["outcome"], 0.0) + sample.value
    return {
        "at": time.time(),
        "uptimeS": max(0.0, time.time() - started),
        "agents": rows,
        "streamsOpen": _gauge_value(metrics.STREAMS_OPEN.collect()),
        "runs": runs,
        "tasks": dict(tasks_by_state),
    }


def _gauge_value(families: Iterable[Metric]) -> float:
    return sum(sample.value for family in families for sample in family.samples)
