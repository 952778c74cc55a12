"""Slow and silent peers: bounded by the peer's ``timeout_s`` and the start-up deadline, never held open.

Real peers on loopback (``slow_peer``): one that never answers a call (over JSON-RPC, JSON-RPC
with SSE, and gRPC), one that sends the first event of a stream and then nothing, one whose task
runs long without a word (but answers GetTask), one that drips its card a byte at a time, and
ones whose api-catalog, card or answer is far over its size limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.cards.signing import CardVerificationError
from gateway.cards.verify import fetch_card
from gateway.errors import PeerUnavailableError
from gateway.federation.discovery import MAX_CATALOG_BYTES, catalog, import_peer
from gateway.federation.peers import MAX_ANSWER_BYTES, Peer
from gateway.federation.remote_cards import MAX_CARD_BYTES
from gateway.settings import Settings
from gateway.spec import PeerSpec
from gateway.testing import RunningGateway, running_gateway
from tests.conftest import make_settings
from tests.federation.slow_peer import FakePeer, SilentGrpcPeer
from tests.federation.support import BackgroundLoop, python_agent, rpc, write_yaml

ECHO = "gateway.agents.echo:EchoExecutor"
TIMEOUT_S = 0.5
BOUND_S = 20.0
"""No test waits longer than this for something that should take a few times ``TIMEOUT_S``."""


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    loop = BackgroundLoop()
    try:
        yield loop
    finally:
        loop.close()


def serve(background: BackgroundLoop, peer: FakePeer) -> FakePeer:
    peer.url = background.serve(peer.app())
    return peer


def settings_for(tmp_path: Path, *peers: tuple[str, FakePeer, dict[str, Any]], **values: Any) -> Settings:
    """A gateway importing ``echo`` from each ``(name, peer, extra peer settings)``."""
    agents = tmp_path / "agents"
    agents.mkdir(exist_ok=True)
    python_agent(agents, "echo", ECHO)
    entries = [
        {"name": name, "base_url": peer.url, "trust": {"jwks": peer.jwks()}, "import": ["echo"], **extra}
        for name, peer, extra in peers
    ]
    write_yaml(tmp_path / "peers.yaml", {"format": 1, "peers": entries})
    return make_settings(tmp_path, agents=agents, peers=tmp_path / "peers.yaml", root_agent="echo", **values)


def message() -> dict[str, Any]:
    return {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": "hello?"}]}


async def call(gateway: RunningGateway, agent: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=BOUND_S) as http, asyncio.timeout(BOUND_S):
        return await rpc(http, gateway.agent_url(agent), "SendMessage", {"message": message()})


async def wait_closed(closed: Any) -> None:
    """Wait (bounded) for a peer to see its last open call closed: a ``threading.Event`` or an ``asyncio.Event``."""
    if isinstance(closed, asyncio.Event):
        await asyncio.wait_for(closed.wait(), BOUND_S)
    else:
        assert await asyncio.to_thread(closed.wait, BOUND_S), "the peer's call is still open"


class LogSeen(logging.Handler):
    """Sets ``seen`` when a record containing ``text`` is logged (the gateway runs in this loop's thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


@pytest.mark.parametrize("streaming", [False, True], ids=["jsonrpc", "jsonrpc-sse"])
async def test_a_call_to_a_peer_that_never_answers_ends_with_peer_timeout(
    tmp_path: Path, background: BackgroundLoop, streaming: bool
) -> None:
    peer = serve(background, FakePeer(streaming=streaming))
    peer.call_mode = "silent"
    async with running_gateway(settings_for(tmp_path, ("p", peer, {"timeout_s": TIMEOUT_S}))) as gateway:
        started = time.monotonic()
        body = await call(gateway, "p-echo")
        elapsed = time.monotonic() - started
        await wait_closed(peer.calls_closed)
    assert peer.calls.is_set(), "the call reached the peer"
    error = body["error"]
    assert error["code"] == -32052 and error["data"][0]["metadata"]["reason"] == "peer-timeout", error
    assert elapsed < 10 * TIMEOUT_S, elapsed


async def test_a_grpc_call_to_a_peer_that_never_answers_ends_with_peer_timeout(
    tmp_path: Path, background: BackgroundLoop
) -> None:
    silent = SilentGrpcPeer()
    await silent.server.start()
    peer = FakePeer(streaming=True)
    peer.grpc_url = f"127.0.0.1:{silent.port}"
    serve(background, peer)
    extra = {"timeout_s": TIMEOUT_S, "transports": ["GRPC"]}
    try:
        async with running_gateway(settings_for(tmp_path, ("p", peer, extra))) as gateway:
            body = await call(gateway, "p-echo")
            await wait_closed(silent.calls_closed)
    finally:
        await silent.server.stop(None)
    assert silent.calls.is_set(), "the call reached the peer over gRPC"
    assert body["error"]["code"] == -32052, body


async def test_a_stream_that_goes_silent_between_events_ends_the_task_after_the_peer_timeout(
    tmp_path: Path, background: BackgroundLoop
) -> None:
    peer = serve(background, FakePeer(streaming=True))
    peer.call_mode = "first-event-then-silent"
    async with running_gateway(settings_for(tmp_path, ("p", peer, {"timeout_s": TIMEOUT_S}))) as gateway:
        body = await call(gateway, "p-echo")
        await wait_closed(peer.calls_closed)
        async with httpx.AsyncClient(timeout=BOUND_S) as http:
            listed = await rpc(http, gateway.agent_url("p-echo"), "ListTasks", {})
    assert body["error"]["code"] == -32051 and "could not resume it after 4 attempts" in body["error"]["message"], body
    assert [t["status"]["state"] for t in listed["result"]["tasks"]] == ["TASK_STATE_FAILED"], listed


async def test_start_up_does_not_wait_for_a_peer_dripping_its_card(
    tmp_path: Path, background: BackgroundLoop, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.federation")
    slow = serve(background, FakePeer())
    slow.card_mode = "drip"
    fast = serve(background, FakePeer())
    settings = settings_for(
        tmp_path,
        ("slow", slow, {"timeout_s": 2.0}),  # first in the file: imported one after the other, it would hold fast
        ("fast", fast, {}),
        peer_discovery_timeout_s=1.0,
        peer_card_refresh_s=0.2,
    )
    verified = LogSeen("slow-echo: card at")
    logging.getLogger("gateway.federation").addHandler(verified)
    try:
        started = time.monotonic()
        async with running_gateway(settings) as gateway:
            ready_after = time.monotonic() - started
            async with httpx.AsyncClient(base_url=gateway.url, timeout=BOUND_S) as http:
                ready = await http.get("/readyz")
                registry = gateway.app.state.gateway.registry
                fast_spec, slow_spec = registry.get("fast-echo"), registry.get("slow-echo")
                specs_at_start = gateway.app.state.gateway.specs
                built_once = specs_at_start is gateway.app.state.gateway.specs
                slow.card_mode = "ok"  # the peer recovers: its agent comes in when its card verifies
                await asyncio.wait_for(verified.seen.wait(), BOUND_S)
                served = (await http.get("/agents/slow-echo/.well-known/agent-card.json")).json()
                described = gateway.app.state.gateway.describe("slow-echo")
                specs_now = gateway.app.state.gateway.specs
                registered = gateway.app.state.gateway.registry.get("slow-echo")
    finally:
        logging.getLogger("gateway.federation").removeHandler(verified)
        slow.stopped.set()
    assert ready.status_code == 200 and ready_after < 8.0, (ready.status_code, ready_after)
    assert fast_spec is not None and fast_spec.description == "The echo agent of a misbehaving peer."
    assert slow_spec is not None and "has not been verified yet" in slow_spec.description
    assert "slow-echo is hosted out of service and comes in when it verifies" in caplog.text
    assert served["description"] == "The echo agent of a misbehaving peer.", served
    assert described.description == "The echo agent of a misbehaving peer.", "routing sees the verified card too"
    assert described.skills == ("echo",) and described.tags == ("peer",), described
    assert built_once, "specs are built once, not on every read"
    assert specs_now is not specs_at_start and specs_now["slow-echo"] is registered
    assert registered is not None and registered.description == "The echo agent of a misbehaving peer.", (
        "every reader of the registry sees the verified card, as routing does"
    )


async def test_an_oversized_catalog_is_refused_while_it_is_read(background: BackgroundLoop) -> None:
    peer = serve(background, FakePeer())
    peer.catalog_mode = "huge"
    async with httpx.AsyncClient(timeout=BOUND_S) as http:
        with pytest.raises(ValueError, match=f"larger than {MAX_CATALOG_BYTES} bytes"):
            await catalog(http, peer.url)
    peer.stopped.set()
    assert peer.huge_sent < 16 * MAX_CATALOG_BYTES, f"{peer.huge_sent} bytes sent of {peer.huge_bytes}"


async def test_import_all_hosts_a_card_still_dripping_at_the_deadline_out_of_service(
    background: BackgroundLoop,
) -> None:
    peer = serve(background, FakePeer())
    peer.card_mode = "drip"
    spec = PeerSpec.model_validate(
        {"name": "p", "base_url": peer.url, "trust": {"jwks": peer.jwks()}, "import": "all", "timeout_s": 30}
    )
    configured = Peer.configure("p", spec.trust, None, base=Path("."), where="test", timeout_s=30)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=BOUND_S) as http:
        imported = await import_peer(spec, configured, http, asyncio.get_running_loop().time() + TIMEOUT_S)
    elapsed = time.monotonic() - started
    peer.stopped.set()
    assert elapsed < 10 * TIMEOUT_S, elapsed
    (entry,) = imported
    assert entry.spec.name == "p-echo" and "has not been verified yet" in entry.spec.description
    assert entry.remote.source.health == "unchecked", "left for the background check, not judged"
    with pytest.raises(PeerUnavailableError):
        entry.remote.source.usable()


async def test_a_long_task_that_emits_nothing_is_followed_while_its_peer_answers(
    tmp_path: Path, background: BackgroundLoop
) -> None:
    # Silent streams, but GetTask answers: the peer is alive and its task still runs, so the relay keeps following.
    peer = serve(background, FakePeer(streaming=True))
    peer.call_mode, peer.quiet_polls = "quiet-task", 6  # longer than FOLLOW_ATTEMPTS gaps of silence
    async with running_gateway(settings_for(tmp_path, ("p", peer, {"timeout_s": TIMEOUT_S}))) as gateway:
        body = await call(gateway, "p-echo")
    assert body["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", body
    assert peer.get_tasks == peer.quiet_polls + 1


async def test_the_cli_stops_reading_an_oversized_card(background: BackgroundLoop) -> None:
    peer = serve(background, FakePeer())
    peer.card_mode = "huge"
    with pytest.raises(CardVerificationError, match=f"larger than {MAX_CARD_BYTES} bytes"):
        await fetch_card(f"{peer.url}/agents/echo/.well-known/agent-card.json")
    peer.stopped.set()
    assert peer.huge_sent < 16 * MAX_CARD_BYTES, f"{peer.huge_sent} bytes sent of {peer.huge_bytes}"


@pytest.mark.parametrize("streaming", [False, True], ids=["jsonrpc", "jsonrpc-sse"])
async def test_a_peers_oversized_answer_is_refused_while_it_is_read(
    tmp_path: Path, background: BackgroundLoop, streaming: bool
) -> None:
    # One answer (or one streamed event) far over the limit: reading stops there, the call ends with the reason.
    peer = serve(background, FakePeer(streaming=streaming))
    peer.call_mode = "huge-answer"
    async with running_gateway(settings_for(tmp_path, ("p", peer, {"timeout_s": 5}))) as gateway:
        body = await call(gateway, "p-echo")
    peer.stopped.set()
    error = body["error"]
    assert error["data"][0]["metadata"]["reason"] == "peer-bad-response", error
    assert f"larger than {MAX_ANSWER_BYTES} bytes" in error["message"], error
    assert peer.huge_sent < 2 * MAX_ANSWER_BYTES, f"{peer.huge_sent} bytes sent of {peer.huge_bytes}"


class CountingPeer(FakePeer):
    """A peer that counts how often each card is fetched."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: dict[str, int] = {}

    def card_bytes(self, name: str) -> bytes:
        self.fetched[name] = self.fetched.get(name, 0) + 1
        return super().card_bytes(name)


async def test_a_card_due_its_recheck_that_still_fails_refuses_the_call_before_any_task_exists(
    tmp_path: Path, background: BackgroundLoop, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted card is fetched again when the call comes after its recheck interval; still forged, the
    call is refused with the reason, as when the card is not due, and leaves no failed task behind."""
    monkeypatch.setattr("gateway.federation.remote_cards.UNTRUSTED_RECHECK_S", 0.0)  # every call finds it due
    peer = serve(background, CountingPeer())
    settings = settings_for(tmp_path, ("p", peer, {"import": ["forged"], "timeout_s": TIMEOUT_S}))
    async with running_gateway(settings) as gateway:
        fetched_at_start = peer.fetched.get("forged", 0)
        body = await call(gateway, "p-forged")
        async with httpx.AsyncClient(timeout=BOUND_S) as http:
            listed = await rpc(http, gateway.agent_url("p-forged"), "ListTasks", {})
    error = body["error"]
    assert error["code"] == -32054 and "failed verification: unknown-key" in error["message"], error
    assert peer.fetched["forged"] > fetched_at_start, "the card was fetched again before the call was refused"
    assert listed["result"].get("tasks", []) == [], "refused before any task existed"
