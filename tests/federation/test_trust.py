"""Peer cards that do not verify are refused, with the reason named, and nothing reaches the peer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from gateway.federation.republish import ORIGIN_EXTENSION_URI
from tests.federation.conftest import Orgs
from tests.federation.support import rpc


def send_params(text: str, **configuration: Any) -> dict[str, Any]:
    message = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": text}]}
    return {"message": message, **({"configuration": configuration} if configuration else {})}


async def b_counter_tasks(orgs: Orgs) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        body = await rpc(http, orgs.b.agent_url("counter"), "ListTasks", {})
    tasks: list[dict[str, Any]] = body["result"].get("tasks", [])
    return tasks


@pytest.mark.parametrize(
    ("agent", "code"),
    [
        ("forged-byte", "bad-signature"),
        ("untrusted-key", "unknown-key"),
        ("hs256-card", "bad-algorithm"),
        ("none-card", "bad-algorithm"),
        ("unsigned-card", "no-signature"),
        ("foreign-jku", "untrusted-jku"),
    ],
)
async def test_an_untrusted_peer_card_is_refused_with_the_reason_and_nothing_is_called(
    orgs: Orgs, agent: str, code: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        body = await rpc(http, orgs.a.agent_url(agent), "SendMessage", send_params("count me"))
        listed = await rpc(http, orgs.a.agent_url(agent), "ListTasks", {})
        served = (await http.get(f"{orgs.a.agent_url(agent)}/.well-known/agent-card.json")).json()
    error = body.get("error")
    assert error is not None and error["code"] == -32054, body  # out of service (peer-card-untrusted)
    assert f"{agent} is out of service" in error["message"] and code in error["message"], error
    assert f"failed verification: {code}" in orgs.a.logged()
    assert listed["result"].get("tasks", []) == [], "the call was refused before any task existed"
    assert await b_counter_tasks(orgs) == [], "nothing reached the peer"
    (origin,) = [e for e in served["capabilities"]["extensions"] if e["uri"] == ORIGIN_EXTENSION_URI]
    assert origin["params"]["status"].startswith("untrusted") and code in origin["params"]["status"]
    assert origin["params"]["origin_signatures"] == []


async def test_a_card_that_stops_verifying_takes_its_agent_out_of_service(orgs: Orgs) -> None:
    url = orgs.a.agent_url("flip-card")
    async with httpx.AsyncClient(timeout=20) as http:
        before = await rpc(http, url, "SendMessage", send_params("while trusted"))
        orgs.forger.flip_bad = True  # the peer's card now has a changed byte; it is fetched again on the next call
        try:
            changed = await rpc(http, url, "SendMessage", send_params("after the change"))
            again = await rpc(http, url, "SendMessage", send_params("and again"))
        finally:
            orgs.forger.flip_bad = False
        served = (await http.get(f"{url}/.well-known/agent-card.json")).json()
    assert before["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", before
    for refused in (changed, again):
        assert "flip-card is out of service" in refused["error"]["message"], refused
        assert "bad-signature" in refused["error"]["message"]
    (origin,) = [e for e in served["capabilities"]["extensions"] if e["uri"] == ORIGIN_EXTENSION_URI]
    assert origin["params"]["status"].startswith("untrusted: "), origin
    assert f"flip-card (peer {orgs.forger.url.split('//')[1]}) is out of service" in orgs.a.logged()


async def test_a_push_url_aimed_at_a_private_address_is_refused_before_the_peer_is_called(orgs: Orgs) -> None:
    push = {"taskPushNotificationConfig": {"url": "http://127.0.0.1:9/steal", "id": "p1"}}
    async with httpx.AsyncClient(timeout=10) as http:
        body = await rpc(http, orgs.a.agent_url("b-counter"), "SendMessage", send_params("push me", **push))
    assert body["error"]["code"] == -32602 and "push notification URL" in body["error"]["message"], body
    assert await b_counter_tasks(orgs) == [], "nothing reached the peer"
