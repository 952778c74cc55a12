"""deploy/compose.yaml parses, validates against the Compose specification's JSON schema (as vendored by
check-jsonschema), and holds together: every file it mounts exists, the gateway runs on PostgreSQL with two
replicas behind the load balancer (which alone publishes ports), SWITCHBOARD_INSECURE is only in the `local`
profile, and Prometheus, the collector and Grafana point at what the stack really has. No Docker engine here:
nothing in it is started (test_compose_cluster.py runs the gateways and the balancer's config without Docker)."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
import yaml

from gateway.testing import wait_until_ready
from tests.deploy.test_image import IMAGE, SEND, V1, free_port, image_env, image_process, make_compose_keys

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PG_DSN = os.environ.get("SWITCHBOARD_TEST_PG_DSN", "")
GATEWAYS = {name: s for name, s in SERVICES.items() if s.get("image") == "switchboard:local" and "entrypoint" not in s}


def compose_spec_schema() -> dict[str, Any]:
    vendored = importlib.resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of each short-syntax volume."""
    return [tuple(v.split(":")[:2]) for v in service.get("volumes", [])]  # type: ignore[misc]


def with_defaults(value: str) -> str:
    """Compose's interpolation with nothing set: ``${NAME:-default}`` is its default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", lambda m: m[1], value)


def read_config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((DEPLOY / "compose" / name).read_text(encoding="utf-8"))
    return config


def test_the_compose_file_matches_the_compose_specification() -> None:
    jsonschema.validate(COMPOSE, compose_spec_schema())


def test_every_service_has_an_image_or_a_build_and_what_it_mounts_exists() -> None:
    for name, service in SERVICES.items():
        assert service.get("image") or service.get("build"), name
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for source, _ in mounts(service):
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in COMPOSE["volumes"], f"{name}: volume {source} is not declared"
        for needed in service.get("depends_on", []):
            assert needed in SERVICES, f"{name} depends on {needed}, which is no service"


def test_the_gateway_runs_two_replicas_on_postgresql_behind_the_balancer_with_a_healthcheck_on_healthz() -> None:
    assert set(GATEWAYS) == {"gateway", "gateway-local"}
    postgres = SERVICES["postgres"]["environment"]
    for name, gateway in GATEWAYS.items():
        dsn = urlsplit(gateway["environment"]["SWITCHBOARD_DATABASE_URL"])
        assert dsn.scheme == "postgresql" and dsn.hostname == "postgres" and dsn.path == f"/{postgres['POSTGRES_DB']}"
        assert gateway["depends_on"]["postgres"] == {"condition": "service_healthy"}
        assert any("/healthz" in part for part in gateway["healthcheck"]["test"]), name
        assert gateway["deploy"]["replicas"] == 2, "cluster mode: two replicas on the database"
        assert gateway["read_only"] and "/data" in gateway["tmpfs"], "on PostgreSQL a replica keeps nothing in /data"
        assert "ports" not in gateway, "the load balancer publishes the gateway's ports"
    for profile, (gateway, lb) in {"secure": ("gateway", "lb"), "local": ("gateway-local", "lb-local")}.items():
        balancer = SERVICES[lb]
        assert balancer["profiles"] == [profile] and gateway in balancer["depends_on"]
        assert {p.rsplit(":", 2)[-2] + ":" + p.rsplit(":", 1)[-1] for p in balancer["ports"]} == {
            "8000:8000",
            "50051:50051",
        }
        assert ("./compose/haproxy.cfg", "/usr/local/etc/haproxy/haproxy.cfg") in mounts(balancer)


def test_insecure_is_only_in_the_local_profile_which_listens_on_loopback_only() -> None:
    for name, service in SERVICES.items():
        if "SWITCHBOARD_INSECURE" in service.get("environment", {}):
            assert service["profiles"] == ["local"], f"{name} serves without auth outside the local profile"
            assert "ports" not in service, f"{name} serves without auth: only its loopback-bound balancer publishes"
    assert all(port.startswith("127.0.0.1:") for port in SERVICES["lb-local"]["ports"])
    secure = GATEWAYS["gateway"]
    assert secure["profiles"] == ["secure"] and "SWITCHBOARD_INSECURE" not in secure["environment"]
    keys_file = Path(secure["environment"]["SWITCHBOARD_AUTH_API_KEYS_FILE"])
    assert ("api-keys", str(keys_file.parent)) in mounts(secure), "the key file comes from the keys service's volume"
    assert ("api-keys", "/data") in mounts(SERVICES["keys"])
    assert set(SERVICES["keys"]["profiles"]) == {"local", "secure"}


def test_prometheus_scrapes_the_gateway_with_a_key_the_keys_service_makes() -> None:
    job = read_config("prometheus.yml")["scrape_configs"][0]
    (found,) = job["dns_sd_configs"]
    for gateway in GATEWAYS.values():  # each replica, by the alias they share (not the balancer's)
        assert found["names"] == gateway["networks"]["default"]["aliases"]
    assert found["port"] == 8000 and found["type"] == "A" and job["metrics_path"] == "/metrics"
    key_file = Path(job["http_headers"]["X-API-Key"]["files"][0])
    prometheus = SERVICES["prometheus"]
    assert ("api-keys", str(key_file.parent)) in mounts(prometheus)
    assert key_file.stem in ("prometheus",) and "10001" in prometheus["group_add"]


def test_the_collector_receives_what_the_gateway_sends_and_exports_to_a_service_of_the_stack() -> None:
    config = read_config("otel-collector.yaml")
    for pipeline in config["service"]["pipelines"].values():
        for part in ("receivers", "processors", "exporters"):
            assert set(pipeline[part]) <= set(config[part]), f"{part} used but not defined"
    endpoint = urlsplit(GATEWAYS["gateway"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.hostname == "otel-collector" and endpoint.hostname in SERVICES
    http = config["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    assert http.endswith(f":{endpoint.port}") and GATEWAYS["gateway"]["environment"]["OTEL_EXPORTER_OTLP_PROTOCOL"]
    for exporter in config["exporters"].values():
        assert exporter["endpoint"].split(":")[0] in SERVICES


def test_grafana_is_provisioned_with_the_datasources_and_the_dashboard() -> None:
    grafana = dict((target, source) for source, target in mounts(SERVICES["grafana"]))
    provisioning = DEPLOY / grafana["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "datasources.yaml").read_text())["datasources"]
    for source in datasources:
        assert urlsplit(source["url"]).hostname in SERVICES
    provider = yaml.safe_load((provisioning / "dashboards" / "dashboards.yaml").read_text())["providers"][0]
    dashboards = DEPLOY / grafana[provider["options"]["path"]]
    assert json.loads((dashboards / "switchboard.json").read_text())["uid"] == "switchboard"


def test_the_make_keys_script_writes_the_files_the_stack_reads(tmp_path: Path) -> None:
    import runpy

    make_keys = runpy.run_path(str(DEPLOY / "compose" / "make_keys.py"))["make_keys"]
    assert make_keys(tmp_path) is True
    first = (tmp_path / "api-keys").read_text()
    assert make_keys(tmp_path) is False and (tmp_path / "api-keys").read_text() == first, "kept on the next up"
    lines = [line for line in first.splitlines() if not line.startswith("#")]
    assert [line.split(":")[0] for line in lines] == ["operator", "prometheus"]
    assert all(re.fullmatch(r"[a-z]+:[0-9a-f]{64}(:[a-z:,]+)?", line) for line in lines)
    assert lines[1].endswith(":metrics:read"), "Prometheus may read /metrics on the HTTP port when auth is on"
    assert oct((tmp_path / "prometheus.key").stat().st_mode & 0o777) == "0o640"


@pytest.mark.skipif(not PG_DSN, reason="SWITCHBOARD_TEST_PG_DSN is not set")
async def test_the_secure_gateway_service_starts_with_its_environment_and_the_keys_service_keys(tmp_path: Path) -> None:
    """The `gateway` service's environment run through the image's command: the DSN pointed at the test
    database, the key volume at what make_keys.py wrote, the collector at a closed loopback port."""
    service = GATEWAYS["gateway"]
    volume = dict((target, source) for source, target in mounts(service))
    keys_dir = Path(service["environment"]["SWITCHBOARD_AUTH_API_KEYS_FILE"]).parent
    assert volume[str(keys_dir)] == "api-keys"
    keys = make_compose_keys(tmp_path / "api-keys")
    port = free_port()
    env = image_env(IMAGE, tmp_path, port) | {k: with_defaults(str(v)) for k, v in service["environment"].items()}
    assert env["SWITCHBOARD_PUBLIC_URL"] == "http://localhost:8000"
    env |= {
        "SWITCHBOARD_DATABASE_URL": PG_DSN,
        "SWITCHBOARD_AUTH_API_KEYS_FILE": str(tmp_path / "api-keys" / "api-keys"),
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}",  # nothing listens: never stops the gateway
        "SWITCHBOARD_PORT": str(port),
    }
    with image_process(env, tmp_path) as proc:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_until_ready(http, proc, timeout_s=60)
            assert (await http.post("/agents/complexity-reviewer", json=SEND, headers=V1)).status_code == 401
            call = await http.post(
                "/agents/complexity-reviewer", json=SEND, headers={**V1, "X-API-Key": keys["operator"]}
            )
            assert (
                call.status_code == 200 and call.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
            )
