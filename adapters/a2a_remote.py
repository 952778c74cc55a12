"""The ``a2a`` runtime: an agent of a partner gateway, relayed with A2A task semantics intact.

Each message to the agent here becomes a message to the agent at the peer, sent through the
a2a-sdk client built from the peer's verified card (``gateway.federation.peers``), carrying only
this gateway's credential for that peer, the hop count, the gateway path and the trace context
(``gateway.federation.hops``). The local task is this gateway's own A2A task; the remote task's
events are mirrored onto it (``gateway.federation.mirror``) and the pair is recorded
(``gateway.federation.links``), so that:

- streaming works end to end: each remote status and artifact update is a local one;
- a dropped upstream stream is resumed by resubscribing to the remote task (or, for a peer
  without streaming, by polling it), without a missing or repeated event;
- an answer to ``input-required`` goes to the same remote task;
- CancelTask here cancels the remote task, and the local task ends as the remote one did;
- the peer's ``timeout_s`` bounds every wait on it: connecting, a unary call, and the gap
  between two events of a stream (over JSON-RPC/SSE and gRPC alike), so a peer that stops
  answering ends the call with ``peer-timeout`` instead of holding it open; a stream silent for
  that long is followed again as long as the peer still answers for its task (a long quiet task);
- a push-notification config set here stays here: this gateway's push sender delivers the
  mirrored events (with its URL checks). It is not passed to the peer, which would otherwise
  learn the caller's endpoint and push its own task ids to it.

A call is refused before anything reaches the peer when the agent's card did not verify, when
the request came back around (this gateway already on its path) or would pass the hop limit.
Peer failures are ``PeerError``s with ``retryable`` set as the engine needs it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import grpc
import httpx
from a2a.client import Client
from a2a.client.client import ClientCallContext
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.owner_resolver import resolve_user_scope
from a2a.types.a2a_pb2 import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
)
from a2a.utils.errors import A2AError, TaskNotCancelableError
from google.protobuf.json_format import ParseError

from gateway.errors import PeerError, PeerTimeoutError, PeerUnavailableError
from gateway.federation.errors import translate
from gateway.federation.hops import TRACEPARENT, Hop, call_headers, message_hop, next_hop
from gateway.federation.hub import Federation
from gateway.federation.links import RemoteLink
from gateway.federation.mirror import Mirror
from gateway.federation.peers import RemoteAgent
from gateway.federation.remote_cards import TrustedCard
from gateway.hosting.cleanup import finish
from gateway.hosting.executor import METADATA_KEY
from gateway.hosting.runtimes import Host
from gateway.spec import AgentSpec
from gateway.telemetry import metrics, tracing

logger = logging.getLogger(__name__)

FOLLOW_ATTEMPTS = 4
"""Consecutive failed attempts to resume following a remote task before the local task fails."""
FOLLOW_BACKOFF_S = (0.0, 0.2, 0.5, 1.0)
POLL_INTERVAL_S = (0.1, 0.2, 0.5, 1.0, 2.0)
CANCEL_WAIT_S = 5.0
"""How long a cancel waits for the peer to name the remote task it must cancel."""
DRAIN_S = 0.5
"""How long a remote stream may stay open after its task settled before it is closed."""

_CALL_ERRORS = (A2AError, httpx.HTTPError, grpc.aio.AioRpcError, OSError, TimeoutError, ValueError, ParseError)
"""What a peer call may raise: translated to a ``PeerError`` (``ValueError``/``ParseError``: bytes that are not A2A)."""


def outbound_message(message: Message | None, link: RemoteLink | None, remote_context: str, hop: Hop) -> Message:
    """The message sent to the peer: the caller's parts and metadata, this gateway's hop entry, remote ids."""
    source = message or Message()
    out = Message(role=Role.ROLE_USER, message_id=source.message_id or str(uuid.uuid4()), parts=source.parts)
    out.metadata.CopyFrom(source.metadata)
    for key in (METADATA_KEY, TRACEPARENT):  # this gateway's own entries, replaced below
        out.metadata.fields.pop(key, None)
    out.metadata.update(hop.metadata())
    if link is not None:
        out.task_id, out.context_id = link.remote_task_id, link.remote_context_id
    elif remote_context:
        out.context_id = remote_context
    return out


class Relay:
    """One turn of a local task: its message sent to the peer, the remote task followed until it settles."""

    def __init__(self, executor: RemoteA2AExecutor, context: RequestContext, queue: EventQueue) -> None:
        self._executor = executor
        self._context = context
        self._queue = queue
        self._remote = executor.remote
        self._federation = executor.federation
        self.task_id = context.task_id or ""
        self.context_id = context.context_id or ""
        self.owner = resolve_user_scope(context.call_context)
        self.link: RemoteLink | None = None
        self.mirror: Mirror | None = None
        self.client: Client | None = None
        self.known = asyncio.Event()
        self.stopped = False
        """Whether ``run`` was cancelled before the remote task settled (the local path cancels before ``cancel``)."""
        self.canceling = False
        self._call: ClientCallContext | None = None
        self._link_write: asyncio.Future[None] | None = None
        self._held = False

    @property
    def _peer(self) -> str:
        return self._remote.peer.name

    def _unary(self) -> ClientCallContext:
        parameters = dict(self._call.service_parameters or {}) if self._call is not None else {}
        return ClientCallContext(service_parameters=parameters, timeout=self._remote.peer.timeout_s)

    async def run(self) -> None:
        """Relay the message and mirror the remote task until it ends or waits for input (timed, and a span)."""
        context = self._context
        inbound = message_hop(context.message, call_headers(context.call_context))
        hop = next_hop(inbound, self._federation.gateway_id, self._federation.max_hops)
        started = time.perf_counter()
        attributes = {"peer": self._peer, "a2a.agent": self._remote.name}
        try:
            with tracing.span(f"relay {self._peer}", tracing.CLIENT, attributes, traceparent=inbound.traceparent):
                # the peer continues this span's trace (its traceparent), when traced
                await self._relay(
                    dataclasses.replace(hop, traceparent=tracing.current_traceparent() or hop.traceparent)
                )
        finally:
            metrics.PEER_RELAY_DURATION.labels(self._peer).observe(time.perf_counter() - started)

    async def _relay(self, hop: Hop) -> None:
        context = self._context
        links = self._federation.links
        if context.current_task is not None:
            self.link = await links.get(self._remote.name, self.task_id)
        remote_context = "" if self.link else await self._remote_context()
        trusted = await self._executor.card()
        self.client = self._remote.client(trusted, self._federation.calls_http)
        self._remote.hold(self.client)  # released with the relay (``release``), which a later cancel may need
        self._held = True
        self._call = ClientCallContext(service_parameters={TRACEPARENT: hop.traceparent})
        self.mirror = Mirror(
            self._queue,
            self.task_id,
            self.context_id,
            current=context.current_task,
            request=context.message,
            remote_metadata={"peer": self._peer, "card_url": self._remote.source.url},
            on_remote_task=self._linked,
        )
        request = SendMessageRequest(message=outbound_message(context.message, self.link, remote_context, hop))
        if context.configuration is not None and context.configuration.accepted_output_modes:
            request.configuration.CopyFrom(
                SendMessageConfiguration(accepted_output_modes=context.configuration.accepted_output_modes)
            )
        try:
            try:
                await self._stream(self.client.send_message(request, context=self._call))
            except _CALL_ERRORS as exc:
                if not self.mirror.remote_task_id:
                    raise translate(exc, self._peer, f"SendMessage to {self._remote.name}") from exc
                logger.warning(
                    "%s: the stream of remote task %s broke (%s); resuming",
                    self._remote.name,
                    self.mirror.remote_task_id,
                    exc,
                )
            await self._follow(trusted)
        finally:
            await self._link_written()

    async def _stream(self, events: AsyncGenerator[StreamResponse]) -> None:
        """Mirror ``events`` until the remote task settles; the rest of the stream is read in the background.

        The turn ends at the remote task's final event, not at the stream's end, which the peer
        sends after its own bookkeeping; the stream is read to its end (or closed after
        ``DRAIN_S``) by the remote agent, so that its connection stays reusable.
        """
        mirror = self.mirror
        assert mirror is not None
        gap_s = self._remote.peer.timeout_s
        try:
            while not mirror.settled:
                try:
                    async with asyncio.timeout(gap_s):  # connecting, or the wait for the next event
                        event = await anext(events)
                except StopAsyncIteration:
                    return
                except TimeoutError as exc:
                    silence = f"{self._remote.name}: no answer or event from the peer within {gap_s:g} s"
                    raise PeerTimeoutError(silence, peer=self._peer) from exc
                await mirror.apply(event)
        except BaseException:
            await events.aclose()
            raise
        assert self.client is not None
        self._remote.drain(self.client, events, DRAIN_S)

    async def _remote_context(self) -> str:
        return await self._federation.links.remote_context(
            self._remote.name, self.owner, self.context_id, self._remote.source.url
        )

    async def _linked(self, remote_task_id: str, remote_context_id: str) -> None:
        link = RemoteLink(
            self._remote.name,
            self.task_id,
            self.owner,
            self.context_id,
            self._remote.source.url,
            remote_task_id,
            remote_context_id,
        )
        if link != self.link:
            # Written while the remote events are mirrored (not before the first): the turn ends
            # only once it is (``_link_written``), and the writes of one loop pass commit together.
            self._link_write = asyncio.ensure_future(self._federation.links.save(link))
            self.link = link
        self.known.set()

    async def _link_written(self) -> None:
        if self._link_write is not None:
            write, self._link_write = self._link_write, None
            await finish(write)  # also when the relay is stopped: a later cancel finds the remote task by it

    async def _follow(self, trusted: TrustedCard) -> None:
        """Until the remote task settles: resubscribe (or, for a peer without streaming, poll)."""
        mirror, client = self.mirror, self.client
        assert mirror is not None and client is not None
        streaming = trusted.card.capabilities.streaming
        failures, polls, last = 0, 0, ""
        while not mirror.settled:
            if failures >= FOLLOW_ATTEMPTS:
                raise PeerUnavailableError(
                    f"{self._remote.name}: lost remote task {mirror.remote_task_id} and could not resume it "
                    f"after {failures} attempts: {last}",
                    peer=self._peer,
                )
            await asyncio.sleep(FOLLOW_BACKOFF_S[min(failures, len(FOLLOW_BACKOFF_S) - 1)])
            try:
                if streaming:
                    await self._resubscribe(client, mirror)
                else:
                    await mirror.apply_task(
                        await client.get_task(GetTaskRequest(id=mirror.remote_task_id), context=self._unary())
                    )
                    if not mirror.settled:
                        await asyncio.sleep(POLL_INTERVAL_S[min(polls, len(POLL_INTERVAL_S) - 1)])
                        polls += 1
                failures = 0
            except _CALL_ERRORS as exc:
                failures, last = failures + 1, str(translate(exc, self._peer, "following the remote task"))
                logger.warning("%s: %s", self._remote.name, last)

    async def _resubscribe(self, client: Client, mirror: Mirror) -> None:
        logger.info("%s: resubscribing to remote task %s", self._remote.name, mirror.remote_task_id)
        try:
            await self._stream(client.subscribe(SubscribeToTaskRequest(id=mirror.remote_task_id), context=self._call))
        except _CALL_ERRORS as exc:
            # Subscribing to a task that already ended is refused: read it instead, which also settles it.
            task = await client.get_task(GetTaskRequest(id=mirror.remote_task_id), context=self._unary())
            await mirror.apply_task(task)
            if not mirror.settled and not isinstance(exc, PeerTimeoutError):
                raise
            # Only silent for ``timeout_s``, and the peer answers for its task: it runs on; follow it again.

    def release(self) -> None:
        """The relay is done with its client."""
        if self._held and self.client is not None:
            self._held = False
            self._remote.release(self.client)

    async def cancel(self) -> None:
        """Cancel the remote task (once the peer has named it) and mirror how it ended."""
        self.canceling = True
        if not self.known.is_set():
            if self.stopped:  # the relay was stopped before the peer named its task: there is none to cancel
                logger.warning("%s: task %s canceled before the peer named its task", self._remote.name, self.task_id)
                return
            try:
                await asyncio.wait_for(self.known.wait(), CANCEL_WAIT_S)
            except TimeoutError:
                logger.warning("%s: task %s canceled before the peer named its task", self._remote.name, self.task_id)
                return
        assert self.mirror is not None and self.client is not None
        await cancel_remote(self.client, self.mirror, self._unary(), self._remote.name, self._peer)


async def cancel_remote(client: Client, mirror: Mirror, call: ClientCallContext, agent: str, peer: str) -> None:
    """CancelTask at the peer, then mirror the remote task as it ended (a failed cancel is logged)."""
    request = CancelTaskRequest(id=mirror.remote_task_id)
    try:
        await mirror.apply_task(await client.cancel_task(request, context=call))
        logger.info("%s: remote task %s canceled at %s", agent, mirror.remote_task_id, peer)
    except TaskNotCancelableError:
        # It ended first: mirror how.
        await mirror.apply_task(await client.get_task(GetTaskRequest(id=mirror.remote_task_id), context=call))
    except _CALL_ERRORS as exc:
        logger.warning(
            "%s: could not cancel remote task %s: %s", agent, mirror.remote_task_id, translate(exc, peer, "CancelTask")
        )


class RemoteA2AExecutor(AgentExecutor):
    """Relays each task of a local agent to its remote agent at a peer."""

    def __init__(self, spec: AgentSpec, remote: RemoteAgent, federation: Federation) -> None:
        self.name = spec.name
        self.remote = remote
        self.federation = federation
        self._relays: dict[str, Relay] = {}

    def validate_request(self, params: SendMessageRequest) -> None:
        """Refuse a call, before any task exists: a bad hop count, a loop, the hop limit, a card known not to verify."""
        hop = message_hop(params.message)  # InvalidParamsError for a hop count out of range
        next_hop(hop, self.federation.gateway_id, self.federation.max_hops)  # FederationLoopError, HopLimitError
        if self.remote.source.refused_now():
            self.remote.source.usable()  # raises PeerUntrustedError with the reason

    async def check_ready(self) -> None:
        """The card, checked before any task exists: one not checked yet (a call during start-up) or due its
        recheck is fetched first, so a card that does not verify refuses the call rather than failing a task."""
        await self.card()

    async def card(self) -> TrustedCard:
        """The agent's verified card, revalidated first when stale; the served card follows a change."""
        source = self.remote.source
        if source.stale():
            await self.federation.check(self.remote)
        return source.usable()

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Relay this turn of the task; a refusal or peer failure is raised as a ``PeerError``.

        On the local path (a step or MCP call run by ``LocalRunner``) the runner fails the task
        with the error, saying whether trying again may help; a cancel of the caller stops this
        relay first and then calls ``cancel``: the relay is kept for it until then.
        """
        relay = Relay(self, context, event_queue)
        self._relays[relay.task_id] = relay
        keep = False
        try:
            await relay.run()
        except PeerError as exc:
            logger.warning("%s: task %s: %s (%s)", self.name, relay.task_id, exc.message, exc.reason)
            raise
        except asyncio.CancelledError:
            relay.stopped = True
            keep = not relay.canceling and not (relay.mirror is not None and relay.mirror.settled)
            raise
        finally:
            if not keep:
                self._relays.pop(relay.task_id, None)
                relay.release()

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        """Cancel the remote task too: the running (or just stopped) relay's, or a paused task's from its link."""
        relay = self._relays.get(context.task_id or "")
        if relay is not None and relay.stopped:
            self._relays.pop(relay.task_id, None)
        if relay is not None:
            try:
                await relay.cancel()
            finally:
                if relay.stopped:
                    relay.release()
            return
        link = await self.federation.links.get(self.name, context.task_id or "")
        if link is None:
            return
        try:
            client = self.remote.client(await self.card(), self.federation.calls_http)
        except PeerError as exc:
            logger.warning("%s: could not cancel remote task %s: %s", self.name, link.remote_task_id, exc.message)
            return
        mirror = Mirror(
            event_queue,
            link.task_id,
            link.context_id,
            current=context.current_task,
            request=None,
            remote_metadata={},
            on_remote_task=_nothing,
        )
        mirror.remote_task_id, mirror.remote_context_id = link.remote_task_id, link.remote_context_id
        call = ClientCallContext(timeout=self.remote.peer.timeout_s)
        self.remote.hold(client)
        try:
            await cancel_remote(client, mirror, call, self.name, self.remote.peer.name)
        finally:
            self.remote.release(client)


async def _nothing(*_: Any) -> None:
    return None


def build(spec: AgentSpec, host: Host) -> AgentExecutor:
    """The relay executor of an ``a2a`` agent."""
    federation = host.federation
    remote = federation.remote_for(spec)
    assert remote is not None, "an a2a agent always has a remote side"
    return RemoteA2AExecutor(spec, remote, federation)
