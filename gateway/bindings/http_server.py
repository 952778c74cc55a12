"""The HTTP server: uvicorn's h11 protocol with deadlines for a request's headers and body.

uvicorn bounds only the idle time between two requests on a kept-alive connection
(``timeout_keep_alive``): a connection that never finishes its request headers, or drips its body
a byte at a time, is held for as long as the client likes, with the app waiting on its body. Here
a request's headers must arrive within ``header_timeout_s`` of the connection opening (or of the
first byte of a kept-alive connection's next request) and its body within ``body_timeout_s`` of
its headers. These are totals, not gaps between bytes, so dripping does not extend them. A late
client gets ``408 Request Timeout`` (when no response has started) and the connection is closed;
the app, if it was reading the body, sees the client leave. Once a request is in, nothing here
limits how long the response takes (streams stay open).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.settings import Settings

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: 22\r\n\r\nrequest read timed out"
)


class ServerConfig(uvicorn.Config):
    """uvicorn's settings plus the request read deadlines ``DeadlineH11Protocol`` applies."""

    def __init__(self, app: Any, *, header_timeout_s: float, body_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, http=DeadlineH11Protocol, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.body_timeout_s = body_timeout_s


def server_config(app: Any, settings: Settings, **kwargs: Any) -> ServerConfig:
    """uvicorn's config for serving ``app`` with the read deadlines and keep-alive of ``settings``."""
    return ServerConfig(
        app,
        header_timeout_s=settings.header_timeout_s,
        body_timeout_s=settings.body_timeout_s,
        timeout_keep_alive=settings.keep_alive_timeout_s,  # type: ignore[arg-type]  # call_later takes a float
        **kwargs,
    )


class DeadlineH11Protocol(H11Protocol):
    """h11 with a deadline on reading each request's headers, then one on reading its body."""

    config: ServerConfig
    _deadline: asyncio.TimerHandle | None = None
    _phase: str = ""  # "headers" or "body" while a deadline runs

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("headers", self.config.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._phase != "headers":
            # the first byte of a kept-alive connection's next request
            self._arm("headers", self.config.header_timeout_s)
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()  # a pipelined request may have been read in the meantime

    def _follow(self) -> None:
        """Move the deadline along with the request: from its headers to its body, then off once it is in."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._phase != "body":
                self._arm("body", self.config.body_timeout_s)
        elif state is not h11.IDLE:
            self._disarm()

    def _arm(self, phase: str, seconds: float) -> None:
        self._disarm()
        self._phase = phase
        self._deadline = self.loop.call_later(seconds, self._expired, phase, seconds)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline, self._phase = None, ""

    def _expired(self, phase: str, seconds: float) -> None:
        self._deadline, self._phase = None, ""
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed already, or handed to another protocol (a WebSocket upgrade)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        logger.info("closed the connection of %s: its request %s did not arrive within %gs", client, phase, seconds)
        if self.cycle is None or not self.cycle.response_started or phase == "headers":
            self.transport.write(REQUEST_TIMEOUT)
        self.transport.close()
