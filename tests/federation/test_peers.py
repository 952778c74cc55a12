"""Peer configuration and import: bad settings say what is wrong; a forged card never adds an agent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cards.keys import KeyRing, SigningKey
from gateway.cards.signing import sign_card_dict
from gateway.errors import AgentFileError
from gateway.federation.discovery import import_peer, spec_from_card
from gateway.federation.hub import Federation, load_peers_file
from gateway.federation.peers import Peer, PeerConfigError
from gateway.hosting.registry import Registry
from gateway.spec import A2ARuntime, AgentSpec, PeerSpec, TrustSpec

BASE = "https://peer.example"
RING = KeyRing((SigningKey.generate(),))
CARD_URL = f"{BASE}/agents/echo/.well-known/agent-card.json"


def runtime(**values: Any) -> dict[str, Any]:
    return {"kind": "a2a", "card_url": CARD_URL, **values}


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        (runtime(), "needs trust anchors"),
        (runtime(peer="b", trust={"jwks": {"keys": []}}), "come from the peer"),
        (runtime(trust={"algorithms": ["ES256"]}), "no trust anchor"),
        (runtime(trust={"jwks": {"keys": []}, "algorithms": ["HS256"]}), "algorithms"),
        (runtime(card_url="file:///etc/passwd", peer="b"), "card_url"),
    ],
)
def test_a_remote_agent_without_sound_trust_settings_is_refused(values: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        A2ARuntime.model_validate(values)


def test_a_peers_file_error_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = tmp_path / "peers.yaml"
    path.write_text(
        "format: 1\npeers:\n  - name: b\n    base_url: https://b.example\n    trust: {}\n    colour: blue\n"
    )
    with pytest.raises(PeerConfigError, match=r"peers\.yaml: peers\.0\.trust.*; peers\.0\.colour"):
        load_peers_file(path)


def test_an_agent_naming_an_unknown_peer_is_refused_naming_it(tmp_path: Path) -> None:
    spec = AgentSpec.model_validate(
        {
            "format": 1,
            "name": "remote",
            "description": "A remote agent.",
            "skills": [{"id": "s", "name": "S", "description": "d", "tags": ["t"]}],
            "runtime": runtime(peer="nobody"),
        }
    )
    with pytest.raises(PeerConfigError, match=r"remote: runtime\.peer: 'nobody' is not a peer"):
        Federation(agents_dir=tmp_path).remote_for(spec)


def test_an_imported_agent_may_not_take_a_local_agents_name(tmp_path: Path) -> None:
    (tmp_path / "b-echo.yaml").write_text(
        "format: 1\nname: b-echo\ndescription: Local.\n"
        "skills: [{id: s, name: S, description: d, tags: [t]}]\n"
        "runtime: {kind: python, entrypoint: 'gateway.agents.echo:EchoExecutor'}\n"
    )
    imported = spec_from_card(card("echo"), "b-echo", A2ARuntime(kind="a2a", card_url=CARD_URL, peer="b"), "b")
    with pytest.raises(AgentFileError, match=r"b-echo\.yaml: name: agent 'b-echo' is also imported from a peer"):
        Registry.load(tmp_path, imported=[imported])


def card(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "description": "Echoes. Docs at https://peer.example/docs.",
        "version": "2.0.0",
        "supportedInterfaces": [
            {"url": f"{BASE}/agents/{name}", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        ],
        "capabilities": {"streaming": True},
        "defaultInputModes": ["text/plain"],
        "defaultOutputModes": ["text/plain"],
        "skills": [{"id": "echo it", "name": "Echo", "description": "echoes"}],
        **extra,
    }


def test_a_spec_made_from_a_remote_card_keeps_its_content_without_urls() -> None:
    spec = spec_from_card(card("echo"), "b-echo", A2ARuntime(kind="a2a", card_url=CARD_URL, peer="b"), "b")
    assert spec.name == "b-echo" and spec.version == "2.0.0"
    assert spec.description == "Echoes. Docs at <link>"
    (skill,) = spec.skills
    assert (skill.id, skill.tags) == ("echo-it", ["echo-it"])


async def test_import_all_takes_only_the_cards_that_verify() -> None:
    genuine = json.dumps(sign_card_dict(card("echo"), RING)).encode()
    forged = json.dumps(sign_card_dict(card("evil"), RING)).replace("Echoes", "echoes").encode()
    catalog = {
        "linkset": [
            {
                "anchor": f"{BASE}/.well-known/api-catalog",
                "item": [
                    {"href": CARD_URL, "title": "echo"},
                    {"href": f"{BASE}/agents/evil/.well-known/agent-card.json", "title": "evil"},
                    {"href": "https://elsewhere.example/agents/x/.well-known/agent-card.json", "title": "x"},
                ],
            }
        ]
    }
    bodies = {
        "/.well-known/api-catalog": json.dumps(catalog).encode(),
        "/agents/echo/.well-known/agent-card.json": genuine,
        "/agents/evil/.well-known/agent-card.json": forged,
    }
    fetched: list[str] = []

    def peer(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        return httpx.Response(200, content=bodies[request.url.path])

    spec = PeerSpec.model_validate({"name": "b", "base_url": BASE, "trust": {"jwks": RING.jwks()}, "import": "all"})
    configured = Peer.configure("b", TrustSpec(jwks=RING.jwks()), None, base=Path("."), where="test")
    async with httpx.AsyncClient(transport=httpx.MockTransport(peer)) as http:
        imported = await import_peer(spec, configured, http)
    assert [entry.spec.name for entry in imported] == ["b-echo"]
    assert not any("elsewhere" in url for url in fetched), "a catalog entry on another origin is not fetched"
