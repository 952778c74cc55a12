"""Render deploy/helm/switchboard with Helm's own engine and read the manifests back.

Rendering goes through ``helm-python-sdk``, which binds Helm v4's Go SDK (the same template
engine, Sprig functions and values.schema.json check as ``helm template``) from a wheel on PyPI,
since no helm binary ships in the package registries these machines reach.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "switchboard"
NOTES = "switchboard/templates/NOTES.txt"


def production_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values-production.yaml").read_text(encoding="utf-8"))
    return values


def render(values: dict[str, Any] | None = None, *, release: str = "sb", namespace: str = "apps") -> dict[str, str]:
    """Each template's output (``helm template``), NOTES.txt included; raises ``HelmError`` on a refusal."""
    with helm.Chart.load(str(CHART)) as chart:
        rendered: dict[str, str] = chart.render(values or {}, name=release, namespace=namespace)
    return rendered


def manifests(rendered: dict[str, str]) -> list[dict[str, Any]]:
    """Every Kubernetes object the templates produced (NOTES and empty documents left out)."""
    found = []
    for name, text in sorted(rendered.items()):
        if name.endswith(".txt"):
            continue
        found += [doc for doc in yaml.safe_load_all(text) if doc]
    return found


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
