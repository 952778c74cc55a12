"""What the dashboard's tests share: callers' keys, the bundled agents with ``echo`` behind auth, a gateway
process, a TCP proxy that can kill its connections, and headless Chromium driven by Playwright."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.settings import bundled_agents_dir
from gateway.testing import wait_until_ready

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

KEYS = {"alice": new_api_key(), "bob": new_api_key(), "ops": new_api_key()}
SCOPES = {"ops": ["switchboard:operator"]}


def key_lines() -> list[str]:
    """The ``auth_api_keys`` setting admitting alice, bob and ops (an operator)."""
    return [api_key_line(name, key, SCOPES.get(name, [])) for name, key in KEYS.items()]


def protected_agents(into: Path) -> Path:
    """The bundled agents, with ``echo`` protected like the rest (it is open for conformance runs).

    An open agent's tasks belong to the anonymous caller whoever sends them; the tests need
    echo's long and asking tasks to be one caller's.
    """
    folder = into / "agents"
    shutil.copytree(bundled_agents_dir(), folder, ignore=shutil.ignore_patterns("llm"))
    echo = folder / "echo.yaml"
    echo.write_text(echo.read_text(encoding="utf-8").replace("security: none\n", ""), encoding="utf-8")
    return folder


MARKUP = '<img src=x onerror="window.__pwned = 3"><script>window.__pwned = 4</script><b>bold</b>'
MARKUP_AGENT = f"""format: 1
name: markup
description: 'A card whose fields hold markup: {MARKUP}'
skills:
  - id: markup
    name: '<i>skill</i> {MARKUP}'
    description: '{MARKUP}'
    tags: [test]
    examples: ['{MARKUP}']
runtime:
  kind: python
  entrypoint: gateway.agents.echo:EchoExecutor
"""
"""An agent whose card's text fields hold HTML and script (shown as text, never run)."""


# --- a real gateway process, a real browser -------------------------------------------------------

REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
"""Where the browser tests save their screenshots and page-load figures (gitignored)."""
READY_TIMEOUT_S = 60.0
PAGE_TIMEOUT_MS = 30_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    """``python -m gateway serve`` in a process of its own, on loopback, with alice, bob and ops admitted."""

    def __init__(self, data_dir: Path, agents: Path, port: int | None = None, **env: str) -> None:
        self.env = env
        self.data_dir = data_dir
        self.agents = agents
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "gateway.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> GatewayProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env |= {
            "PYTHONPATH": str(REPO),
            "SWITCHBOARD_AUTH_API_KEYS": " ".join(key_lines()),
            "SWITCHBOARD_LOG_LEVEL": "warning",
            **self.env,
        }
        argv = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--grpc-port", "0"]
        argv += ["--data-dir", str(self.data_dir), "--agents", str(self.agents)]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220  # started once per module; it returns at once
                argv, cwd=REPO, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        try:
            await self._ready()
        except BaseException:
            await self.stop()  # a process that never became ready is not left behind
            raise
        return self

    async def _ready(self) -> None:
        assert self.proc is not None
        async with httpx.AsyncClient(base_url=self.url, timeout=5.0) as http:
            try:
                await wait_until_ready(http, self.proc, READY_TIMEOUT_S)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"the gateway did not start: {self.log.read_text()[-2000:]}") from exc

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 10)


class TcpProxy:
    """A loopback TCP proxy to ``port`` whose connections the test can cut (a dead stream) and refuse for a while."""

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.open = threading.Event()
        self.open.set()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            if not self.open.is_set():
                client.close()  # down: every new connection is dropped at once
                continue
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            self._drop(source, sink)

    def _drop(self, *sockets: socket.socket) -> None:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
            with self._lock:
                self._sockets.discard(sock)

    def cut(self) -> None:
        """Kill every connection now, and drop new ones until ``restore``."""
        self.open.clear()
        with self._lock:
            sockets = list(self._sockets)
        self._drop(*sockets)

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()
        self._thread.join(5)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def chromium() -> AsyncIterator[Browser]:
    """Debian's chromium driven by Playwright, headless (skips saying why when either is missing)."""
    async_api = pytest.importorskip(
        "playwright.async_api", reason="playwright is not installed (pip install playwright)"
    )
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no chromium on PATH (apt-get install -y chromium)")
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[GatewayProcess]:
    """One gateway process for a module's browser tests (the bundled agents, echo protected)."""
    home = tmp_path_factory.mktemp("ui-gateway")
    agents = protected_agents(home)
    (agents / "markup.yaml").write_text(MARKUP_AGENT, encoding="utf-8")
    process = await GatewayProcess(home / "data", agents).start()
    try:
        yield process
    finally:
        await process.stop()


async def loaded(page: Page, name: str) -> None:
    """Wait until the dashboard says page ``name`` has drawn its data."""
    # A function, not an expression: Playwright evaluates an expression with eval, which the page's CSP forbids.
    await page.wait_for_function("(name) => document.body.dataset.loaded === name", arg=name, timeout=PAGE_TIMEOUT_MS)


async def sign_in(browser: Browser, base: str, user: str) -> Page:
    """A new browser context (its own session storage) signed in to the dashboard at ``base`` as ``user``."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_TIMEOUT_MS)
    page = await context.new_page()
    await page.goto(f"{base}/ui/")
    await loaded(page, "login")
    await page.fill("[data-role=login] input[name=credential]", KEYS[user])
    await page.click("[data-role=login] button[type=submit]")
    await loaded(page, "agents")
    return page
