"""The dashboard in headless Chromium against a real gateway process: what a user sees and does.

Every wait is on a condition of the page (``document.body.dataset.loaded``, an element's state)
with a bounded timeout; nothing sleeps.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
import pytest_asyncio

from tests.ui.conftest import (
    KEYS,
    MARKUP,
    PAGE_TIMEOUT_MS,
    SCREENSHOTS,
    GatewayProcess,
    TcpProxy,
    loaded,
    protected_agents,
    sign_in,
)

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, Route

pytestmark = pytest.mark.asyncio(loop_scope="module")

PLANTED = Path(__file__).resolve().parents[1] / "samples" / "planted.py"

# Records, in order, every step node and report the run page adds, with the state it was added in.
TRACE_SCRIPT = """
window.__trace = [];
new MutationObserver((records) => {
  for (const record of records) {
    for (const node of record.addedNodes) {
      if (node.nodeType !== 1) continue;
      for (const step of [node, ...node.querySelectorAll("[data-step]")]) {
        if (step.matches("[data-step]")) window.__trace.push(["step", step.dataset.step, step.dataset.state]);
      }
      if (node.matches("[data-role=report]") || node.querySelector("[data-role=report]")) {
        window.__trace.push(["report"]);
      }
      for (const conn of [node, ...node.querySelectorAll("[data-role=connection]")]) {
        if (conn.matches("[data-role=connection]")) window.__trace.push(["connection", conn.textContent]);
      }
    }
  }
}).observe(document, { childList: true, subtree: true });
"""


@pytest_asyncio.fixture(loop_scope="module")
async def alice(chromium: Browser, gateway_process: GatewayProcess) -> AsyncIterator[Page]:
    page = await sign_in(chromium, gateway_process.url, "alice")
    yield page
    await page.context.close()


async def send_from_page(page: Page, base: str, agent: str, text: str = "", files: list[Path] | None = None) -> str:
    """Use the agent page's form to send a message; the id of the task whose page opens."""
    await page.goto(f"{base}/ui/agents/{agent}")
    await loaded(page, "agent")
    if text:
        await page.fill("[data-role=try] textarea[name=text]", text)
    if files:
        await page.set_input_files("[data-role=try] input[name=files]", [str(f) for f in files])
    await page.click("[data-role=try] button[type=submit]")
    await page.wait_for_url(re.compile(rf"/ui/tasks/{agent}/[0-9a-f-]+$"), timeout=PAGE_TIMEOUT_MS)
    return page.url.rsplit("/", 1)[1]


async def state_of(page: Page) -> str:
    return await page.get_attribute("h1 + p.meta [data-state]", "data-state") or ""


async def wait_state(page: Page, state: str) -> None:
    await page.wait_for_selector(f"h1 + p.meta [data-state={state}]", timeout=PAGE_TIMEOUT_MS)


async def test_agents_page_shows_the_bundled_agents_with_verified_signatures(
    alice: Page, gateway_process: GatewayProcess
) -> None:
    async with httpx.AsyncClient(base_url=gateway_process.url) as http:
        cards = (await http.get("/agents")).json()
        kid = (await http.get("/.well-known/jwks.json")).json()["keys"][0]["kid"]
    articles = alice.locator("[data-role=agents] article")
    assert await articles.count() == len(cards) >= 10
    names = {await a.get_attribute("data-agent") for a in await articles.all()}
    assert {"code-review", "echo", "security-reviewer", "complexity-reviewer", "style-reviewer", "review-lead"} <= names
    states = [await s.get_attribute("data-signature") for s in await alice.locator("[data-role=signature]").all()]
    assert states == ["verified"] * len(cards), states
    assert await alice.locator("[data-agent=echo] [data-role=signature]").get_attribute("data-kid") == kid
    assert kid[:8] in await alice.locator("[data-agent=echo] [data-role=signature]").inner_text()
    code_review = await alice.locator("[data-agent=code-review]").inner_text()
    assert "workflow · concurrent over" in code_review and "review-lead" in code_review
    assert "JSONRPC" in code_review and "HTTP+JSON" in code_review and "GRPC" in code_review
    SCREENSHOTS.mkdir(exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOTS / "agents.png"), full_page=True)


async def test_a_wrong_credential_is_refused_and_nothing_outlives_the_tab(
    chromium: Browser, gateway_process: GatewayProcess
) -> None:
    context = await chromium.new_context()
    page = await context.new_page()
    try:
        await page.goto(f"{gateway_process.url}/ui/runs")
        await loaded(page, "login")
        await page.fill("[data-role=login] input[name=credential]", "sb_not-a-key-of-this-gateway")
        await page.click("[data-role=login] button[type=submit]")
        await page.wait_for_selector("[data-role=login-error]:has-text('API key')")
        assert await page.evaluate("sessionStorage.length") == 0, "a refused credential is not kept"
        await page.fill("[data-role=login] input[name=credential]", KEYS["alice"])
        await page.click("[data-role=login] button[type=submit]")
        await loaded(page, "runs")
        assert "signed in as apikey:alice" in await page.inner_text("#who")
        assert await context.cookies() == [], "no cookie carries the credential (or anything else)"
        assert await page.evaluate("localStorage.length") == 0
        await page.click("[data-role=sign-out]")
        await loaded(page, "login")
        assert await page.evaluate("sessionStorage.length") == 0
    finally:
        await context.close()


async def test_a_reply_that_is_a_message_shows_on_the_agents_page(alice: Page, gateway_process: GatewayProcess) -> None:
    """An agent may answer with a message and no task: the form shows it (the stream is the test's, via a route)."""
    reply = {"message": {"role": "ROLE_AGENT", "messageId": "m1", "parts": [{"text": "<b>just a message</b>"}]}}
    event = json.dumps({"jsonrpc": "2.0", "id": 1, "result": reply})

    async def answer(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/event-stream", body=f"data: {event}\n\n")

    await alice.goto(f"{gateway_process.url}/ui/agents/echo")
    await loaded(alice, "agent")
    await alice.route(re.compile(r"/agents/echo$"), answer)
    await alice.fill("[data-role=try] textarea[name=text]", "hello")
    await alice.click("[data-role=try] button[type=submit]")
    await alice.wait_for_selector("[data-role=reply] pre")
    assert await alice.inner_text("[data-role=reply] pre") == "<b>just a message</b>"
    assert alice.url.endswith("/ui/agents/echo"), "no task page to open"


async def test_eddsa_signed_cards_verify_in_the_browser_too(chromium: Browser, tmp_path: Path) -> None:
    gateway = await GatewayProcess(
        tmp_path / "data", protected_agents(tmp_path), SWITCHBOARD_SIGNING_ALG="EdDSA"
    ).start()
    try:
        page = await sign_in(chromium, gateway.url, "alice")
        states = {await s.get_attribute("data-signature") for s in await page.locator("[data-role=signature]").all()}
        assert states == {"verified"}
        assert "EdDSA" in await page.locator("[data-agent=echo] [data-role=signature]").inner_text()
        await page.context.close()
    finally:
        await gateway.stop()


async def test_a_card_that_does_not_match_its_signature_shows_invalid(
    alice: Page, gateway_process: GatewayProcess
) -> None:
    """The browser really checks: a card altered on its way (here by the test) no longer verifies."""

    async def tamper(route: Route) -> None:
        response = await route.fetch()
        cards = await response.json()
        cards[0]["description"] += " (altered)"
        await route.fulfill(response=response, json=cards)

    await alice.route(re.compile(r"^https?://[^/]+/agents$"), tamper)  # the public card list only
    await alice.goto(f"{gateway_process.url}/ui/")
    await loaded(alice, "agents")
    states = [await s.get_attribute("data-signature") for s in await alice.locator("[data-role=signature]").all()]
    assert states[0] == "invalid" and set(states[1:]) == {"verified"}


async def test_code_review_of_the_planted_sample_draws_four_steps_live_then_the_report(
    alice: Page, gateway_process: GatewayProcess
) -> None:
    console: list[str] = []
    alice.on("console", lambda message: console.append(message.text))
    await alice.add_init_script(TRACE_SCRIPT)
    await send_from_page(alice, gateway_process.url, "code-review", files=[PLANTED])
    await alice.wait_for_selector("[data-role=report]", timeout=PAGE_TIMEOUT_MS)
    await wait_state(alice, "completed")
    steps = await alice.locator("svg[data-role=drawing] [data-step]").all()
    assert [await s.get_attribute("data-agent") for s in steps] == [
        "security-reviewer",
        "complexity-reviewer",
        "style-reviewer",
        "review-lead",
    ]
    for step in steps:
        assert await step.get_attribute("data-state") == "completed"
        assert await step.get_attribute("data-source") == "stream", (
            "drawn from the live stream, not read back afterwards"
        )
        assert await step.get_attribute("data-history") == "working completed"
    trace = await alice.evaluate("window.__trace")
    report_at = trace.index(["report"])
    drawn_before = {entry[1] for entry in trace[:report_at] if entry[0] == "step"}
    assert drawn_before == {"step 1/4", "step 2/4", "step 3/4", "step 4/4"}, trace
    # The fan-out and its merge: three reviewers in one column, the lead in the next.
    xs = [await alice.evaluate("(e) => e.getBoundingClientRect().x", await s.element_handle()) for s in steps]
    assert xs[0] == xs[1] == xs[2] < xs[3]
    report = await alice.inner_text("[data-role=report]")
    assert "Code review report" in report
    assert "SEC001 hardcoded-secret" in report and "SEC002 eval-exec" in report
    # Each step links to its child task, which shows that it belongs to the run.
    link = alice.locator("svg[data-role=drawing] a.step-link").first
    assert (await link.get_attribute("href") or "").startswith("/ui/tasks/security-reviewer/")
    assert not [line for line in console if "Content Security Policy" in line], console
    SCREENSHOTS.mkdir(exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOTS / "code-review-run.png"), full_page=True)
    await link.click()
    await loaded(alice, "task")
    assert "Security review" in await alice.inner_text("main")
    assert (await alice.locator("[data-role=parent]").count()) == 1


async def test_a_handoff_and_maker_checker_rounds_are_drawn_as_they_ran(
    alice: Page, gateway_process: GatewayProcess
) -> None:
    await send_from_page(alice, gateway_process.url, "triage", "review this code for security problems", [PLANTED])
    await wait_state(alice, "completed")
    steps = await alice.locator("svg[data-role=drawing] [data-step]").all()
    assert [await s.get_attribute("data-agent") for s in steps] == ["code-review"], "the nested run is one step"
    assert "routed to code-review" in (await alice.locator("main").text_content() or ""), "in the run log"
    await send_from_page(alice, gateway_process.url, "lint-fix", "fix the lint", [PLANTED])
    await alice.wait_for_selector("[data-role=drawing] .node.end")
    steps = await alice.locator("svg[data-role=drawing] [data-step]").all()
    agents = [await s.get_attribute("data-agent") for s in steps]
    assert len(agents) >= 2 and agents[:2] == ["lint-fixer", "lint-checker"]
    xs = [await alice.evaluate("(e) => e.getBoundingClientRect().x", await s.element_handle()) for s in steps]
    assert xs == sorted(set(xs)), "each round after the last: a chain"


async def test_a_long_echo_run_is_canceled_from_the_page(alice: Page, gateway_process: GatewayProcess) -> None:
    task_id = await send_from_page(alice, gateway_process.url, "echo", "wait: 120")
    await alice.wait_for_selector("[data-role=connection]:text('live')")
    await wait_state(alice, "working")
    await alice.click("[data-role=cancel]")
    await wait_state(alice, "canceled")
    assert (await alice.locator("[data-role=cancel]").count()) == 0
    stored = get_task(gateway_process, "alice", "echo", task_id)
    assert stored["result"]["status"]["state"] == "TASK_STATE_CANCELED"


async def test_an_ask_question_is_answered_from_the_page(alice: Page, gateway_process: GatewayProcess) -> None:
    await send_from_page(alice, gateway_process.url, "echo", "ask: What is your favourite colour?")
    await wait_state(alice, "input-required")
    assert await alice.inner_text("[data-role=question]") == "What is your favourite colour?"
    await alice.wait_for_selector("[data-role=connection]:text('waiting for your answer')")
    await alice.fill("[data-role=answer-form] input[name=answer]", "blue")
    await alice.click("[data-role=answer-form] button[type=submit]")
    await wait_state(alice, "completed")
    assert "You answered: blue" in await alice.inner_text("[data-role=artifacts]")


async def test_an_answer_carrying_markup_shows_as_text(alice: Page, gateway_process: GatewayProcess) -> None:
    hostile = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"><b>bold</b>'
    await send_from_page(alice, gateway_process.url, "echo", hostile)
    await wait_state(alice, "completed")
    assert hostile in await alice.inner_text("[data-role=artifacts]")
    assert await alice.evaluate("window.__pwned") is None
    assert (await alice.locator("main script, main img, main b").count()) == 0


async def test_markup_in_a_card_shows_as_text(alice: Page, gateway_process: GatewayProcess) -> None:
    card = await alice.locator("[data-agent=markup]").inner_text()
    assert f"A card whose fields hold markup: {MARKUP}" in card
    await alice.goto(f"{gateway_process.url}/ui/agents/markup")
    await loaded(alice, "agent")
    page = await alice.inner_text("main")
    assert f"<i>skill</i> {MARKUP}" in page and f"e.g. {MARKUP}" in page
    assert await alice.evaluate("window.__pwned") is None
    assert await alice.locator("main script, main img, main b, main i").count() == 0


async def test_a_second_user_sees_neither_the_first_users_runs_nor_their_task_by_id(
    chromium: Browser, alice: Page, gateway_process: GatewayProcess
) -> None:
    base = gateway_process.url
    task_id = await send_from_page(alice, base, "echo", "alice's secret")
    await wait_state(alice, "completed")
    await alice.goto(f"{base}/ui/runs")
    await loaded(alice, "runs")
    assert (await alice.locator(f"[data-task='{task_id}']").count()) == 1
    bob = await sign_in(chromium, base, "bob")
    try:
        await bob.goto(f"{base}/ui/runs")
        await loaded(bob, "runs")
        assert (await bob.locator(f"[data-task='{task_id}']").count()) == 0
        assert "alice's secret" not in await bob.inner_text("main")
        await bob.goto(f"{base}/ui/tasks/echo/{task_id}")
        await loaded(bob, "task")
        foreign = await bob.inner_text("[data-role=not-found]")
        missing_id = str(uuid.uuid4())
        await bob.goto(f"{base}/ui/tasks/echo/{missing_id}")
        await loaded(bob, "task")
        missing = await bob.inner_text("[data-role=not-found]")
        assert foreign == missing.replace(missing_id, task_id) == f"Task {task_id} not found on echo."
        await bob.goto(f"{base}/ui/runs")
        await loaded(bob, "runs")
        await bob.fill("[data-role=find] input[name=id]", task_id)
        await bob.click("[data-role=find] button[type=submit]")
        await bob.wait_for_selector("[data-role=find-error]:text('not found')")
    finally:
        await bob.context.close()
    ops = await sign_in(chromium, base, "ops")
    try:
        await ops.goto(f"{base}/ui/runs")
        await loaded(ops, "runs")
        assert (await ops.locator(f"[data-task='{task_id}']").count()) == 1, "an operator sees every caller's tasks"
        await ops.click(f"[data-task='{task_id}'] td:first-child a")
        await loaded(ops, "task")
        assert "apikey:alice's task, shown to you as an operator" in await ops.inner_text("[data-role=owner]")
        assert "alice's secret" in await ops.inner_text("[data-role=artifacts]")
    finally:
        await ops.context.close()


async def test_a_dead_stream_reconnects_with_back_off_and_resubscribes(
    chromium: Browser, gateway_process: GatewayProcess
) -> None:
    proxy = TcpProxy(gateway_process.port)
    page = await sign_in(chromium, proxy.url, "alice")
    try:
        await page.add_init_script(TRACE_SCRIPT)
        await send_from_page(page, proxy.url, "echo", "wait: 60")
        await page.wait_for_selector("[data-role=connection]:text('live')")
        await page.wait_for_selector("[data-role=status-message]:has-text('waiting: step')")
        events_before = await streamed_events(page)
        proxy.cut()  # the stream dies mid-run; new connections are refused until restore
        await page.wait_for_function(
            "() => window.__trace.filter(e => e[0] === 'connection' && e[1].startsWith('reconnecting')).length >= 3",
            timeout=PAGE_TIMEOUT_MS,
        )
        proxy.restore()
        await page.wait_for_function(
            """(before) => document.querySelector("[data-role=connection]").textContent === "live" &&
                Number(document.querySelector("h1 + p.meta").textContent.match(/(\\d+) streamed/)[1]) > before""",
            arg=events_before,
            timeout=PAGE_TIMEOUT_MS,
        )
        assert await state_of(page) == "working", "the run goes on, followed again over a new stream"
        waits = [
            float(e[1].split()[2])
            for e in await page.evaluate("window.__trace")
            if str(e[1]).startswith("reconnecting")
        ]
        assert len(waits) >= 3 and waits[-1] > waits[0], f"back-off grows: {waits}"
        await page.click("[data-role=cancel]")
        await wait_state(page, "canceled")
    finally:
        await page.context.close()
        proxy.close()


async def streamed_events(page: Page) -> int:
    match = re.search(r"(\d+) streamed", await page.inner_text("h1 + p.meta"))
    assert match is not None
    return int(match.group(1))


def get_task(gateway: GatewayProcess, user: str, agent: str, task_id: str) -> dict[str, object]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": task_id}}
    headers = {"A2A-Version": "1.0", "X-API-Key": KEYS[user]}
    answer: dict[str, object] = httpx.post(f"{gateway.url}/agents/{agent}", json=body, headers=headers).json()
    return answer


async def test_a_metrics_refresh_that_fails_says_so_and_a_later_one_works(
    chromium: Browser, gateway_process: GatewayProcess
) -> None:
    proxy = TcpProxy(gateway_process.port)
    ops = await sign_in(chromium, proxy.url, "ops")
    uncaught: list[str] = []
    ops.on("pageerror", lambda error: uncaught.append(str(error)))
    try:
        await ops.goto(f"{proxy.url}/ui/operations")
        await loaded(ops, "operations")
        totals = await ops.inner_text("[data-role=totals]")
        proxy.cut()  # the gateway is away: the metrics fetch fails
        await ops.click("button:text('Refresh metrics')")
        await ops.wait_for_selector("[data-role=metrics-error]:has-text('Metrics could not be refreshed')")
        assert await ops.inner_text("[data-role=totals]") == totals, "the last figures stay, said to be older"
        proxy.restore()
        await ops.click("button:text('Refresh metrics')")
        await ops.wait_for_function(
            "() => document.querySelector('[data-role=metrics-error]').textContent === ''", timeout=PAGE_TIMEOUT_MS
        )
        assert await ops.locator("[data-role=metrics] table").count() == 1
        assert uncaught == []
    finally:
        await ops.context.close()
        proxy.close()
