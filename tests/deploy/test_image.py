"""deploy/Dockerfile starts: its own command line and environment, run here as a subprocess (no Docker
engine on these machines), pass the gateway's bind check with the documented auth and fail without it.

The image is never built here; what is run is the final stage's ENTRYPOINT + CMD with its ENV (the
ports and data dir moved to free ones), plus the auth the deploy README documents: an API key file as
made by deploy/compose/make_keys.py. Its HEALTHCHECK command is run against the live gateway too.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from gateway.testing import free_socket, wait_until_ready
from tests.deploy.dockerfile import Stage, read_stages

REPO = Path(__file__).resolve().parents[2]
IMAGE = read_stages(REPO / "deploy" / "Dockerfile")[-1]
V1 = {"A2A-Version": "1.0"}
SEND = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "SendMessage",
    "params": {"message": {"messageId": "m-1", "role": "ROLE_USER", "parts": [{"text": "def f():\n    return 1\n"}]}},
}


def free_port() -> int:
    sock = free_socket()
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()


def image_env(stage: Stage, tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    """The image's ENV on this machine: its ports and data dir moved, ``PATH`` and the venv left as they are."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWITCHBOARD_", "OTEL_"))}
    env |= {k: v for k, v in stage.env().items() if k not in ("PATH", "HOME")}
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    env |= {
        "PYTHONPATH": str(REPO),
        "SWITCHBOARD_PORT": str(port),
        "SWITCHBOARD_GRPC_PORT": "0",
        "SWITCHBOARD_DATA_DIR": str(data),
    }
    return env | extra


def image_command(stage: Stage) -> list[str]:
    """ENTRYPOINT + CMD, with this interpreter standing in for the image's ``python``."""
    command = stage.exec_form("ENTRYPOINT") + stage.exec_form("CMD")
    assert command[0] == "python", "the image runs its venv's python"
    return [sys.executable, *command[1:]]


@contextmanager
def image_process(env: dict[str, str], cwd: Path) -> Iterator[subprocess.Popen[bytes]]:
    """The image's command running in ``cwd``; its log goes to ``cwd/gateway.log`` (shown when the block fails)."""
    log = cwd / "gateway.log"
    with log.open("wb") as sink:
        proc = subprocess.Popen(image_command(IMAGE), env=env, cwd=cwd, stderr=sink)
    try:
        yield proc
    except BaseException as exc:
        exc.add_note("gateway log (last 3000 characters):\n" + log.read_text(errors="replace")[-3000:])
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def make_compose_keys(directory: Path) -> dict[str, str]:
    """The keys deploy/compose/make_keys.py makes (the compose stack's), by caller name."""
    done = subprocess.run(
        [sys.executable, str(REPO / "deploy" / "compose" / "make_keys.py"), str(directory)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return {p.stem: p.read_text().strip() for p in directory.glob("*.key")}


def test_the_image_binds_every_address_and_runs_python_m_gateway_serve() -> None:
    assert image_command(IMAGE)[1:] == ["-m", "gateway", "serve", "--host", "0.0.0.0"]
    assert IMAGE.env()["SWITCHBOARD_DATA_DIR"] == "/data"
    assert "SWITCHBOARD_INSECURE" not in IMAGE.env(), "the image is secure by default"
    assert IMAGE.user().split(":")[0] not in ("0", "root"), "the image runs as a non-root user"


async def test_the_image_command_with_the_documented_api_key_file_serves_and_is_healthy(tmp_path: Path) -> None:
    keys = make_compose_keys(tmp_path / "secrets")
    port = free_port()
    env = image_env(IMAGE, tmp_path, port, SWITCHBOARD_AUTH_API_KEYS_FILE=str(tmp_path / "secrets" / "api-keys"))
    with image_process(env, tmp_path) as proc:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_until_ready(http, proc, timeout_s=60)
            assert (await http.get("/healthz")).status_code == 200, "probes need no credentials"
            health = await asyncio.create_subprocess_exec(*IMAGE.healthcheck(), env=env)
            assert await asyncio.wait_for(health.wait(), 30) == 0, "the image's HEALTHCHECK passes"
            anonymous = await http.post("/agents/complexity-reviewer", json=SEND, headers=V1)
            assert anonymous.status_code == 401, "auth is on"
            call = await http.post(
                "/agents/complexity-reviewer", json=SEND, headers={**V1, "X-API-Key": keys["operator"]}
            )
            assert (
                call.status_code == 200 and call.json()["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
            )
            # The compose stack's Prometheus scrapes with its key (scope metrics:read); the operator's has none.
            scrape = await http.get("/metrics", headers={"X-API-Key": keys["prometheus"]})
            assert scrape.status_code == 200 and 'switchboard_requests_total{agent="complexity-reviewer"' in scrape.text
            assert (await http.get("/metrics", headers={"X-API-Key": keys["operator"]})).status_code == 403


def test_the_image_command_without_auth_exits_2_saying_what_to_configure(tmp_path: Path) -> None:
    env = image_env(IMAGE, tmp_path, free_port())
    done = subprocess.run(image_command(IMAGE), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "refusing to serve 0.0.0.0 without authentication" in done.stderr
    assert "SWITCHBOARD_AUTH_API_KEYS" in done.stderr and "SWITCHBOARD_AUTH_ISSUERS" in done.stderr


def test_the_healthcheck_probes_healthz() -> None:
    assert any("/healthz" in part for part in IMAGE.healthcheck())


def dockerignore_rules() -> list[tuple[bool, str]]:
    """(included, pattern) per .dockerignore line, in order (the last matching line decides)."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!")))
    return rules


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: ``*`` and ``?`` stay inside one path segment, ``**/`` spans any."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
            i += 1
    return re.compile(out)


def in_build_context(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Whether ``path`` (relative to the repository root) is sent to the builder, as .dockerignore says.

    Each pattern is matched against the path and its parent directories; the last matching line decides.
    """
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for keep, pattern in rules:
        if any(pattern_regex(pattern).fullmatch(prefix) for prefix in prefixes):
            included = keep
    return included


def test_the_build_context_holds_what_the_image_copies_and_no_state_or_keys() -> None:
    rules = dockerignore_rules()
    for source in IMAGE.copy_sources() + [
        s for stage in read_stages(REPO / "deploy/Dockerfile") for s in stage.copy_sources()
    ]:
        assert in_build_context(source, rules), f"COPY {source} would fail: .dockerignore leaves it out"
    for secret in [
        ".switchboard/keys/abc.pem",
        ".switchboard/switchboard.db",
        ".venv/bin/python",
        ".git/config",
        "deploy/secrets/api-keys",
        "tests/samples/planted.py",
        "gateway/__pycache__/app.cpython-311.pyc",
        "gateway/.switchboard/keys/k.pem",
        ".env",
    ]:
        assert not in_build_context(secret, rules), f"{secret} would be sent to the builder"
