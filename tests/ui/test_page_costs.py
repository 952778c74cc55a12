"""The dashboard's pages cost the same with a long history: a fixed set of requests, of a size that does not grow.

Two gateway processes in the same run, with the same ten-plus agents: one empty, one holding
first 100, then 1,000 past tasks (and their audit rows). Each page is loaded in a fresh browser
context (a cold cache, so every request is counted) as an operator, who sees every caller's
tasks: the worst case. Each page must make exactly the requests it makes on the empty gateway,
and its bytes at 1,000 tasks must equal its bytes at 100 (one page of the list, one page of the
audit). Load times (median of alternating rounds) are written beside the empty gateway's to
``tests/ui/screenshots/page-loads.md`` and printed; they are reported, not asserted.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from tests.ui.conftest import KEYS, PAGE_TIMEOUT_MS, SCREENSHOTS, GatewayProcess, protected_agents

if TYPE_CHECKING:
    from playwright.async_api import Browser, Request

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROUNDS = 3
SENDERS = 8
PAGES = {  # page name -> (path, the page's "loaded" marker)
    "agents": ("/ui/", "agents"),
    "runs": ("/ui/runs", "runs"),
    "workflow runs": ("/ui/runs?show=runs", "runs"),
    "task": ("/ui/tasks/echo/{task}", "task"),
    "operations": ("/ui/operations", "operations"),
    "peers": ("/ui/peers", "peers"),
}


@dataclass(frozen=True)
class Load:
    """One page load: how long until it drew its data, and what it fetched."""

    seconds: float
    requests: tuple[tuple[str, int], ...]
    """(path and query, response body bytes) of every request, in order of completion, sorted."""

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.requests)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def two_gateways(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    home = tmp_path_factory.mktemp("ui-costs")
    agents = protected_agents(home)
    empty = await GatewayProcess(home / "empty", agents).start()
    history = await GatewayProcess(home / "history", agents).start()
    try:
        yield empty, history
    finally:
        await empty.stop()
        await history.stop()


async def add_tasks(gateway: GatewayProcess, first: int, count: int) -> str:
    """``count`` completed echo tasks of alice's, numbered from ``first`` (texts of one length); the last id."""
    numbers = iter(range(first, first + count))
    last = ""

    async def sender(http: httpx.AsyncClient) -> None:
        nonlocal last
        for n in numbers:
            message = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": f"history {n:05d}"}]}
            body = {"jsonrpc": "2.0", "id": n, "method": "SendMessage", "params": {"message": message}}
            answer = (await http.post("/agents/echo", json=body)).json()
            assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", answer
            last = answer["result"]["task"]["id"]

    headers = {"A2A-Version": "1.0", "X-API-Key": KEYS["alice"]}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers, timeout=30.0) as http:
        await asyncio.gather(*(sender(http) for _ in range(SENDERS)))
    return last


async def load(browser: Browser, base: str, path: str, marker: str) -> Load:
    """Load ``path`` in a fresh context (cold cache) signed in as the operator; what it cost."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    credential = json.dumps({"kind": "apikey", "value": KEYS["ops"]})
    await context.add_init_script(f"sessionStorage.setItem('switchboard.credential', {json.dumps(credential)})")
    page = await context.new_page()
    finished: list[Request] = []
    page.on("requestfinished", lambda request: finished.append(request))
    started = time.perf_counter()
    await page.goto(base + path)
    await page.wait_for_function("(name) => document.body.dataset.loaded === name", arg=marker, timeout=PAGE_TIMEOUT_MS)
    seconds = time.perf_counter() - started
    # Then every request the page makes, late ones too (the browser fetches the icon when it likes): no page
    # measured here holds a stream open, so the network goes quiet.
    await page.wait_for_load_state("networkidle")
    requests = []
    for request in finished:
        sizes = await request.sizes()
        requests.append((request.url.removeprefix(base), int(sizes["responseBodySize"])))
    await context.close()
    return Load(seconds, tuple(sorted(requests)))


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shape(found: Load) -> list[str]:
    """The requests of a load without their variable parts (a task id, a page cursor)."""
    return [re.sub(r"[&?]cursor=[^&]*", "", UUID.sub("ID", url)) for url, _ in found.requests]


@pytest.mark.timeout(900)
async def test_pages_make_the_same_bounded_requests_at_any_history_size(
    chromium: Browser, two_gateways: tuple[GatewayProcess, GatewayProcess]
) -> None:
    empty, history = two_gateways
    async with httpx.AsyncClient() as http:
        agents = (await http.get(f"{history.url}/agents")).json()
    assert len(agents) >= 10
    empty_task = await add_tasks(empty, 0, 1)  # the task page needs one task to show
    task_at_100 = await add_tasks(history, 0, 100)
    at_100 = {name: await load(chromium, history.url, p.format(task=task_at_100), m) for name, (p, m) in PAGES.items()}
    await add_tasks(history, 100, 900)
    loads: dict[str, dict[str, list[Load]]] = {name: {"empty": [], "1000": []} for name in PAGES}
    for _ in range(ROUNDS):  # alternating, so a change of the machine's speed hits both alike
        for name, (path, marker) in PAGES.items():
            loads[name]["empty"].append(await load(chromium, empty.url, path.format(task=empty_task), marker))
            loads[name]["1000"].append(await load(chromium, history.url, path.format(task=task_at_100), marker))

    lines = ["| page | requests | bytes (empty) | bytes (100 tasks) | bytes (1,000 tasks) | load empty | load 1,000 |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for name in PAGES:
        base, full = loads[name]["empty"][0], loads[name]["1000"][0]
        assert shape(full) == shape(base) == shape(at_100[name]), f"{name}: {full.requests} vs {base.requests}"
        assert len(full.requests) <= 20, f"{name}: {len(full.requests)} requests"
        assert abs(full.bytes - at_100[name].bytes) <= 256, f"{name}: {at_100[name].bytes} -> {full.bytes} bytes"
        empty_s = statistics.median(x.seconds for x in loads[name]["empty"])
        full_s = statistics.median(x.seconds for x in loads[name]["1000"])
        lines.append(
            f"| {name} | {len(full.requests)} | {base.bytes} | {at_100[name].bytes} | {full.bytes} "
            f"| {empty_s * 1000:.0f} ms | {full_s * 1000:.0f} ms |"
        )
    tasks_page = next(u for u, _ in loads["runs"]["1000"][0].requests if u.startswith("/ui/api/tasks"))
    assert "limit=25" in tasks_page
    report = "\n".join(lines)
    SCREENSHOTS.mkdir(exist_ok=True)
    (SCREENSHOTS / "page-loads.md").write_text(  # once, at the end
        f"Page loads, median of {ROUNDS} alternating rounds, cold cache, as an operator "
        f"({len(agents)} agents):\n\n{report}\n",
        encoding="utf-8",
    )
    print(report)
