"""A real push-notification receiver: uvicorn on loopback, answering from a script and recording every POST."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.testing import free_socket
from tests.push.tls import TlsFiles

STARTUP_TIMEOUT_S = 15.0
WAIT_S = 30.0
Answer = int | tuple[int, dict[str, str]]
"""A status code, or a status code with response headers (``Retry-After``)."""


@dataclass(frozen=True)
class Delivery:
    """One POST the receiver got, and what it answered."""

    at: float  # time.monotonic() when it arrived
    notification_id: str
    token: str
    host: str
    body: dict[str, Any]
    status: int

    @property
    def accepted(self) -> bool:
        """Whether the receiver answered 2xx."""
        return 200 <= self.status < 300

    def kind(self) -> tuple[str, str]:
        """(``task`` | ``statusUpdate`` | ``artifactUpdate``, the task state or artifact id) of the payload."""
        for key, value in self.body.items():
            if key == "artifactUpdate":
                return key, value["artifact"].get("artifactId", "")
            return key, value.get("status", {}).get("state", "")
        return "", ""


@dataclass
class PushReceiver:
    """Answers each POST with the next scripted answer (then ``otherwise``) and records it."""

    answers: list[Answer] = field(default_factory=list)
    otherwise: Answer = 200
    stall: int = 0
    """How many of the first POSTs get no answer until ``release()`` (recorded with status 0)."""
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let stalled POSTs end."""
        self._released.set()

    @property
    def accepted(self) -> list[Delivery]:
        """The deliveries answered 2xx, in arrival order."""
        return [d for d in self.deliveries if d.accepted]

    def app(self) -> Starlette:
        """The receiver's one route."""
        return Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def wait_for(self, predicate: Callable[[PushReceiver], bool], within_s: float = WAIT_S) -> None:
        """Wait until ``predicate(self)`` holds, for at most ``within_s`` seconds."""
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    async def _hook(self, request: Request) -> Response:
        stalled = self.stall > 0
        self.stall -= 1
        answer = 0 if stalled else self.answers.pop(0) if self.answers else self.otherwise
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        delivery = Delivery(
            at=time.monotonic(),
            notification_id=request.headers.get("x-a2a-notification-id", ""),
            token=request.headers.get("x-a2a-notification-token", ""),
            host=request.headers.get("host", ""),
            body=json.loads(await request.body()),
            status=status,
        )
        async with self._changed:
            self.deliveries.append(delivery)
            self._changed.notify_all()
        if stalled:
            await self._released.wait()
            return Response(status_code=503)
        return Response(status_code=status, headers=headers)


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.listening.set()


@asynccontextmanager
async def push_receiver(
    answers: Iterable[Answer] = (), otherwise: Answer = 200, stall: int = 0, tls: TlsFiles | None = None
) -> AsyncIterator[PushReceiver]:
    """A ``PushReceiver`` served by uvicorn on a free loopback port until the block ends (HTTPS with ``tls``)."""
    receiver = PushReceiver(answers=list(answers), otherwise=otherwise, stall=stall)
    sock = free_socket()
    receiver.url = f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}/hook"
    certs = {"ssl_certfile": str(tls.cert), "ssl_keyfile": str(tls.key)} if tls else {}
    config = uvicorn.Config(receiver.app(), log_config=None, access_log=False, timeout_graceful_shutdown=2, **certs)
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    try:
        await asyncio.wait([task, listening], timeout=STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        if not server.listening.is_set():
            raise RuntimeError("the push receiver did not start")
        yield receiver
    finally:
        listening.cancel()
        receiver.release()
        server.should_exit = True
        await asyncio.wait_for(task, STARTUP_TIMEOUT_S)
        sock.close()
