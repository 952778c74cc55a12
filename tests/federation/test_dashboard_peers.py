"""The dashboard's view of federation on org A: peers, trust anchors, imported agents, why one is out of service."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.federation.conftest import Orgs
from tests.federation.support import rpc
from tests.ui.conftest import PAGE_TIMEOUT_MS, SCREENSHOTS, chromium, loaded

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.asyncio(loop_scope="module")
__all__ = ["chromium"]  # the browser fixture, used here too


def send_params(text: str) -> dict[str, Any]:
    return {"message": {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": text}]}}


async def test_peers_show_their_trust_anchors_imported_agents_card_checks_and_relay_latency(orgs: Orgs) -> None:
    async with httpx.AsyncClient(base_url=orgs.a.url, timeout=20) as http:
        sent = await rpc(http, orgs.a.agent_url("b-echo"), "SendMessage", send_params("relayed"))
        assert sent["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", sent
        peers = {p["name"]: p for p in (await http.get("/ui/api/peers")).json()["peers"]}
    assert {"b", "bg", "b2"} <= set(peers)
    b = peers["b"]
    assert b["baseUrl"] == orgs.b.public_url
    assert b["trust"]["pinnedKids"] == [key["kid"] for key in orgs.b.jwks()["keys"]]
    assert b["trust"]["requireSignature"] is True and b["trust"]["algorithms"] == ["ES256", "EdDSA"]
    agents = {a["name"]: a for a in b["agents"]}
    assert {"b-echo", "b-recorder", "b-counter", "b-streamer", "b-loop-b"} <= set(agents)
    echo = agents["b-echo"]
    assert echo["health"] == "trusted" and echo["problem"] == "" and echo["checkedAt"] is not None
    assert echo["url"] == f"{orgs.b.public_url}/agents/echo/.well-known/agent-card.json"
    assert b["relay"]["count"] >= 1 and b["relay"]["meanS"] > 0 and b["relay"]["p95S"] >= b["relay"]["meanS"] / 10


async def test_an_agent_whose_card_fails_verification_is_listed_out_of_service_with_the_reason(orgs: Orgs) -> None:
    async with httpx.AsyncClient(base_url=orgs.a.url, timeout=20) as http:
        refused = await rpc(http, orgs.a.agent_url("forged-byte"), "SendMessage", send_params("count me"))
        assert "forged-byte is out of service" in refused["error"]["message"], refused
        agents = {a["name"]: a for a in (await http.get("/ui/api/agents")).json()}
        peers = (await http.get("/ui/api/peers")).json()["peers"]
    origin = agents["forged-byte"]["origin"]
    assert origin["health"] == "untrusted" and "bad-signature" in origin["problem"]
    assert agents["b-echo"]["origin"]["peer"] == "b"
    (peer,) = [p for p in peers if any(a["name"] == "forged-byte" for a in p["agents"])]
    assert peer["configured"] == "agent file", "its trust comes from the agent's own file"
    assert peer["trust"] is None, "the forger's agents each trust it their own way (pinned keys, an allowed jku)"
    out = [a for a in peer["outOfService"] if a["name"] == "forged-byte"]
    assert len(out) == 1 and out[0]["health"] == "untrusted" and "bad-signature" in out[0]["problem"]


async def test_a_step_on_another_gateway_is_drawn_as_a_hop_to_its_peer(orgs: Orgs, chromium: Browser) -> None:
    """Org A's slow-partner workflow runs its step on org B's echo: the run page draws that step dashed, via b."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    page = await context.new_page()
    try:
        await page.goto(f"{orgs.a.url}/ui/agents/slow-partner")
        await loaded(page, "agent")
        await page.fill("[data-role=try] textarea[name=text]", "hello, partner")
        await page.click("[data-role=try] button[type=submit]")
        await page.wait_for_selector("[data-role=drawing] .node.end.state-completed", timeout=PAGE_TIMEOUT_MS)
        step = page.locator("svg[data-role=drawing] [data-step]")
        assert await step.count() == 1
        assert await step.get_attribute("data-agent") == "b-echo"
        assert "remote" in (await step.get_attribute("class") or "").split()
        assert "via b" in (await step.text_content() or "")
        await page.goto(f"{orgs.a.url}/ui/peers")
        await loaded(page, "peers")
        b = await page.inner_text("[data-peer=b]")
        assert "pinned keys" in b and "b-echo" in b and "Relays: " in b
        SCREENSHOTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(SCREENSHOTS / "peers.png"), full_page=True)
    finally:
        await context.close()
