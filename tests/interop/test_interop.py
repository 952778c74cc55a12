"""Third-party A2A clients call a hosted agent by its card URL: Google ADK, @a2a-js/sdk, Microsoft Agent Framework.

Each client is the real package, run in a subprocess: the Python ones from their own venv
(``tests/interop/.venv``, from ``tests/interop/requirements.txt``), the JS one from
``tests/interop/js/node_modules``; ``.ci/run`` installs both. ADK accepts a card only when every
interface is on the card's own origin, so its gateway lists JSON-RPC and HTTP+JSON only
(``card_interfaces``, the documented setting); the others take the default card.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings

HERE = Path(__file__).resolve().parent
INTEROP_PYTHON = HERE / ".venv" / "bin" / "python"
JS_DIR = HERE / "js"
SAME_ORIGIN = ["JSONRPC", "HTTP+JSON"]
INSTALL = (
    "install them as .ci/run does (tests/interop/requirements.txt into tests/interop/.venv; npm ci in tests/interop/js)"
)


def card_url(gateway: RunningGateway, agent: str) -> str:
    return f"{gateway.agent_url(agent)}/.well-known/agent-card.json"


async def run_client(*argv: str, cwd: Path = HERE) -> dict[str, Any]:
    """Run a client to its end; the JSON line it printed last (the test fails with its stderr otherwise)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the client's venv, not this checkout
    pipe = asyncio.subprocess.PIPE
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, env=env, stdout=pipe, stderr=pipe)
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    lines = out.decode().strip().splitlines()
    assert proc.returncode == 0 and lines, err.decode()[-3000:]
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def python_client(name: str) -> list[str]:
    if not INTEROP_PYTHON.exists():
        pytest.skip(f"the interop clients' venv is missing: {INSTALL}")
    return [str(INTEROP_PYTHON), str(HERE / "clients" / name)]


def node_client() -> list[str]:
    node = shutil.which("node")
    if node is None or not (JS_DIR / "node_modules" / "@a2a-js" / "sdk").exists():
        pytest.skip(f"node or @a2a-js/sdk is missing: {INSTALL}")
    return [node, str(JS_DIR / "call_agent.mjs")]


@pytest.fixture
async def same_origin_gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway whose cards list only the interfaces on their own origin (gRPC is still served)."""
    async with running_gateway(make_settings(tmp_path / "same-origin", card_interfaces=SAME_ORIGIN)) as running:
        yield running


async def test_card_interfaces_chooses_what_the_cards_list(
    gateway: RunningGateway, same_origin_gateway: RunningGateway
) -> None:
    async with httpx.AsyncClient() as http:
        default = (await http.get(card_url(gateway, "echo"))).json()
        same_origin = (await http.get(card_url(same_origin_gateway, "echo"))).json()

    assert [i["protocolBinding"] for i in default["supportedInterfaces"]] == ["JSONRPC", "HTTP+JSON", "GRPC"]
    assert [i["protocolBinding"] for i in same_origin["supportedInterfaces"]] == SAME_ORIGIN


async def test_adk_remote_agent_calls_a_hosted_agent_by_card_url(same_origin_gateway: RunningGateway) -> None:
    result = await run_client(*python_client("adk_call.py"), card_url(same_origin_gateway, "echo"), "hello from adk")

    assert result["errors"] == []
    assert "hello from adk" in result["texts"]


async def test_adk_refuses_a_card_listing_grpc_on_another_port(gateway: RunningGateway) -> None:
    """Why ``card_interfaces`` exists: ADK wants every interface on the card's origin, and gRPC has its own port."""
    result = await run_client(*python_client("adk_call.py"), card_url(gateway, "echo"), "hello")

    assert result["texts"] == []
    assert any("must use https, or http on a loopback host: 127.0.0.1:" in e for e in result["errors"]), result


async def test_a2a_js_client_verifies_the_signed_card_and_calls_the_agent(gateway: RunningGateway) -> None:
    result = await run_client(*node_client(), card_url(gateway, "echo"), "hello from js", cwd=JS_DIR)

    assert result["verified"] == "echo"
    task = result["result"]
    assert task["status"]["state"] == 3  # TASK_STATE_COMPLETED
    assert task["artifacts"][0]["parts"][0]["content"] == {"$case": "text", "value": "hello from js"}


async def test_a2a_js_signature_check_fails_with_a_key_that_did_not_sign(gateway: RunningGateway) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pipe = asyncio.subprocess.PIPE
    argv = (*node_client(), card_url(gateway, "echo"), "hello", "--wrong-key")
    proc = await asyncio.create_subprocess_exec(*argv, cwd=JS_DIR, env=env, stdout=pipe, stderr=pipe)
    async with asyncio.timeout(90):
        _, err = await proc.communicate()

    assert proc.returncode != 0 and "No valid signatures found on agent card" in err.decode()


async def test_agent_framework_a2a_agent_calls_a_hosted_agent_by_its_card(gateway: RunningGateway) -> None:
    result = await run_client(*python_client("maf_call.py"), gateway.agent_url("echo"), "hello from maf")

    assert result == {"agent": "echo", "text": "hello from maf"}
