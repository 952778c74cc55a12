"""``Federation``: this gateway's peers and the remote agents it hosts, and their life cycle.

Built once from the settings before the registry (``Federation.load``): the peers file is read
and each peer's agents are imported (``discovery``, every peer at once, by the
``peer_discovery_timeout_s`` deadline), so that imported agents are ordinary agents of the
registry (routes, gRPC, MCP tools, workflow participants). The app's lifespan then ``start``s it
(HTTP clients, the ``remote_tasks`` table) and runs ``keep_fresh`` in the background: it first
checks every card not checked yet, logging each agent's state, then revalidates stale cards,
and asks the app to re-render the card of any agent whose origin card (or its trust) changed.
The gateway is ready without waiting for any of it: an agent whose card has not verified yet is
out of service until it does (a call to it checks its card first).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import yaml
from a2a.types.a2a_pb2 import AgentCard
from pydantic import ValidationError

from gateway.federation.discovery import Imported, import_peer, spec_from_card
from gateway.federation.links import SqlRemoteLinks
from gateway.federation.peers import MAX_ANSWER_BYTES, CappedTransport, Peer, PeerConfigError, RemoteAgent
from gateway.federation.republish import republish_card
from gateway.settings import Settings
from gateway.spec import A2ARuntime, AgentSpec, PeersFile, PeerSpec
from gateway.store.database import Database

logger = logging.getLogger(__name__)

CARD_FETCH_TIMEOUT_S = 10.0
DISCOVERY_TIMEOUT_S = 10.0

T = TypeVar("T")


def derive_gateway_id(configured: str, kids: Sequence[str], base_url: str) -> str:
    """This gateway's id on hop paths: the setting, else a hash of its first signing key's kid (or its URL)."""
    if configured:
        return configured
    seed = kids[0] if kids else base_url
    return "gw-" + hashlib.sha256(seed.encode()).hexdigest()[:16]


def load_peers_file(path: Path) -> PeersFile:
    """Parse and validate the peers file; errors name the file and the field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML too
    except (OSError, yaml.YAMLError) as exc:
        raise PeerConfigError(f"{path.name}: cannot read the peers file: {exc}") from exc
    try:
        return PeersFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<file>'}: {e['msg']}" for e in exc.errors())
        raise PeerConfigError(f"{path.name}: {problems}") from exc


def run_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end on a thread of its own (so it works whether or not a loop is running here)."""

    async def main() -> T:
        return await make()

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="federation") as pool:
        return pool.submit(asyncio.run, main()).result()


class Federation:
    """The peers and remote agents of one gateway."""

    def __init__(
        self,
        *,
        gateway_id: str = "",
        max_hops: int = 8,
        refresh_s: float = 30.0,
        agents_dir: Path | None = None,
        discovery_timeout_s: float = 10.0,
    ) -> None:
        self.gateway_id = gateway_id
        self.max_hops = max_hops
        self.refresh_s = refresh_s
        self.discovery_timeout_s = discovery_timeout_s
        self.agents_dir = agents_dir or Path(".")
        self.peers: dict[str, Peer] = {}
        self.remotes: dict[str, RemoteAgent] = {}
        self.imported: tuple[AgentSpec, ...] = ()
        self.on_change: Callable[[str], None] | None = None
        self._links: SqlRemoteLinks | None = None
        self._cards_http: httpx.AsyncClient | None = None
        self._calls_http: httpx.AsyncClient | None = None

    @classmethod
    def load(cls, settings: Settings, gateway_id: str) -> Federation:
        """The federation of ``settings``: its peers configured and their agents imported (blocking, bounded)."""
        federation = cls(
            gateway_id=gateway_id,
            max_hops=settings.federation_max_hops,
            refresh_s=settings.peer_card_refresh_s,
            agents_dir=settings.agents,
            discovery_timeout_s=settings.peer_discovery_timeout_s,
        )
        if settings.peers is None:
            return federation
        peers_file = load_peers_file(settings.peers)
        base = settings.peers.parent
        for spec in peers_file.peers:
            federation.peers[spec.name] = Peer.configure(
                spec.name,
                spec.trust,
                spec.credentials,
                base=base,
                where=f"{settings.peers.name}: peer {spec.name}",
                transports=tuple(spec.transports),
                timeout_s=spec.timeout_s,
                base_url=spec.base_url,
            )
        wanted = [spec for spec in peers_file.peers if spec.import_]
        if wanted:
            imported = run_blocking(lambda: federation._import(wanted))
            for entry in imported:
                federation.remotes[entry.spec.name] = entry.remote
            federation.imported = tuple(entry.spec for entry in imported)
        return federation

    async def _import(self, specs: Sequence[PeerSpec]) -> list[Imported]:
        deadline = asyncio.get_running_loop().time() + self.discovery_timeout_s
        async with httpx.AsyncClient(timeout=DISCOVERY_TIMEOUT_S, follow_redirects=False) as http:
            found = await asyncio.gather(*(import_peer(s, self.peers[s.name], http, deadline) for s in specs))
        return [entry for entries in found for entry in entries]

    # -- remote agents ------------------------------------------------------------------------

    def remote_for(self, spec: AgentSpec) -> RemoteAgent | None:
        """The remote side of an ``a2a`` agent (set up on first use), or None for any other agent."""
        runtime = spec.runtime
        if not isinstance(runtime, A2ARuntime):
            return None
        remote = self.remotes.get(spec.name)
        if remote is None:
            remote = self.remotes[spec.name] = RemoteAgent.create(spec.name, runtime.card_url, self._peer_of(spec))
        return remote

    def _peer_of(self, spec: AgentSpec) -> Peer:
        runtime = spec.runtime
        assert isinstance(runtime, A2ARuntime)
        if runtime.peer:
            peer = self.peers.get(runtime.peer)
            if peer is None:
                raise PeerConfigError(f"{spec.name}: runtime.peer: {runtime.peer!r} is not a peer of the peers setting")
            return peer
        assert runtime.trust is not None  # the spec requires trust or peer
        return Peer.configure(
            urlsplit(runtime.card_url).netloc,  # a peer of its own, named after where its card is
            runtime.trust,
            runtime.credentials,
            base=self.agents_dir,
            where=f"{spec.name}.yaml: runtime",
            transports=tuple(runtime.transports),
            timeout_s=runtime.timeout_s,
        )

    def current_spec(self, spec: AgentSpec) -> AgentSpec:
        """``spec``, or for an imported agent whose card verified, the spec made from that card.

        An agent imported before its card verified (a slow peer at start-up) is hosted with a
        placeholder spec; once its card verifies, routing and agent lists see the card's content.
        """
        remote = self.remotes.get(spec.name)
        runtime = spec.runtime
        if remote is None or remote.source.trusted is None or spec.name not in self._imported_names:
            return spec
        assert isinstance(runtime, A2ARuntime)
        try:
            peer = runtime.peer or remote.peer.name
            return spec_from_card(remote.source.trusted.json, spec.name, runtime, peer, spec.scopes)  # the peer's
        except ValidationError as exc:
            logger.warning("%s: its verified card cannot be an agent here; its spec is kept: %s", spec.name, exc)
            return spec

    @property
    def _imported_names(self) -> frozenset[str]:
        return frozenset(spec.name for spec in self.imported)

    def republish(self, card: AgentCard) -> AgentCard:
        """``card`` as served: for a remote agent, the origin's card at this gateway's URLs (else unchanged)."""
        remote = self.remotes.get(card.name)
        if remote is None:
            return card
        source = remote.source
        remote.rendered = (source.version, source.health)
        status = source.health if not source.problem else f"{source.health}: {source.problem}"
        return republish_card(source.trusted, card, source.url, remote.peer.name, status)

    @property
    def links(self) -> SqlRemoteLinks:
        """Which remote task mirrors which local task."""
        if self._links is None:
            raise RuntimeError("the federation has not started (the app's lifespan has not run)")
        return self._links

    @property
    def cards_http(self) -> httpx.AsyncClient:
        """The client cards and key sets are fetched with."""
        if self._cards_http is None:
            raise RuntimeError("the federation has not started (the app's lifespan has not run)")
        return self._cards_http

    @property
    def calls_http(self) -> httpx.AsyncClient:
        """The client A2A calls over HTTP go through (the SDK's transports share it)."""
        if self._calls_http is None:
            raise RuntimeError("the federation has not started (the app's lifespan has not run)")
        return self._calls_http

    # -- life cycle -----------------------------------------------------------------------------

    async def start(self, db: Database, on_change: Callable[[str], None]) -> None:
        """Open the clients and the links table (the cards are checked by ``keep_fresh``, in the background)."""
        self.on_change = on_change
        self._cards_http = httpx.AsyncClient(timeout=CARD_FETCH_TIMEOUT_S, follow_redirects=False)
        self._calls_http = httpx.AsyncClient(
            timeout=httpx.Timeout(30.0, connect=10.0, read=None), transport=CappedTransport(MAX_ANSWER_BYTES)
        )
        self._links = SqlRemoteLinks(db)
        if not self.remotes:
            return
        await self._links.migrate()
        for remote in self.remotes.values():
            self._notify(remote)

    async def check(self, remote: RemoteAgent) -> None:
        """Revalidate ``remote``'s card now, and have its served card re-rendered if that changed anything."""
        await remote.source.refresh(self.cards_http)
        self._notify(remote)

    def _notify(self, remote: RemoteAgent) -> None:
        if self.on_change is not None and remote.rendered != (remote.source.version, remote.source.health):
            self.on_change(remote.name)

    async def check_unchecked(self) -> None:
        """Check every card not checked yet (each bounded by its peer's ``timeout_s``), logging each agent's state."""
        unchecked = [remote for remote in self.remotes.values() if remote.source.health == "unchecked"]
        await asyncio.gather(*(self.check(remote) for remote in unchecked), return_exceptions=True)
        for remote in unchecked:
            source = remote.source
            level = logging.INFO if source.health == "trusted" else logging.WARNING
            reason = f": {source.problem}" if source.problem else ""
            logger.log(level, "remote agent %s (peer %s) is %s%s", remote.name, remote.peer.name, source.health, reason)
        if self.remotes:
            trusted = sum(remote.source.health == "trusted" for remote in self.remotes.values())
            logger.info("federation: %d of %d remote agents verified", trusted, len(self.remotes))

    async def keep_fresh(self) -> None:
        """First check the cards not checked yet; then forever, every ``refresh_s``, revalidate each stale card."""
        await self.check_unchecked()
        while True:
            await asyncio.sleep(self.refresh_s)
            stale = [remote for remote in self.remotes.values() if remote.source.stale()]
            await asyncio.gather(*(self.check(remote) for remote in stale), return_exceptions=True)

    async def aclose(self) -> None:
        """Close every client and credential."""
        for remote in self.remotes.values():
            await remote.aclose()
        for credentials in {id(r.peer.credentials): r.peer.credentials for r in self.remotes.values()}.values():
            await credentials.aclose()
        for http in (self._cards_http, self._calls_http):
            if http is not None:
                await http.aclose()
        self._cards_http = self._calls_http = None
