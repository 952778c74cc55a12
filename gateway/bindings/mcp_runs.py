"""Long runs over MCP: ``start_run``, ``get_run``, ``cancel_run`` and the ``run://{run_id}`` resources.

A run is an A2A task on any hosted agent (its id is the task id), started in the background so
the tool call returns at once. Its progress is kept here and every update is announced as a
``notifications/resources/updated`` for ``run://{run_id}``: to ``resources/subscribe``
subscribers on 2025-11-25 sessions, and on ``subscriptions/listen`` streams on 2026-07-28.
The task itself lives in the agent's task store, owner-scoped, so another caller's run is
simply not found. ``run://{run_id}/artifacts/{name}`` is one artifact of the run as it is now (a
blackboard's board, live), announced as updated whenever the task of a run started over MCP
replaces or adds to it (a run started over A2A is read the same way, and followed over A2A).
(The MCP tasks extension, SEP-2663, would be the protocol-native form of
this; the SDK does not ship it.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Annotated, Any

import anyio
from a2a.server.context import ServerCallContext
from anyio.abc import TaskGroup
from mcp.server import ServerRequestContext
from mcp.server.context import CallNext, HandlerResult, ServerMiddleware
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated, ServerEvent, SubscriptionBus
from mcp.shared.exceptions import MCPError
from mcp_types import (
    INVALID_PARAMS,
    EmptyResult,
    SubscribeRequestParams,
    SubscriptionsListenRequestParams,
    ToolAnnotations,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field, ValidationError

from gateway.bindings.mcp_calls import AgentCaller, AgentResult, CallError, CallInput, FileArg, Update
from gateway.bindings.mcp_limits import LOCAL_CALLER, CallerCounts, caller_of, limit_error
from gateway.bindings.mcp_tools import IdentityResolver, call_context, progress_message
from gateway.errors import CallerLimitError
from gateway.logs import clip

logger = logging.getLogger(__name__)

RUN_SCHEME = "run://"
WAITING_STATES = frozenset({"submitted", "working"})
MAX_TRACKED_RUNS = 10_000
ARTIFACTS_PATH = "artifacts"


def run_uri(run_id: str) -> str:
    """The resource that shows a run."""
    return f"{RUN_SCHEME}{run_id}"


def artifact_uri(run_id: str, name: str) -> str:
    """The resource that shows one artifact of a run."""
    return f"{run_uri(run_id)}/{ARTIFACTS_PATH}/{name}"


def run_of(uri: str) -> str:
    """The run id a ``run://`` URI names (the run's own resource, or one of its artifacts')."""
    return uri.removeprefix(RUN_SCHEME).split("/", 1)[0]


class RunArtifact(BaseModel):
    """One artifact of a run, as it is now."""

    run_id: str
    agent: str
    state: str = Field(description="the run's A2A task state")
    name: str
    text: str | None = None
    data: dict[str, Any] | list[Any] | None = None


class RunProgress(BaseModel):
    """How far a run has got."""

    updates: int = Field(description="A2A updates seen so far")
    message: str = Field(description="the latest one")


class RunStatus(BaseModel):
    """A run: its state, its progress and, once it stops, its result."""

    run_id: str
    agent: str
    state: str = Field(description="A2A task state; submitted and working mean still running")
    resource: str = Field(description="subscribe to this resource for updates")
    progress: RunProgress | None = None
    result: AgentResult | None = Field(default=None, description="the outcome, once the run stops or waits")


@dataclass
class _Run:
    agent: str
    updates: int = 0
    message: str = ""


class LocalSubscriptionBus(InMemorySubscriptionBus):
    """The SDK's in-process bus, except that an event nobody listens for costs nothing.

    Every A2A update of an MCP-started task is published for ``subscriptions/listen`` streams
    (2026-07-28); with none open, the SDK's bus would still yield to the event loop each time.
    """

    async def publish(self, event: ServerEvent) -> None:
        """Deliver ``event`` to every listener, if there is any (the SDK's bus keeps them in ``_listeners``)."""
        if self._listeners:
            await super().publish(event)


FollowCheck = Callable[[ServerRequestContext[Any, Any], str], Awaitable[None]]
"""Raises the protocol's error when the caller may not follow a resource (not found: not its own)."""


async def _anyone(ctx: ServerRequestContext[Any, Any], uri: str) -> None:
    return None


def connection_key(ctx: ServerRequestContext[Any, Any]) -> str:
    """The 2025-11-25 session a request came in on: its ``Mcp-Session-Id`` (stdio: the one local session)."""
    headers = getattr(ctx.request, "headers", None)
    return (headers.get("mcp-session-id") if headers is not None else None) or LOCAL_CALLER


SEND_TIMEOUT_S = 10.0
"""How long one notification may take to go out to a session before its subscriptions are dropped."""


class _Outbox:
    """One 2025 session's ``resources/updated`` notifications, sent in the background in order.

    "This resource changed" says the same thing twice as once, so a URI already waiting is not
    queued again: a session that falls behind holds at most one pending notification per
    resource it follows (its subscriptions are capped). A send that fails, or takes longer than
    ``SEND_TIMEOUT_S``, calls ``stalled`` and stops the outbox.
    """

    def __init__(self, session: ServerSession, stalled: Callable[[str], None]) -> None:
        self.session = session
        self._stalled = stalled
        self._pending: dict[str, None] = {}  # ordered, without repeats
        self._sender: asyncio.Task[None] | None = None

    def post(self, uri: str) -> None:
        self._pending[uri] = None
        if self._sender is None or self._sender.done():
            self._sender = asyncio.ensure_future(self._send())

    async def _send(self) -> None:
        while self._pending:
            uri = next(iter(self._pending))
            del self._pending[uri]
            try:
                with anyio.fail_after(SEND_TIMEOUT_S):
                    await self.session.send_resource_updated(uri)
            except Exception:
                logger.debug("a notification of %s did not go out", uri, exc_info=True)
                self._pending.clear()
                self._stalled(uri)
                return


class ResourceNotifier:
    """Announces resource updates to subscribers of both protocol revisions.

    A subscription is its caller's: ``may_follow`` checks the resource first (a run only its owner
    may follow), and each (resource, session) on 2025-11-25, each resource of a ``subscriptions/listen``
    stream on 2026-07-28, counts against the caller's cap. A 2025 subscription is dropped when
    its session ends (``session_ended``), when unsubscribed, or when a delivery to it fails; a
    listen stream's count is given back when the stream ends.

    Updates go out on a session's standalone stream, which any of its requests' ``ServerSession``
    reaches; each keeps its own request's context alive, so one per session is kept (the first
    subscription's), not one per subscription.
    """

    def __init__(self, bus: SubscriptionBus, counts: CallerCounts, may_follow: FollowCheck = _anyone) -> None:
        self.bus = bus
        self.counts = counts
        self.may_follow = may_follow
        self._subscribers: dict[str, set[str]] = {}  # uri -> session keys
        self._uris: dict[str, set[str]] = {}  # session key -> uris
        self._senders: dict[str, ServerSession] = {}  # session key -> what sends to it
        self._outboxes: dict[str, _Outbox] = {}  # session key -> its notifications not yet sent

    def _take(self, ctx: ServerRequestContext[Any, Any], keys: list[Hashable]) -> None:
        try:
            self.counts.take(caller_of(ctx), keys)
        except CallerLimitError as error:
            logger.warning("refused an MCP subscription: %s", error.detail)
            raise limit_error(error) from None

    async def subscribe(self, ctx: ServerRequestContext[Any, Any], params: SubscribeRequestParams) -> EmptyResult:
        """``resources/subscribe`` (2025-11-25): remember the session for this URI."""
        uri, key = str(params.uri), connection_key(ctx)
        await self.may_follow(ctx, uri)
        self._take(ctx, [(uri, key)])
        self._senders.setdefault(key, ctx.session)
        self._subscribers.setdefault(uri, set()).add(key)
        self._uris.setdefault(key, set()).add(uri)
        return EmptyResult()

    async def unsubscribe(self, ctx: ServerRequestContext[Any, Any], params: UnsubscribeRequestParams) -> EmptyResult:
        """``resources/unsubscribe`` (2025-11-25)."""
        self._drop(str(params.uri), connection_key(ctx))
        return EmptyResult()

    def session_ended(self, session_id: str) -> None:
        """Forget every subscription of a session that ended."""
        self._outboxes.pop(session_id, None)
        for uri in list(self._uris.get(session_id, ())):
            self._drop(uri, session_id)

    def _drop(self, uri: str, key: str) -> None:
        subscribers = self._subscribers.get(uri, set())
        subscribers.discard(key)
        if not subscribers:
            self._subscribers.pop(uri, None)
        uris = self._uris.get(key, set())
        uris.discard(uri)
        if not uris:
            self._uris.pop(key, None)
            self._senders.pop(key, None)
            self._outboxes.pop(key, None)
        self.counts.release([(uri, key)])

    def listen_guard(self) -> ServerMiddleware[Any]:
        """Middleware: a ``subscriptions/listen`` stream (2026-07-28) follows what its caller may, within its cap."""

        async def middleware(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            if ctx.method != "subscriptions/listen" or ctx.request_id is None:
                return await call_next(ctx)
            try:
                params = SubscriptionsListenRequestParams.model_validate(ctx.params or {}, by_name=False)
            except ValidationError:
                return await call_next(ctx)  # the SDK answers malformed params
            uris = [str(u) for u in params.notifications.resource_subscriptions or ()]
            stream = object()
            keys: list[Hashable] = [(stream, uri) for uri in uris] or [(stream, "")]
            self._take(ctx, keys)  # first: a stream naming more resources than the cap costs no lookups
            try:
                for uri in uris:
                    await self.may_follow(ctx, uri)
                return await call_next(ctx)
            finally:
                self.counts.release(keys)

        return middleware

    def subscription_count(self) -> int:
        """How many (resource, session) subscriptions are held."""
        return sum(len(keys) for keys in self._subscribers.values())

    def sessions_of(self, uri: str) -> list[ServerSession]:
        """The sessions subscribed to ``uri``."""
        return [self._senders[key] for key in self._subscribers.get(uri, ())]

    async def updated(self, uri: str) -> None:
        """Tell every subscriber of ``uri`` that it changed, without waiting for any of them.

        Called on a run's progress path: a 2025 session's notifications are handed to its
        ``_Outbox`` (a session that stops reading holds up only itself); a listen stream's are
        delivered by the bus without blocking.
        """
        await self.bus.publish(ResourceUpdated(uri=uri))
        for key in list(self._subscribers.get(uri, ())):
            session = self._senders[key]
            outbox = self._outboxes.get(key)
            if outbox is None or outbox.session is not session:
                outbox = self._outboxes[key] = _Outbox(session, lambda failed, key=key: self._stalled(key, failed))
            outbox.post(uri)

    def _stalled(self, key: str, uri: str) -> None:
        """A session that failed (or stalled on) a notification loses its subscriptions: it must subscribe again."""
        logger.info("dropping the subscriptions of MCP session %s: a notification of %s did not go out", key, uri)
        self._outboxes.pop(key, None)
        for each in list(self._uris.get(key, ())):
            self._drop(each, key)


class RunBoard:
    """The progress of every task started over MCP, announced as ``run://`` resource updates."""

    def __init__(self, notifier: ResourceNotifier) -> None:
        self.notifier = notifier
        self._runs: OrderedDict[str, _Run] = OrderedDict()  # oldest first: dropping it is O(1), unlike a dict's

    async def observe(self, update: Update) -> None:
        """One A2A update of an MCP-started task: keep its progress and announce it."""
        if not update.task_id:
            return
        run = self._runs.get(update.task_id)
        if run is None:
            if len(self._runs) >= MAX_TRACKED_RUNS:
                self._runs.popitem(last=False)
            run = self._runs[update.task_id] = _Run(agent=update.agent)
        run.updates += 1
        run.message = progress_message(update)
        await self.notifier.updated(run_uri(update.task_id))
        if update.artifact:
            await self.notifier.updated(artifact_uri(update.task_id, update.artifact))

    def get(self, run_id: str) -> _Run | None:
        """What is known of the run's progress in this process."""
        return self._runs.get(run_id)


class Runs:
    """The run tools and resource, and the background watchers of started runs."""

    def __init__(self, caller: AgentCaller, identify: IdentityResolver, board: RunBoard) -> None:
        self._caller = caller
        self._identify = identify
        self._board = board
        self._group: TaskGroup | None = None
        self._watching: set[str] = set()  # runs of other replicas followed here for subscribers (``_watch``)

    def attach(self, group: TaskGroup | None) -> None:
        """The task group watchers run in (the binding's lifespan); ``None`` when it ends."""
        self._group = group

    async def start(self, ctx: Context, agent: str, call: CallInput) -> RunStatus:
        """Start (or, with ``task_id``, continue) a run in the background; returns once its task exists."""
        if self._group is None:
            raise ToolError("the gateway is shutting down")
        self._caller.hosted(agent)
        caller = call_context(self._identify, ctx)
        named = anyio.Event()
        first: list[Update] = []
        failure: list[str] = []

        async def report(update: Update) -> None:
            if not first:
                first.append(update)
                named.set()

        async def watch() -> None:
            try:
                await self._caller.send(agent, call, caller, report)
            except CallError as exc:
                failure.append(str(exc))
            except Exception:
                logger.exception("run on %s failed", agent)
                failure.append(f"{agent}: the run failed unexpectedly")
            finally:
                named.set()

        self._group.start_soon(watch)
        await named.wait()
        if not first:
            raise ToolError(failure[0] if failure else f"{agent} did not start a task")
        return await self.status(ctx, first[0].task_id, agent=agent)

    async def _find(self, run_id: str, caller: ServerCallContext, agent: str = "") -> AgentResult:
        """The run's task, looked up on its agent (or every agent, after a restart)."""
        run = self._board.get(run_id)
        candidates = [agent] if agent else [run.agent] if run else list(self._caller.agents)
        for name in candidates:
            try:
                return await self._caller.get(name, run_id, caller)
            except CallError:
                continue
        raise CallError(f"no run {clip(run_id)!r} (unknown, or started by another caller)")

    async def followable(self, ctx: ServerRequestContext[Any, Any], uri: str) -> None:
        """A subscription to ``run://<id>`` needs the caller's own run: else the error reading it gives.

        A run this process is not running (started on another replica) is followed from here while
        it works (``_watch``), so its updates reach this replica's subscribers too.
        """
        if not uri.startswith(RUN_SCHEME):
            return  # not a run: honoured as the SDK honours any URI, and counted
        caller = ServerCallContext(user=self._identify(ctx))
        try:
            found = await self._find(run_of(uri), caller)
        except CallError as exc:
            raise MCPError(code=INVALID_PARAMS, message=str(exc), data={"uri": uri}) from None
        if found.state in WAITING_STATES and self._board.get(found.task_id) is None:
            self._watch(found.agent, found.task_id, caller)

    def _watch(self, agent: str, run_id: str, caller: ServerCallContext) -> None:
        """Follow run ``run_id``, which works elsewhere, onto this replica's board (once, until it ends)."""
        if self._group is None or run_id in self._watching:
            return
        self._watching.add(run_id)

        async def watch() -> None:
            try:
                await self._caller.follow(agent, run_id, caller)
            except Exception as exc:  # the edge of a background task: a run that cannot be followed is not
                logger.info("cannot follow run %s of %s from here: %s: %s", run_id, agent, type(exc).__name__, exc)
            finally:
                self._watching.discard(run_id)

        self._group.start_soon(watch)

    async def status(self, ctx: Context, run_id: str, *, agent: str = "") -> RunStatus:
        """``get_run``: state, progress and (once it stops) the result."""
        return self._status(await self._find(run_id, call_context(self._identify, ctx), agent))

    def _status(self, result: AgentResult) -> RunStatus:
        run = self._board.get(result.task_id)
        progress = RunProgress(updates=run.updates, message=run.message) if run else None
        return RunStatus(
            run_id=result.task_id,
            agent=result.agent,
            state=result.state,
            resource=run_uri(result.task_id),
            progress=progress,
            result=None if result.state in WAITING_STATES else result,
        )

    async def cancel(self, ctx: Context, run_id: str) -> RunStatus:
        """``cancel_run``: cancel the run's task (and a workflow's children)."""
        caller = call_context(self._identify, ctx)
        found = await self._find(run_id, caller)
        result = await self._caller.cancel(found.agent, run_id, caller)
        await self._board.observe(Update(result.agent, run_id, result.state, result.text))
        return self._status(result)

    async def read(self, ctx: Context, run_id: str) -> str:
        """The ``run://{run_id}`` resource: the run's status as JSON."""
        try:
            result = await self._find(run_id, call_context(self._identify, ctx))
        except CallError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        return json.dumps(self._status(result).model_dump(mode="json", exclude_none=True), ensure_ascii=False)

    async def read_artifact(self, ctx: Context, run_id: str, name: str) -> str:
        """The ``run://{run_id}/artifacts/{name}`` resource: that artifact of the run, now, as JSON."""
        try:
            result = await self._find(run_id, call_context(self._identify, ctx))
        except CallError as exc:
            raise ResourceNotFoundError(str(exc)) from exc
        found = [a for a in result.artifacts if a.name == name]
        if not found:
            have = ", ".join(sorted({a.name for a in result.artifacts})) or "none yet"
            raise ResourceNotFoundError(f"run {clip(run_id)!r} has no artifact {clip(name)!r} (it has: {have})")
        artifact = RunArtifact(
            run_id=result.task_id,
            agent=result.agent,
            state=result.state,
            name=name,
            text=found[-1].text,
            data=found[-1].data,
        )
        return json.dumps(artifact.model_dump(mode="json", exclude_none=True), ensure_ascii=False)

    def register(self, server: MCPServer) -> None:
        """Add the run tools and the ``run://{run_id}`` resource template."""
        runs = self

        async def start_run(
            ctx: Context,
            agent: Annotated[str, Field(description="the agent or workflow to run (see list_agents)")],
            text: Annotated[str, Field(description="what to ask it")] = "",
            files: Annotated[list[FileArg] | None, Field(description="files to send, each {name, content}")] = None,
            data: Annotated[dict[str, Any] | None, Field(description="structured input (a JSON object)")] = None,
            task_id: Annotated[str, Field(description="answer this input-required run instead")] = "",
        ) -> RunStatus:
            """Start a run of any hosted agent or workflow in the background and return its run_id at once.

            Follow it with get_run or by subscribing to its resource; stop it with cancel_run. A run that
            waits for input is answered by calling start_run again with task_id set to its run_id.
            """
            return await runs.start(ctx, agent, CallInput(text, tuple(files or ()), data, task_id))

        async def get_run(ctx: Context, run_id: Annotated[str, Field(description="from start_run")]) -> RunStatus:
            """The state and progress of a run, and its result once it has stopped."""
            return await runs.status(ctx, run_id)

        async def cancel_run(ctx: Context, run_id: Annotated[str, Field(description="from start_run")]) -> RunStatus:
            """Cancel a run (a workflow's steps are cancelled with it)."""
            return await runs.cancel(ctx, run_id)

        async def read_run(run_id: str, ctx: Context) -> str:
            return await runs.read(ctx, run_id)

        server.add_tool(start_run, annotations=ToolAnnotations(open_world_hint=False), structured_output=True)
        server.add_tool(
            get_run,
            annotations=ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False),
            structured_output=True,
        )
        server.add_tool(
            cancel_run,
            annotations=ToolAnnotations(destructive_hint=True, idempotent_hint=True, open_world_hint=False),
            structured_output=True,
        )
        server.resource(
            RUN_SCHEME + "{run_id}",
            name="run",
            title="A run started with start_run",
            description="A run's state, progress and result as JSON; subscribe to follow it.",
            mime_type="application/json",
        )(read_run)

        async def read_run_artifact(run_id: str, name: str, ctx: Context) -> str:
            return await runs.read_artifact(ctx, run_id, name)

        server.resource(
            RUN_SCHEME + "{run_id}/" + ARTIFACTS_PATH + "/{name}",
            name="run-artifact",
            title="One artifact of a run, live",
            description="An artifact of a run as it is now (a blackboard's board), as JSON; subscribe to follow it.",
            mime_type="application/json",
        )(read_run_artifact)
