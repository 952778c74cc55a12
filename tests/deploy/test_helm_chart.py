"""The Helm chart renders (Helm's own engine) and every manifest validates against the Kubernetes schemas,
for the default values and for values-production.yaml; the values schema and the chart's refusals hold."""

from __future__ import annotations

import json
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.chart import CHART, NOTES, by_kind, manifests, one, production_values, render

# The chart's floor (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ["1.25.0", kubernetes_validate.latest_version()]
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}


def validate_all(objects: list[dict[str, Any]]) -> None:
    """Each object against the Kubernetes schema of its kind (strict: no unknown fields) at every version."""
    for obj in objects:
        if (obj["apiVersion"], obj["kind"]) in CRDS:
            check_service_monitor(obj, objects)
            continue
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def check_service_monitor(monitor: dict[str, Any], objects: list[dict[str, Any]]) -> None:
    """A CRD kubernetes-validate has no schema for: it must select the Service and name one of its ports."""
    service = one(objects, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    endpoints = [e["port"] for e in monitor["spec"]["endpoints"]]
    assert endpoints == ["metrics" if "metrics" in ports else "http"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def assert_lints_clean(values: dict[str, Any]) -> None:
    """``helm lint --strict`` with ``values`` at the chart's Kubernetes floor: nothing above INFO."""
    lint = helm.lint(str(CHART), values, strict=True, kube_version=KUBE_VERSIONS[0])
    assert lint["errors"] == [] and all(m["severity"] <= 1 for m in lint["messages"]), lint  # 1: INFO


def container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1
    result: dict[str, Any] = spec["containers"][0]
    return result


def env_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(objects)["env"]}


def test_default_values_render_and_validate() -> None:
    objects = manifests(render())
    validate_all(objects)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount"]
    assert one(objects, "Deployment")["spec"]["replicas"] == 1
    assert_lints_clean({})


def test_production_values_render_and_validate() -> None:
    values = production_values()
    assert values["replicaCount"] == 3 and values["autoscaling"]["enabled"] and values["ingress"]["tls"]
    rendered = render(values, release="switchboard", namespace="prod")
    objects = manifests(rendered)
    validate_all(objects)
    assert_lints_clean(values)
    assert {"Ingress", "HorizontalPodAutoscaler", "ServiceMonitor", "ConfigMap"} <= {o["kind"] for o in objects}
    deployment = one(objects, "Deployment")
    assert "replicas" not in deployment["spec"], "the autoscaler owns the replica count"
    hpa = one(objects, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"] and hpa["minReplicas"] == 3
    ingress = one(objects, "Ingress")["spec"]
    assert ingress["tls"] == [{"secretName": "switchboard-tls", "hosts": ["switchboard.example.com"]}]
    env = env_of(objects)
    assert env["SWITCHBOARD_DATABASE_URL"] == {"secretKeyRef": {"name": "switchboard-db", "key": "dsn"}}
    assert env["SWITCHBOARD_PUBLIC_URL"] == "https://switchboard.example.com"
    assert "SWITCHBOARD_INSECURE" not in env
    assert one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics", "scraped without a key"
    assert not by_kind(objects, "Secret"), "every secret comes from the operator's own Secrets"
    assert "cluster mode" in rendered[NOTES].lower() and "issue 16" in rendered[NOTES]


def test_the_pod_runs_non_root_on_a_read_only_root_with_writable_data_and_tmp() -> None:
    objects = manifests(render())
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    gateway = container(objects)
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] != 0
    security = gateway["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    assert security["capabilities"] == {"drop": ["ALL"]}
    writable = {m["mountPath"] for m in gateway["volumeMounts"] if not m.get("readOnly")}
    assert writable == {"/data", "/tmp"}
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert gateway["resources"]["requests"] and gateway["resources"]["limits"]
    ports = {p["name"]: p["port"] for p in one(objects, "Service")["spec"]["ports"]}
    assert ports == {"http": 8000, "grpc": 50051}


def test_more_than_one_replica_without_a_database_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="replicas above one"):
        render({"replicaCount": 2})
    with pytest.raises(helm.HelmError, match="replicas above one"):
        render({"autoscaling": {"enabled": True, "maxReplicas": 4}})


def test_replicas_above_one_render_with_notes_on_cluster_mode() -> None:
    rendered = render({"replicaCount": 2, "database": {"url": "postgresql://db/switchboard"}})
    validate_all(manifests(rendered))
    assert "Cluster mode: up to 2 replicas" in rendered[NOTES] and "WARNING" not in rendered[NOTES]
    assert "session affinity" in rendered[NOTES] and "about 6 s" in rendered[NOTES]


def test_no_authentication_is_refused_unless_insecure_is_asked_for() -> None:
    with pytest.raises(helm.HelmError, match="refuses to start without authentication"):
        render({"auth": {"generateKey": False}})
    rendered = render({"auth": {"generateKey": False, "insecure": True}})
    assert env_of(manifests(rendered))["SWITCHBOARD_INSECURE"] == "true"
    assert "WARNING: auth.insecure" in rendered[NOTES]


def test_optional_resources_render_and_validate_when_enabled() -> None:
    values = {
        "ingress": {"enabled": True, "className": "nginx"},
        "persistence": {"enabled": True},
        "serviceMonitor": {"enabled": True},
        "grafanaDashboard": {"enabled": True},
        "agents": {"files": {"echo.yaml": "name: echo\n"}},
        "auth": {
            "issuers": [
                {
                    "issuer": "https://id.example.com",
                    "audience": "switchboard",
                    "jwks_uri": "https://id.example.com/jwks",
                }
            ]
        },
        "otel": {"endpoint": "http://otel-collector:4318"},
        "mcp": {"allowedHosts": ["mcp.example.com"]},
    }
    objects = manifests(render(values))
    validate_all(objects)
    assert {"Ingress", "PersistentVolumeClaim", "ServiceMonitor"} <= {o["kind"] for o in objects}
    dashboards = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard")]
    assert json.loads(dashboards[0]["data"]["switchboard.json"])["uid"] == "switchboard"
    env = env_of(objects)
    assert env["SWITCHBOARD_AGENTS"] == "/etc/switchboard/agents"
    assert json.loads(env["SWITCHBOARD_AUTH_ISSUERS"])[0]["issuer"] == "https://id.example.com"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    assert env["SWITCHBOARD_MCP_ALLOWED_HOSTS"].split(",")[-2:] == [
        "sb-switchboard.apps.svc.cluster.local",
        "mcp.example.com",
    ]
    assert one(objects, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}


def test_a_metrics_port_gets_its_own_listener_service_port_and_scrape() -> None:
    objects = manifests(render({"metrics": {"port": 9464}, "serviceMonitor": {"enabled": True}}))
    validate_all(objects)
    assert env_of(objects)["SWITCHBOARD_METRICS_LISTEN"] == "0.0.0.0:9464"
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in container(objects)["ports"]
    assert one(objects, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "metrics"


def test_values_schema_is_a_valid_schema_and_accepts_the_shipped_values() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    jsonschema.validate(defaults, schema)
    jsonschema.validate(production_values(), schema)
    for bad in [
        {"replicaCount": "three"},
        {"unknownKey": 1},
        {"auth": {"apiKeys": ["not-a-key-line"]}},
        {"database": {"url": "mysql://db"}},
        {"mcp": {"stateKey": "too-short"}},
    ]:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**defaults, **bad}, schema)
        with pytest.raises(helm.HelmError):
            render(bad)  # Helm checks the same schema when it renders
