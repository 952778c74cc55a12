"""The Grafana dashboard (deploy/helm/switchboard/dashboards/switchboard.json, provisioned by the compose
stack and shipped by the chart) is well-formed and charts the gateway's metric families by their names."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DASHBOARD: dict[str, Any] = json.loads(
    (REPO / "deploy" / "helm" / "switchboard" / "dashboards" / "switchboard.json").read_text(encoding="utf-8")
)
PANELS = [p for p in DASHBOARD["panels"] if p["type"] != "row"]

# The families issue 17 lists, as exposed (a counter's samples end in _total; a histogram's in _bucket,
# _sum and _count). Labels are bounded: no task id or caller is ever one.
METRICS = {
    "switchboard_requests_total": {"agent", "binding", "method", "outcome"},
    "switchboard_request_duration_seconds": {"agent", "binding", "method"},
    "switchboard_tasks": {"state"},
    "switchboard_streams_open": set(),
    "switchboard_workflow_runs_total": {"pattern", "outcome"},
    "switchboard_workflow_step_duration_seconds": {"pattern"},
    "switchboard_retries_total": set(),
    "switchboard_breaker_state": {"agent"},
    "switchboard_breaker_refusals_total": {"agent"},
    "switchboard_limit_trips_total": {"limit"},
    "switchboard_push_deliveries_total": {"outcome"},
    "switchboard_mcp_sessions": set(),
    "switchboard_peer_cards": {"peer", "health"},
    "switchboard_peer_relay_duration_seconds": {"peer"},
    "switchboard_store_duration_seconds": {"op"},
    "switchboard_audit_write_failures_total": set(),
    "switchboard_spans_dropped_total": set(),
    "switchboard_tool_calls_total": {"agent", "server", "tool", "outcome"},
    "switchboard_tool_call_duration_seconds": {"agent", "server", "tool"},
    "switchboard_work_queue_items_total": {"workflow", "event"},
    "switchboard_work_queue_wait_seconds": {"workflow"},
    "switchboard_work_items_total": {"agent", "event"},
    "switchboard_work_item_claim_seconds": {"agent"},
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
SCRAPE_LABELS = {"job", "instance", "le"}


def expressions() -> list[str]:
    return [t["expr"] for p in PANELS for t in p["targets"]]


def family(sample: str) -> str:
    for suffix in HISTOGRAM_SUFFIXES:
        if sample.endswith(suffix) and sample.removesuffix(suffix) in METRICS:
            return sample.removesuffix(suffix)
    return sample


def test_the_dashboard_is_well_formed() -> None:
    ids = [p["id"] for p in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids)) and DASHBOARD["uid"] == "switchboard"
    variables = {v["name"] for v in DASHBOARD["templating"]["list"]}
    assert variables == {"datasource", "job", "agent"}
    for panel in PANELS:
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]


def test_every_query_uses_a_known_family_and_labels_it_has() -> None:
    used = set()
    for expr in expressions():
        for sample in re.findall(r"\bswitchboard_[a-z_]+", expr):
            name = family(sample)
            assert name in METRICS, f"{sample} in {expr!r} is no metric the gateway exposes"
            used.add(name)
        for label in re.findall(r"\b(?:by|without) \(([^)]*)\)", expr) + re.findall(r"[{,]\s*([a-z_]+)\s*[=!~]", expr):
            for one in label.split(","):
                name = one.strip()
                known = set().union(*METRICS.values()) | SCRAPE_LABELS
                assert name in known, f"label {name!r} in {expr!r} is on no family"
    assert used == set(METRICS), f"families with no panel: {sorted(set(METRICS) - used)}"


def test_the_families_are_the_ones_the_gateway_declares() -> None:
    declared = REPO / "gateway" / "telemetry" / "metrics.py"
    if not declared.is_file():
        pytest.skip("gateway/telemetry/metrics.py has not landed: the dashboard follows the names issue 17 lists")
    source = declared.read_text(encoding="utf-8")
    for name in METRICS:
        base = name.removesuffix("_total")
        assert f'"{base}"' in source, f"{base} is not declared in gateway/telemetry/metrics.py"
