"""Across gateways, rights stay where they are granted: B checks its scopes against A's client identity.

Org B requires API keys: ``vault`` needs ``vault:use``, ``secret`` needs ``sec:run``, and the key B gave
org A holds only ``vault:use``. Org A imports both and also requires API keys; alice holds every scope
on A. Her relayed call to B's ``vault`` works and runs on B as org A, never as alice; her call to B's
``secret``, alone or as a workflow step, is refused by B with B's reason, whatever she holds on A.

And A's own rules hold before anything is relayed: A's agent file for B's vault (``guarded-vault``) needs
``sec:run`` on A, which carol (``vault:use`` only) lacks: her call, direct or as a workflow's step, is
refused by A and never reaches B, although A's grant at B would admit it.

A imports B's vault a second time through peer ``bs``, whose settings give ``scopes: [peer:use]``: every agent
imported from it needs that scope on A (alice holds it, carol does not), directly and as a workflow's step; an
agent file for B's vault through ``bs`` (``open-vault``, no scopes) sets its own, and carol may call it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gateway.auth.api_keys import api_key_line, new_api_key
from tests.federation.support import Org, agent_file, org, workflow, write_yaml

ECHO = "gateway.agents.echo:EchoExecutor"
V1 = {"A2A-Version": "1.0"}
WAIT_S = 30.0


@dataclass(frozen=True)
class Pair:
    a: Org
    b: Org
    alice: str  # alice's key on A
    org_a: str  # the key B gave org A
    carol: str  # carol's key on A: vault:use, not sec:run


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    root = tmp_path_factory.mktemp("peer-scopes")
    alice, carol, org_a = new_api_key(), new_api_key(), new_api_key()
    b = org("org-b", root, SWITCHBOARD_AUTH_API_KEYS=json.dumps([api_key_line("org-a", org_a, ["vault:use"])]))
    agent_file(b.folder / "agents", "vault", {"kind": "python", "entrypoint": ECHO}, scopes=["vault:use"])
    agent_file(b.folder / "agents", "secret", {"kind": "python", "entrypoint": ECHO}, scopes=["sec:run"])
    a = None
    try:
        b.start()
        b.wait_ready()
        a = org(
            "org-a",
            root,
            SWITCHBOARD_PEERS=str(root / "org-a" / "peers.yaml"),
            SWITCHBOARD_AUTH_API_KEYS=json.dumps(
                [
                    api_key_line("alice", alice, ["vault:use", "sec:run", "peer:use"]),
                    api_key_line("carol", carol, ["vault:use"]),
                ]
            ),
            A_TO_B_KEY=org_a,
        )
        workflow(a.folder / "agents", "via-b", "sequential", ["b-secret"])
        vault_card = f"{b.public_url}/agents/vault/.well-known/agent-card.json"
        guarded = {"kind": "a2a", "card_url": vault_card, "peer": "b"}
        agent_file(a.folder / "agents", "guarded-vault", guarded, scopes=["sec:run"])
        workflow(a.folder / "agents", "via-guarded", "sequential", ["guarded-vault"])
        workflow(a.folder / "agents", "via-bs", "sequential", ["bs-vault"])
        agent_file(a.folder / "agents", "open-vault", {"kind": "a2a", "card_url": vault_card, "peer": "bs"})
        peer = {
            "name": "b",
            "base_url": b.public_url,
            "trust": {"jwks": b.jwks()},
            "credentials": {"kind": "api-key", "key_env": "A_TO_B_KEY"},
            "import": ["vault", "secret"],
        }
        scoped = {**peer, "name": "bs", "import": ["vault"], "scopes": ["peer:use"]}
        write_yaml(a.folder / "peers.yaml", {"format": 1, "peers": [peer, scoped]})
        a.start()
        a.wait_ready()
        yield Pair(a=a, b=b, alice=alice, org_a=org_a, carol=carol)
    finally:
        for each in (a, b):
            if each is not None:
                each.stop()


async def send(org_url: str, agent: str, key: str, text: str) -> dict[str, Any]:
    message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        answer = await http.post(f"{org_url}/agents/{agent}", json=body, headers={**V1, "X-API-Key": key})
    assert answer.status_code == 200, answer.text
    reply: dict[str, Any] = answer.json()
    return reply


async def list_tasks(org_url: str, agent: str, key: str) -> list[dict[str, Any]]:
    body = {"jsonrpc": "2.0", "id": 2, "method": "ListTasks", "params": {}}
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        answer = await http.post(f"{org_url}/agents/{agent}", json=body, headers={**V1, "X-API-Key": key})
    tasks: list[dict[str, Any]] = answer.json()["result"].get("tasks", [])
    return tasks


async def test_a_relayed_call_runs_on_the_peer_as_this_gateway_within_the_peers_grant(pair: Pair) -> None:
    reply = await send(pair.a.url, "b-vault", pair.alice, "hello from alice")
    task = reply["result"]["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED", task
    # on B, the relayed task is org A's: B's owner scoping sees A's client identity, not alice
    on_b = await list_tasks(pair.b.url, "vault", pair.org_a)
    assert any(t["history"][0]["parts"][0]["text"] == "hello from alice" for t in on_b if t.get("history")), on_b


async def test_a_peer_refuses_what_its_grant_to_this_gateway_lacks_whatever_the_caller_holds_here(pair: Pair) -> None:
    direct = await send(pair.a.url, "b-secret", pair.alice, "reveal it")
    assert "result" not in direct, direct
    assert direct["error"]["message"] == "b: SendMessage to b-secret: HTTP 403", direct
    assert direct["error"]["data"][0]["metadata"]["reason"] == "peer-refused"
    run = (await send(pair.a.url, "via-b", pair.alice, "reveal it"))["result"]["task"]
    assert run["status"]["state"] == "TASK_STATE_FAILED", run
    assert "HTTP 403" in json.dumps(run["status"]), run["status"]
    assert not [a for a in run.get("artifacts", []) if "reveal it" in json.dumps(a)], run["artifacts"]
    assert await list_tasks(pair.b.url, "vault", pair.org_a)  # B still serves A within its grant
    async with httpx.AsyncClient(timeout=WAIT_S) as http:  # and B's own refusal names what A's key lacks
        body = {"jsonrpc": "2.0", "id": 3, "method": "SendMessage", "params": {"message": {
            "role": "ROLE_USER", "parts": [{"text": "x"}], "messageId": str(uuid.uuid4())}}}  # fmt: skip
        refused = await http.post(f"{pair.b.url}/agents/secret", json=body, headers={**V1, "X-API-Key": pair.org_a})
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == "apikey:org-a lacks scope(s) sec:run required by agent 'secret'"


async def test_this_gateways_scopes_on_a_remote_agent_hold_before_any_relay_direct_or_as_a_step(pair: Pair) -> None:
    refusal = "apikey:carol lacks scope(s) sec:run required by agent 'guarded-vault'"
    text = f"carol asks {uuid.uuid4()}"
    message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        direct = await http.post(
            f"{pair.a.url}/agents/guarded-vault",
            json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}},
            headers={**V1, "X-API-Key": pair.carol},
        )
    assert direct.status_code == 403 and direct.json()["error"]["message"] == refusal, direct.text
    run = (await send(pair.a.url, "via-guarded", pair.carol, text))["result"]["task"]
    assert run["status"]["state"] == "TASK_STATE_FAILED", run
    assert refusal in json.dumps(run["status"]), run["status"]
    alice_text = f"alice asks {uuid.uuid4()}"
    alice = (await send(pair.a.url, "via-guarded", pair.alice, alice_text))["result"]["task"]
    assert alice["status"]["state"] == "TASK_STATE_COMPLETED", alice
    on_b = json.dumps(await list_tasks(pair.b.url, "vault", pair.org_a))
    assert alice_text in on_b, "alice's step was relayed"
    assert text not in on_b, "carol's never reached the peer"


async def test_a_peers_scopes_guard_every_agent_imported_from_it_before_any_relay(pair: Pair) -> None:
    refusal = "apikey:carol lacks scope(s) peer:use required by agent 'bs-vault'"
    text = f"carol asks bs {uuid.uuid4()}"
    message = {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}
    async with httpx.AsyncClient(timeout=WAIT_S) as http:
        direct = await http.post(
            f"{pair.a.url}/agents/bs-vault",
            json={"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}},
            headers={**V1, "X-API-Key": pair.carol},
        )
        card = (await http.get(f"{pair.a.url}/agents/bs-vault/.well-known/agent-card.json")).json()
    assert direct.status_code == 403 and direct.json()["error"]["message"] == refusal, direct.text
    assert "peer:use" in json.dumps(card["securityRequirements"]), card["securityRequirements"]
    run = (await send(pair.a.url, "via-bs", pair.carol, text))["result"]["task"]
    assert run["status"]["state"] == "TASK_STATE_FAILED", run
    assert refusal in json.dumps(run["status"]), run["status"]
    alice_text = f"alice asks bs {uuid.uuid4()}"
    alice = (await send(pair.a.url, "via-bs", pair.alice, alice_text))["result"]["task"]
    assert alice["status"]["state"] == "TASK_STATE_COMPLETED", alice
    own_file = f"carol asks the open vault {uuid.uuid4()}"
    opened = (await send(pair.a.url, "open-vault", pair.carol, own_file))["result"]["task"]
    assert opened["status"]["state"] == "TASK_STATE_COMPLETED", "an agent file for the peer's agent sets its own scopes"
    on_b = json.dumps(await list_tasks(pair.b.url, "vault", pair.org_a))
    assert alice_text in on_b and own_file in on_b, "alice's step and carol's call through the open file were relayed"
    assert text not in on_b, "carol's calls to the peer's scoped import never reached the peer"
