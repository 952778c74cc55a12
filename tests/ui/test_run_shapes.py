"""A run's page draws what its pattern keeps, live: the magentic ledgers, a work queue's items.

Fixture agents (``run_agents``) in a real gateway process, Debian's chromium through Playwright.
Every wait is on a condition of the page with a bounded timeout; the held work item is released
by the test through a named pipe, so nothing sleeps.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from tests.orchestration.fixture_agents import agents_folder
from tests.ui.conftest import KEYS, PAGE_TIMEOUT_MS, SCREENSHOTS, GatewayProcess, loaded, sign_in
from tests.ui.run_agents import FIRST_PLAN, NEW_PLAN, files, pipe, release, release_all, release_if_waiting
from tests.ui.test_browser import send_from_page, wait_state

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Records, in order, each progress-ledger row, work item status and report the page adds (each render adds them anew).
TRACE_SCRIPT = """
window.__trace = [];
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      for (const row of [node, ...node.querySelectorAll("[data-ledger-row], [data-item]")]) {
        if (row.matches("[data-ledger-row]")) window.__trace.push(["ledger", row.dataset.ledgerRow]);
        if (row.matches("[data-item]")) window.__trace.push(["item", row.dataset.item, row.dataset.status]);
      }
      const report = node.matches("[data-role=report]") || node.querySelector("[data-role=report]");
      if (report) window.__trace.push(["report"]);
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


@pytest.fixture(scope="module")
def holds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the named pipes held work items wait on."""
    return tmp_path_factory.mktemp("holds")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory: pytest.TempPathFactory, holds: Path) -> AsyncIterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("ui-shapes")
    process = await GatewayProcess(home / "data", agents_folder(home / "agents", files(holds))).start()
    try:
        yield process
    finally:
        release_all(holds)
        await process.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def alice(chromium: Browser, gateway: GatewayProcess) -> AsyncIterator[Page]:
    page = await sign_in(chromium, gateway.url, "alice")
    await page.add_init_script(TRACE_SCRIPT)
    yield page
    await page.context.close()


async def rows(page: Page, selector: str, *attributes: str) -> list[tuple[str, ...]]:
    found = []
    for row in await page.locator(selector).all():
        found.append(tuple([await row.get_attribute(a) or "" for a in attributes]))
    return found


async def test_a_magentic_run_shows_its_ledgers_as_they_arrive(alice: Page, gateway: GatewayProcess) -> None:
    await send_from_page(alice, gateway.url, "fix-flaky", "make test_io stop flaking")
    await wait_state(alice, "completed")
    await alice.wait_for_selector("[data-role=report]")
    ledger = alice.locator("[data-role=ledgers]")
    assert await ledger.locator("[data-role=facts] li").all_inner_texts() == NEW_PLAN["facts"]
    assert await ledger.locator("[data-role=plan] li").all_inner_texts() == NEW_PLAN["plan"]
    assert "re-planned 1 time(s)" in await ledger.locator("h2").inner_text()
    plans = await ledger.locator("[data-role=plans] ol li").all_text_contents()
    assert plans == FIRST_PLAN["plan"] + NEW_PLAN["plan"], "every plan, the first one too"
    assert await rows(alice, "[data-ledger-row]", "data-ledger-row", "data-stalled") == [
        ("1", "no"),
        ("2", "yes"),
        ("3", "no"),
        ("4", "no"),
    ]
    cells = [await r.locator("td").all_inner_texts() for r in await alice.locator("[data-ledger-row]").all()]
    assert cells[0][:6] == ["1", "searcher", "find what makes test_io flaky", "no", "yes", "no"]
    assert cells[1][1:5] == ["searcher", "search the logs again", "no", "no"]
    assert cells[1][6] == "stall 1: the manager reports no progress"
    assert cells[2][1:3] == ["coder", "replace the sleep in test_io by an event"]
    assert cells[3][2:4] == ["test_io now waits on an event", "yes"], "the final answer, satisfied"
    plan_output = await alice.inner_text("[data-step-row='task ledger'] td:nth-child(4)")
    # The data travels as a protobuf Struct, whose keys come back in no fixed order.
    assert plan_output.startswith("{") and '"facts":["test_io is flaky"]' in plan_output, "a step's data output"
    report = await alice.inner_text("[data-role=report]")
    assert "test_io now waits on an event" in report and '"progress_ledgers"' not in report, (
        "the ledgers are drawn, not dumped"
    )
    trace = await alice.evaluate("window.__trace")
    report_at = trace.index(["report"])
    assert trace.index(["ledger", "1"]) < trace.index(["ledger", "2"]) < trace.index(["ledger", "3"]) < report_at, trace
    SCREENSHOTS.mkdir(exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOTS / "magentic-run.png"), full_page=True)


async def start_batch(base: str, items: list[dict[str, object]]) -> str:
    """Start a work-queue run over A2A (alice's), returning at once; its task id."""
    message = {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"data": {"items": items}}]}
    params = {"message": message, "configuration": {"returnImmediately": True}}
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": params}
    headers = {"A2A-Version": "1.0", "X-API-Key": KEYS["alice"]}
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as http:
        answer = (await http.post("/agents/batch", json=body, headers=headers)).json()
    return str(answer["result"]["task"]["id"])


async def item_status(page: Page, number: int, status: str) -> None:
    await page.wait_for_selector(f"[data-item='{number}'][data-status={status}]", timeout=PAGE_TIMEOUT_MS)


async def test_a_work_queue_run_fills_its_items_table_live(alice: Page, gateway: GatewayProcess, holds: Path) -> None:
    hold = pipe(holds, "line")
    items: list[dict[str, object]] = [
        {"text": "alpha", "priority": 1},
        {"text": "hold line", "priority": 5},
        {"text": "broken item", "priority": 0},
        {"text": "delta", "priority": 0},
    ]
    task_id = await start_batch(gateway.url, items)
    try:
        await alice.goto(f"{gateway.url}/ui/tasks/batch/{task_id}")
        await loaded(alice, "task-live")
        # The held item runs while the others are done or dead-lettered around it: the table fills in live.
        await item_status(alice, 2, "running")
        await item_status(alice, 3, "dead-lettered")
        await item_status(alice, 1, "done")
        await item_status(alice, 4, "done")
        running = alice.locator("[data-item='2']")
        assert (await running.get_attribute("data-agent") or "").startswith("pool-")
        assert "running on pool-" in await running.inner_text()
        SCREENSHOTS.mkdir(exist_ok=True)
        await alice.screenshot(path=str(SCREENSHOTS / "work-queue-live.png"), full_page=True)
        await asyncio.wait_for(asyncio.to_thread(release, hold), PAGE_TIMEOUT_MS / 1000)
    finally:
        release_if_waiting(hold)
    await wait_state(alice, "completed")
    await item_status(alice, 2, "done")
    table = [await r.locator("td").all_inner_texts() for r in await alice.locator("[data-item]").all()]
    assert [row[1:3] for row in table] == [["alpha", "1"], ["hold line", "5"], ["broken item", "0"], ["delta", "0"]]
    assert [row[4] for row in table] == ["1", "1", "2", "1"], "the broken item was tried twice"
    assert table[2][3].startswith("dead-lettered: cannot do 'broken item'"), table
    held_by = await alice.get_attribute("[data-item='2']", "data-agent")
    assert table[1][3] == f"done by {held_by}"
    trace = await alice.evaluate("window.__trace")
    assert ["item", "2", "running"] in trace[: trace.index(["report"])]
    await alice.screenshot(path=str(SCREENSHOTS / "work-queue-run.png"), full_page=True)


async def test_a_failed_item_shows_re_queued_while_it_waits_behind_its_priority(
    alice: Page, gateway: GatewayProcess, holds: Path
) -> None:
    """Two slots: 'hold first' takes one; 'flaky' fails in the other and is re-queued behind 'hold second',
    of its priority and queued before it, which takes the slot: 'flaky' waits, re-queued, until that is released."""
    first, second = pipe(holds, "first"), pipe(holds, "second")
    items: list[dict[str, object]] = [
        {"text": "hold first", "priority": 5},
        {"text": "flaky second", "priority": 1},
        {"text": "hold second", "priority": 1},
    ]
    task_id = await start_batch(gateway.url, items)
    try:
        await alice.goto(f"{gateway.url}/ui/tasks/batch/{task_id}")
        await loaded(alice, "task-live")
        await item_status(alice, 2, "re-queued")
        await item_status(alice, 3, "running")
        await item_status(alice, 1, "running")
        requeued = await alice.inner_text("[data-item='2'] td:nth-child(4)")
        assert requeued.startswith("re-queued (failed on pool-"), requeued
        assert await alice.inner_text("[data-item='2'] td:nth-child(5)") == "1"
        await alice.screenshot(path=str(SCREENSHOTS / "work-queue-re-queued.png"), full_page=True)
        await asyncio.wait_for(asyncio.to_thread(release, second), PAGE_TIMEOUT_MS / 1000)
        await item_status(alice, 2, "done")
        assert await alice.inner_text("[data-item='2'] td:nth-child(5)") == "2", "done on its second attempt"
        await asyncio.wait_for(asyncio.to_thread(release, first), PAGE_TIMEOUT_MS / 1000)
    finally:
        release_if_waiting(first)
        release_if_waiting(second)
    await wait_state(alice, "completed")
    assert await rows(alice, "[data-item]", "data-item", "data-status") == [("1", "done"), ("2", "done"), ("3", "done")]


async def test_the_runs_list_refreshes_itself_while_a_run_is_active(
    alice: Page, gateway: GatewayProcess, holds: Path
) -> None:
    hold = pipe(holds, "on")
    listed: list[str] = []
    alice.on("request", lambda request: listed.append(request.url) if "/ui/api/tasks" in request.url else None)
    task_id = await start_batch(gateway.url, [{"text": "hold on"}])
    try:
        await alice.goto(f"{gateway.url}/ui/runs")
        await loaded(alice, "runs")
        row = f"[data-role=tasks] tr[data-task='{task_id}']"
        await alice.wait_for_selector(f"{row} [data-state=working], {row} [data-state=submitted]")
        await alice.wait_for_selector("[data-role=list-live]")
        await asyncio.wait_for(asyncio.to_thread(release, hold), PAGE_TIMEOUT_MS / 1000)
    finally:
        release_if_waiting(hold)
    await alice.wait_for_selector(f"{row} [data-state=completed]", timeout=PAGE_TIMEOUT_MS)
    assert await alice.locator("[data-role=list-live]").count() == 0, "nothing runs any more: no more refreshing"
    assert len(listed) >= 2 and len(set(listed)) == 1, "the same page of the list, again: one request each time"
