"""Org A, org B (behind a proxy that can drop connections) and org B2, as real gateway processes.

B hosts an echo, a call recorder, a counter, a streamer and a workflow that calls back into A.
A imports B's agents twice: as peer ``b`` over JSON-RPC with a static bearer token, and as peer
``bg`` over gRPC with OAuth 2.0 client credentials; it imports B2's echo (``b2``), and hosts
workflows over them and agent files whose cards a forger serves tampered with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.federation.servers import CardForger, TokenServer
from tests.federation.support import (
    BackgroundLoop,
    Org,
    TcpProxy,
    agent_file,
    free_port,
    org,
    python_agent,
    workflow,
    write_yaml,
)

ECHO = "gateway.agents.echo:EchoExecutor"
A_TO_B_TOKEN = "a-secret-for-b"
A_TO_B_API_KEY = "a-key-for-b"
USER_TOKEN = "end-user-token-never-forwarded"
OAUTH_CLIENT, OAUTH_SECRET = "org-a", "org-a-oauth-secret"
FORGED = {
    "forged-byte": "forged-byte",
    "untrusted-key": "untrusted-key",
    "hs256-card": "hs256",
    "none-card": "alg-none",
    "unsigned-card": "unsigned",
    "foreign-jku": "foreign-jku",
}


@dataclass
class Orgs:
    """The organisations and the helpers around them."""

    a: Org
    b: Org
    b2: Org
    proxy: TcpProxy
    forger: CardForger
    tokens: TokenServer


def _start(*orgs: Org) -> None:
    for each in orgs:
        each.start()
    for each in orgs:
        each.wait_ready()


def _org_b(root: Path, ports: dict[str, int]) -> Org:
    a_port, proxy_port, grpc_port, grpc_proxy = ports["a"], ports["proxy"], ports["b_grpc"], ports["grpc_proxy"]
    b = org(
        "org-b",
        root,
        port=ports["b"],
        public_url=f"http://127.0.0.1:{proxy_port}",
        SWITCHBOARD_GRPC_PORT=str(grpc_port),
        SWITCHBOARD_GRPC_PUBLIC_URL=f"127.0.0.1:{grpc_proxy}",
        B_TO_A_TOKEN="b-secret-for-a",
    )
    agents = b.folder / "agents"
    for name in ("echo", "counter"):
        python_agent(agents, name, ECHO)
    python_agent(agents, "recorder", "tests.federation.agents:HeaderRecorder")
    python_agent(agents, "streamer", "tests.federation.agents:Streamer")
    workflow(agents, "loop-b", "sequential", ["a-loop"])
    a_origin = f"http://127.0.0.1:{a_port}"
    runtime = {
        "kind": "a2a",
        "card_url": f"{a_origin}/agents/loop-a/.well-known/agent-card.json",
        "trust": {"allowed_jku_origins": [a_origin]},
        "credentials": {"kind": "bearer", "token_env": "B_TO_A_TOKEN"},
    }
    agent_file(agents, "a-loop", runtime, description="Org A's loop-a workflow, through org A's gateway.")
    return b


def _org_a(root: Path, port: int, b: Org, b2: Org, forger: CardForger, token_url: str) -> Org:
    a = org(
        "org-a",
        root,
        port=port,
        SWITCHBOARD_PEERS=str(root / "org-a" / "peers.yaml"),
        A_TO_B_TOKEN=A_TO_B_TOKEN,
        A_TO_B_API_KEY=A_TO_B_API_KEY,
        A_OAUTH_SECRET=OAUTH_SECRET,
        SWITCHBOARD_MCP_TOOLS="echo,b-echo,slow-local,slow-partner",
    )
    agents = a.folder / "agents"
    b_jwks = json.dumps(b.jwks())
    (a.folder / "b-jwks.json").write_text(b_jwks)
    (agents / "b-jwks.json").write_text(b_jwks)
    python_agent(agents, "echo", ECHO)
    python_agent(agents, "intake", "tests.federation.agents:intake")
    for suffix, partner in (("", "b-recorder"), ("-grpc", "bg-recorder")):
        options = {"rules": [{"when": "partner", "to": partner}]}
        workflow(agents, f"partner-handoff{suffix}", "handoff", ["intake", partner], options=options)
        workflow(agents, f"slow-partner{suffix}", "sequential", [partner.replace("recorder", "echo")])
    workflow(agents, "slow-local", "sequential", ["echo"])
    workflow(agents, "timeout-partner", "sequential", ["b-echo"], limits={"step_timeout_s": 1, "retries": 0})
    workflow(agents, "loop-a", "sequential", ["b-loop-b"])
    workflow(
        agents,
        "fallback-flow",
        "sequential",
        ["b2-echo"],
        options={"fallbacks": {"b2-echo": ["echo"]}},
        limits={"retries": 0, "breaker_threshold": 1, "breaker_reset_s": 300},
    )
    for name, variant in FORGED.items():
        trust: dict[str, object] = {"jwks_file": "b-jwks.json"}
        if variant == "foreign-jku":
            trust = {"allowed_jku_origins": [b.public_url]}
        card_url = f"{forger.url}/cards/{variant}/agent-card.json"
        agent_file(agents, name, {"kind": "a2a", "card_url": card_url, "trust": trust})
    flip_url = f"{forger.url}/cards/flip/agent-card.json"
    agent_file(agents, "flip-card", {"kind": "a2a", "card_url": flip_url, "trust": {"jwks_file": "b-jwks.json"}})
    peers = [
        {
            "name": "b",
            "base_url": b.public_url,
            "trust": {"jwks": json.loads(b_jwks)},
            "credentials": {"kind": "bearer", "token_env": "A_TO_B_TOKEN"},
            "transports": ["JSONRPC"],
            "import": ["echo", "recorder", "counter", "streamer", "loop-b"],
        },
        {
            "name": "bg",
            "base_url": b.public_url,
            "trust": {"jwks_file": "b-jwks.json"},
            "credentials": {
                "kind": "oauth2",
                "token_url": token_url,
                "client_id": OAUTH_CLIENT,
                "client_secret_env": "A_OAUTH_SECRET",
            },
            "transports": ["GRPC"],
            "import": "all",
        },
        {"name": "b2", "base_url": b2.public_url, "trust": {"jwks": b2.jwks()}, "import": ["echo"]},
    ]
    # The recorder behind peers whose credential leaves Authorization alone: no credential, an API key.
    api_key = {"kind": "api-key", "key_env": "A_TO_B_API_KEY"}
    for name, credentials, transport in (
        ("bn", {"kind": "none"}, "JSONRPC"),
        ("bng", {"kind": "none"}, "GRPC"),
        ("bk", api_key, "JSONRPC"),
        ("bkg", api_key, "GRPC"),
    ):
        peers.append(
            {
                "name": name,
                "base_url": b.public_url,
                "trust": {"jwks": json.loads(b_jwks)},
                "credentials": credentials,
                "transports": [transport],
                "import": ["recorder"],
            }
        )
    write_yaml(a.folder / "peers.yaml", {"format": 1, "peers": peers})
    return a


@pytest.fixture(scope="session")
def orgs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orgs]:
    """The three organisations, started once per test session (each test leaves them as it found them, but b2)."""
    root = tmp_path_factory.mktemp("federation")
    background = BackgroundLoop()
    ports = {name: free_port() for name in ("a", "b", "b_grpc", "proxy", "grpc_proxy")}
    b = _org_b(root, ports)
    b2 = org("org-b2", root)
    python_agent(b2.folder / "agents", "echo", ECHO)
    proxy = TcpProxy(background, ports["b"], ports["proxy"])
    TcpProxy(background, ports["b_grpc"], ports["grpc_proxy"])
    tokens = TokenServer(OAUTH_CLIENT, OAUTH_SECRET)
    token_url = background.serve(tokens.app()) + "/token"
    forger = CardForger(
        genuine_url=f"{b.url}/agents/counter/.well-known/agent-card.json",
        flip_url=f"{b.url}/agents/echo/.well-known/agent-card.json",
        peer_jwks_url=f"{b.public_url}/.well-known/jwks.json",
    )
    forger.url = background.serve(forger.app())
    a = None
    try:
        _start(b, b2)
        a = _org_a(root, ports["a"], b, b2, forger, token_url)
        _start(a)
        yield Orgs(a=a, b=b, b2=b2, proxy=proxy, forger=forger, tokens=tokens)
    finally:
        for each in (a, b, b2):
            if each is not None:
                each.stop()
        background.close()
