"""Fuzz fixtures: two real gateways (open, and with API keys) served from a thread for each fuzz module.

Hypothesis drives plain synchronous clients (httpx, grpc) against them, so the gateways run on
their own event loop in a background thread. Every log record at ERROR or above, and every
record carrying a traceback, is collected: a fuzz case fails if its request left one.

``SWITCHBOARD_FUZZ_EXAMPLES`` sets the examples per test: the default keeps the whole fuzz run
under two minutes for the normal ``pytest`` run; set it higher (e.g. 2000) for a long run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from gateway.settings import Settings
from gateway.testing import RunningGateway, running_gateway
from tests.auth.conftest import ApiKeys, write_agents
from tests.conftest import make_settings

EXAMPLES = int(os.environ.get("SWITCHBOARD_FUZZ_EXAMPLES", "30"))
TIMEOUT_S = max(120, EXAMPLES)
"""pytest-timeout's limit for one fuzz test: the suite's 120 s, or a second per example in a long run."""
START_S = 30.0

settings.register_profile(
    "fuzz",
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    print_blob=True,
)
FUZZ = settings.get_profile("fuzz")


class Trouble(logging.Handler):
    """Keeps every record at ERROR or above, and every record with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or record.exc_info:
            with self._lock:
                self.records.append(record)

    def take(self) -> list[str]:
        """What was kept since the last call, as text (and forget it)."""
        with self._lock:
            taken, self.records = self.records, []
        return [
            f"{r.levelname} {r.name}: {r.getMessage()[:500]}" + (" [traceback]" if r.exc_info else "") for r in taken
        ]


@dataclass
class ThreadedGateway:
    """A gateway served by uvicorn on its own event loop in a daemon thread."""

    settings: Settings
    running: RunningGateway | None = None
    _ready: threading.Event = field(default_factory=threading.Event)
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def __enter__(self) -> ThreadedGateway:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        if not self._ready.wait(START_S) or self.running is None:
            raise RuntimeError("the fuzz gateway did not start") from self._error
        return self

    async def _serve(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        try:
            async with running_gateway(self.settings) as running:
                self.running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(START_S)

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    @property
    def grpc_target(self) -> str:
        assert self.running is not None
        card = self.running.app.state.gateway.agents["echo"].card.body
        return next(i["url"] for i in card["supportedInterfaces"] if i["protocolBinding"] == "GRPC")

    def healthy(self) -> bool:
        """``/healthz`` answers 200."""
        return httpx.get(f"{self.url}/healthz", timeout=10).status_code == 200


@dataclass(frozen=True)
class Target:
    """One fuzzed gateway and the credentials to try on it (None: send none)."""

    id: str
    gateway: ThreadedGateway
    agents: tuple[str, ...]
    credentials: tuple[dict[str, str], ...]


@pytest.fixture(scope="module")
def trouble() -> Iterator[Trouble]:
    handler = Trouble()
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)  # the gateway's own level: tracebacks logged at INFO count too
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


@pytest.fixture(scope="module")
def open_gateway(tmp_path_factory: pytest.TempPathFactory, trouble: Trouble) -> Iterator[ThreadedGateway]:
    path = tmp_path_factory.mktemp("fuzz-open")
    with ThreadedGateway(make_settings(path, mcp_tools=["echo"], grpc_default_agent="echo")) as gateway:
        yield gateway
        assert gateway.healthy(), "/healthz is not 200 after the fuzz run"


@pytest.fixture(scope="session")
def keys() -> ApiKeys:
    return ApiKeys()


@pytest.fixture(scope="module")
def auth_gateway(
    tmp_path_factory: pytest.TempPathFactory, keys: ApiKeys, trouble: Trouble
) -> Iterator[ThreadedGateway]:
    path = tmp_path_factory.mktemp("fuzz-auth")
    values = make_settings(
        path,
        agents=write_agents(Path(path) / "agents"),
        auth_api_keys=keys.lines(),
        mcp_tools=["*"],
        root_agent="echo",
        grpc_default_agent="echo",
    )
    with ThreadedGateway(values) as gateway:
        yield gateway
        assert gateway.healthy(), "/healthz is not 200 after the fuzz run"


@pytest.fixture(params=["open", "auth"])
def target(request: pytest.FixtureRequest, keys: ApiKeys) -> Target:
    """Each fuzzed gateway: open (no credentials), and with API keys (a good key, a key without scopes,
    a wrong key, none)."""
    if request.param == "open":
        return Target("open", request.getfixturevalue("open_gateway"), ("echo",), ({},))
    credentials = ({"X-API-Key": keys.ci}, {"X-API-Key": keys.bare}, {"X-API-Key": "sb_wrong"}, {})
    return Target("auth", request.getfixturevalue("auth_gateway"), ("echo", "notes", "vault"), credentials)
