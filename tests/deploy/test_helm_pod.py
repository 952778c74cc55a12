"""The pod the chart renders starts: its container's command, environment, Secret and ConfigMap files,
laid out on this machine (no cluster, no image), make a gateway that becomes ready and requires the
API key the chart generated. This is what ``helm install`` with default values would run."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.testing import wait_until_ready
from tests.deploy.chart import manifests, one, render
from tests.deploy.test_image import IMAGE, SEND, V1, free_port, image_command, image_process

REPO = Path(__file__).resolve().parents[2]
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
MCP_INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "probe", "version": "1"}},
}
PG_DSN = os.environ.get("SWITCHBOARD_TEST_PG_DSN", "")


def mounted_files(objects: list[dict[str, Any]], root: Path) -> dict[str, Path]:
    """Write each Secret/ConfigMap volume's items under ``root``; mount path -> the folder standing in for it."""
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    sources = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Secret", "ConfigMap")}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    places: dict[str, Path] = {}
    for volume in pod["volumes"]:
        folder = root / volume["name"]
        folder.mkdir(parents=True)
        places[mounts[volume["name"]]] = folder
        ref = volume.get("secret") or volume.get("configMap")
        if ref is None:
            continue  # emptyDir
        source = sources[ref.get("secretName") or ref.get("name")]
        data = source.get("data") or {}
        items = ref.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            value = data[item["key"]]
            text = base64.b64decode(value).decode() if source["kind"] == "Secret" else value
            (folder / item["path"]).write_text(text, encoding="utf-8")
    return places


def pod_env(objects: list[dict[str, Any]], places: dict[str, Path], port: int) -> dict[str, str]:
    """The container's env with secretKeyRefs resolved and mount paths moved to their stand-in folders."""
    secrets = {o["metadata"]["name"]: o["data"] for o in objects if o["kind"] == "Secret"}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OTEL_"))}
    # One pass, so a stand-in folder (itself under /tmp) is never rewritten again.
    alternatives = "|".join(re.escape(m) for m in sorted(places, key=len, reverse=True))
    mount_path = re.compile(rf'(^|")({alternatives})(?=/|"|$)')
    for entry in one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]:
        if "value" in entry:
            value = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            value = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        value = mount_path.sub(lambda m: m[1] + str(places[m[2]]), value)
        env[entry["name"]] = value
    return env | {"PYTHONPATH": str(REPO), "SWITCHBOARD_PORT": str(port), "SWITCHBOARD_GRPC_PORT": "0"}


def admin_key(objects: list[dict[str, Any]]) -> str:
    return base64.b64decode(one(objects, "Secret")["data"]["admin-api-key"]).decode()


async def start_pod(values: dict[str, Any], tmp_path: Path) -> set[str]:
    """Run the pod ``values`` render until it serves a call with the generated key; the agents it hosts."""
    objects = manifests(render(values))
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert image_command(IMAGE)[:3] + container["args"] == image_command(IMAGE), "the chart runs the image's CMD"
    port = free_port()
    env = pod_env(objects, mounted_files(objects, tmp_path / "pod"), port)
    with image_process(env, tmp_path) as proc:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_until_ready(http, proc, timeout_s=60)
            assert (await http.post("/agents/complexity-reviewer", json=SEND, headers=V1)).status_code == 401
            headers = {**V1, "X-API-Key": admin_key(objects)}
            call = await http.post("/agents/complexity-reviewer", json=SEND, headers=headers)
            assert call.status_code == 200, call.text
            assert call.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
            jwks = (await http.get("/.well-known/jwks.json")).json()
            assert len(jwks["keys"]) == 1 and jwks["keys"][0]["crv"] == "P-256", "the chart's generated signing key"
            agents = {a["name"] for a in (await http.get("/agents", headers=headers)).json()}
            # In-cluster MCP clients name the Service; its hosts pass the DNS-rebinding check.
            service = one(objects, "Service")["metadata"]["name"]
            mcp = {"Host": f"{service}.apps.svc.cluster.local:8000", "X-API-Key": headers["X-API-Key"], **MCP_HEADERS}
            assert (await http.post("/mcp", json=MCP_INITIALIZE, headers=mcp)).status_code == 200
            metrics_port = values.get("metrics", {}).get("port")
            if metrics_port:  # a listener of its own, without credentials; none on the HTTP port
                scrape = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
                assert scrape.status_code == 200 and "switchboard_requests_total" in scrape.text
                assert (await http.get("/metrics", headers=headers)).status_code == 404
    return agents


async def test_the_default_pod_starts_and_requires_the_generated_api_key(tmp_path: Path) -> None:
    assert {"triage", "complexity-reviewer"} <= await start_pod({}, tmp_path), "the bundled agents"


@pytest.mark.skipif(not PG_DSN, reason="SWITCHBOARD_TEST_PG_DSN is not set")
async def test_a_pod_on_postgresql_with_agent_files_from_the_configmap_starts(tmp_path: Path) -> None:
    files = {name: (REPO / "agent_cards" / name).read_text() for name in ("complexity-reviewer.yaml", "echo.yaml")}
    hosted = await start_pod({"database": {"url": PG_DSN}, "agents": {"files": files}}, tmp_path)
    assert hosted == {"complexity-reviewer", "echo"}


def test_the_pod_command_matches_the_image() -> None:
    container = one(manifests(render()), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == IMAGE.exec_form("CMD") and "command" not in container
    assert subprocess.list2cmdline(container["args"]) == "serve --host 0.0.0.0"


async def test_behind_an_ingress_in_cluster_mcp_clients_still_reach_mcp_by_the_service_name(tmp_path: Path) -> None:
    values = {"ingress": {"enabled": True, "tls": [{"secretName": "tls", "hosts": ["switchboard.local"]}]}}
    env = {
        e["name"]: e.get("value")
        for e in one(manifests(render(values)), "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["SWITCHBOARD_PUBLIC_URL"] == "https://switchboard.local"
    await start_pod(values, tmp_path)


async def test_a_pod_with_a_metrics_port_serves_metrics_there_without_credentials(tmp_path: Path) -> None:
    await start_pod({"metrics": {"port": free_port()}}, tmp_path)
