"""``switchboard serve`` on a non-loopback address with no auth configured refuses to start (exit 2, saying
why and what to do) unless the operator says ``--insecure`` / ``SWITCHBOARD_INSECURE=true``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.serve import unsafe_bind
from gateway.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
KEY_LINE = f"ops:{'0' * 64}"


def serve(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m gateway serve ARGV`` in a clean environment (plus ``env``); it must end by itself."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    clean |= {"SWITCHBOARD_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(REPO_ROOT), **env}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "serve", "--port", "0", "--grpc-port", "0", *argv],
        env=clean,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "gateway.example.test"])
def test_non_loopback_without_auth_is_refused(host: str) -> None:
    refusal = unsafe_bind(Settings(host=host))
    assert refusal is not None and "without authentication" in refusal and "--insecure" in refusal


@pytest.mark.parametrize(
    "settings",
    [
        Settings(host="127.0.0.1"),
        Settings(host="::1"),
        Settings(host="localhost"),
        Settings(host="0.0.0.0", insecure=True),
        Settings(host="0.0.0.0", auth_api_keys=[KEY_LINE]),
    ],
    ids=["ipv4-loopback", "ipv6-loopback", "localhost", "insecure", "api-keys"],
)
def test_loopback_auth_or_insecure_may_serve(settings: Settings) -> None:
    assert unsafe_bind(settings) is None


def test_serve_exits_2_with_the_reason(tmp_path: Path) -> None:
    done = serve(tmp_path, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "refusing to serve 0.0.0.0 without authentication" in done.stderr
    assert "SWITCHBOARD_AUTH_API_KEYS" in done.stderr and "--insecure" in done.stderr


@pytest.mark.parametrize(("argv", "env"), [(["--insecure"], {}), ([], {"SWITCHBOARD_INSECURE": "true"})])
def test_insecure_passes_the_bind_check(tmp_path: Path, argv: list[str], env: dict[str, str]) -> None:
    # An agents folder that does not exist stops the start right after the bind check, binding nothing.
    done = serve(tmp_path, "--host", "0.0.0.0", "--agents", str(tmp_path / "no-agents"), *argv, **env)
    assert done.returncode == 2
    assert "refusing to serve" not in done.stderr
    assert "cannot start" in done.stderr and "with no authentication (--insecure)" in done.stderr


# -- a setting that leaves auth off is no auth at all ------------------------------------------------


@pytest.mark.parametrize(
    "content", ["", "\n# no keys yet\n\n", "   # ops:aaaa commented out\n"], ids=["empty", "comments", "blank"]
)
def test_a_key_file_with_no_keys_is_no_auth(tmp_path: Path, content: str) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(content)
    refusal = unsafe_bind(Settings(host="0.0.0.0", auth_api_keys_file=keys, auth_issuers=[]))
    assert refusal is not None and "without authentication" in refusal and "holds no keys" in refusal


def test_a_key_file_with_a_key_may_serve(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# ops\n{KEY_LINE}\n")
    assert unsafe_bind(Settings(host="0.0.0.0", auth_api_keys_file=keys)) is None


def test_serve_refuses_an_empty_key_file_and_an_empty_issuer_list(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# nobody yet\n")
    done = serve(tmp_path, "--host", "0.0.0.0", SWITCHBOARD_AUTH_API_KEYS_FILE=str(keys), SWITCHBOARD_AUTH_ISSUERS="[]")
    assert done.returncode == 2
    assert "refusing to serve 0.0.0.0 without authentication" in done.stderr
    assert "holds no keys" in done.stderr


def test_serve_refuses_an_unreadable_key_file(tmp_path: Path) -> None:
    done = serve(tmp_path, "--host", "0.0.0.0", SWITCHBOARD_AUTH_API_KEYS_FILE=str(tmp_path / "missing.txt"))
    assert done.returncode == 2
    assert "cannot read the API key file" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({}, "auth: off"),
        ({"SWITCHBOARD_AUTH_API_KEYS": KEY_LINE}, "auth: 1 API key"),
    ],
    ids=["off", "api-keys"],
)
def test_serve_logs_which_auth_is_on(tmp_path: Path, env: dict[str, str], said: str) -> None:
    # An agents folder that does not exist stops the start right after the checks, binding nothing.
    done = serve(tmp_path, "--host", "127.0.0.1", "--agents", str(tmp_path / "no-agents"), **env)
    assert done.returncode == 2
    assert said in done.stderr, done.stderr


@pytest.mark.parametrize("issuers", ["", "{}", "[{}]"], ids=["empty", "object", "incomplete"])
def test_an_unreadable_issuer_list_stops_the_start_with_a_reason(tmp_path: Path, issuers: str) -> None:
    done = serve(tmp_path, "--host", "0.0.0.0", SWITCHBOARD_AUTH_ISSUERS=issuers)
    assert done.returncode == 2
    assert "cannot start" in done.stderr and "auth_issuers" in done.stderr
    assert "Traceback" not in done.stderr
