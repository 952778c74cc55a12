"""The dashboard's JSON API and pages over real HTTP: owner isolation, paging, bad input, headers."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.auth.api_keys import api_key_line, new_api_key
from gateway.testing import RunningGateway, running_gateway
from gateway.ui.pages import CSP, STATIC_DIR
from gateway.ui.tasks import TaskQuery, encode_cursor, task_sql
from tests.conftest import make_settings
from tests.ui.conftest import KEYS, key_lines, protected_agents


def as_(user: str) -> dict[str, str]:
    return {"X-API-Key": KEYS[user]}


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    settings = make_settings(tmp_path, auth_api_keys=key_lines(), agents=protected_agents(tmp_path))
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        yield client


async def send_echo(http: httpx.AsyncClient, user: str, text: str) -> str:
    """A completed echo task of ``user``'s, over A2A JSON-RPC; its id."""
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": text}]}},
    }
    answer = (await http.post("/agents/echo", json=body, headers={"A2A-Version": "1.0", **as_(user)})).json()
    assert answer["result"]["task"]["status"]["state"] == "TASK_STATE_COMPLETED", answer
    return str(answer["result"]["task"]["id"])


async def test_the_api_refuses_a_caller_without_credentials(http: httpx.AsyncClient) -> None:
    for path in ("/ui/api/me", "/ui/api/tasks", "/ui/api/audit", "/ui/api/keys"):
        answer = await http.get(path)
        assert answer.status_code == 401, path
        assert "X-API-Key" in answer.json()["error"]["message"]
    wrong = await http.get("/ui/api/me", headers={"X-API-Key": "sb_not-a-key"})
    assert wrong.status_code == 401


async def test_me_names_the_caller_and_whether_it_is_an_operator(http: httpx.AsyncClient) -> None:
    alice = (await http.get("/ui/api/me", headers=as_("alice"))).json()
    ops = (await http.get("/ui/api/me", headers=as_("ops"))).json()
    assert alice == {"caller": "apikey:alice", "operator": False, "auth": True}
    assert ops == {"caller": "apikey:ops", "operator": True, "auth": True}


async def test_a_caller_lists_only_its_own_tasks_and_an_operator_lists_all(http: httpx.AsyncClient) -> None:
    mine = await send_echo(http, "alice", "alice's")
    theirs = await send_echo(http, "bob", "bob's")
    alice = (await http.get("/ui/api/tasks", headers=as_("alice"))).json()
    bob = (await http.get("/ui/api/tasks", headers=as_("bob"))).json()
    ops = (await http.get("/ui/api/tasks", headers=as_("ops"))).json()
    assert [t["id"] for t in alice["tasks"]] == [mine]
    assert [t["id"] for t in bob["tasks"]] == [theirs]
    assert {t["id"] for t in ops["tasks"]} == {mine, theirs}
    assert {t["owner"] for t in ops["tasks"]} == {"apikey:alice", "apikey:bob"}
    # A typed id of another caller's task finds nothing, as an id that does not exist.
    assert (await http.get("/ui/api/tasks", params={"id": mine}, headers=as_("bob"))).json()["tasks"] == []
    assert (await http.get("/ui/api/tasks", params={"id": "nope"}, headers=as_("bob"))).json()["tasks"] == []
    found = (await http.get("/ui/api/tasks", params={"id": mine}, headers=as_("alice"))).json()["tasks"]
    assert [(t["agent"], t["state"], t["summary"]) for t in found] == [("echo", "TASK_STATE_COMPLETED", "alice's")]


async def test_one_task_is_read_by_its_owner_or_an_operator_only(http: httpx.AsyncClient) -> None:
    task_id = await send_echo(http, "alice", "alice's")
    params = {"agent": "echo", "id": task_id}
    own = await http.get("/ui/api/task", params=params, headers=as_("alice"))
    other = await http.get("/ui/api/task", params=params, headers=as_("bob"))
    missing = await http.get("/ui/api/task", params={"agent": "echo", "id": "nope"}, headers=as_("bob"))
    ops = await http.get("/ui/api/task", params=params, headers=as_("ops"))
    assert own.json()["task"]["id"] == task_id and own.json()["owner"] == "apikey:alice"
    assert own.json()["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
    assert other.status_code == missing.status_code == 404
    assert other.json()["error"]["message"] == f"task {task_id} not found on echo"
    assert ops.json()["owner"] == "apikey:alice" and ops.json()["task"]["artifacts"][0]["parts"][0]["text"] == "alice's"
    bad = await http.get("/ui/api/task", params={"agent": "echo"}, headers=as_("ops"))
    assert bad.status_code == 400 and "agent and id" in bad.json()["error"]["message"]


async def test_tasks_come_a_page_at_a_time_newest_first(http: httpx.AsyncClient) -> None:
    sent = [await send_echo(http, "alice", f"task {n}") for n in range(7)]
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = (await http.get("/ui/api/tasks", params={"limit": 3, "cursor": cursor}, headers=as_("alice"))).json()
        assert len(page["tasks"]) <= 3
        seen += [t["id"] for t in page["tasks"]]
        pages += 1
        cursor = page["next"]
        if not cursor:
            break
    assert pages == 3
    assert seen == list(reversed(sent))


async def test_runs_and_active_filters(http: httpx.AsyncClient) -> None:
    await send_echo(http, "alice", "not a run")
    runs = (await http.get("/ui/api/tasks", params={"kind": "runs"}, headers=as_("alice"))).json()
    active = (await http.get("/ui/api/tasks", params={"state": "active"}, headers=as_("alice"))).json()
    assert runs == {"tasks": [], "next": ""}
    assert active == {"tasks": [], "next": ""}


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ({"limit": "0"}, "limit must be a whole number from 1 to 100"),
        ({"limit": "101"}, "limit must be a whole number from 1 to 100"),
        ({"limit": "-3"}, "limit must be a whole number from 1 to 100"),
        ({"limit": "\u00b2"}, "limit must be a whole number from 1 to 100"),
        ({"cursor": "not-a-cursor"}, "cursor is not one this API gave out"),
        ({"cursor": "!!!"}, "cursor is not one this API gave out"),
        ({"kind": "everything"}, "kind must be 'all' or 'runs'"),
        ({"state": "sleeping"}, "state must be 'all' or 'active'"),
    ],
)
async def test_a_bad_task_query_is_a_400_saying_what_is_wrong(
    http: httpx.AsyncClient, query: dict[str, str], said: str
) -> None:
    answer = await http.get("/ui/api/tasks", params=query, headers=as_("alice"))
    assert answer.status_code == 400
    assert said in answer.json()["error"]["message"]
    assert answer.json()["error"]["status"] == "INVALID_ARGUMENT"


async def test_audit_rows_are_the_callers_own_unless_operator(http: httpx.AsyncClient, gateway: RunningGateway) -> None:
    await send_echo(http, "alice", "audited")
    await send_echo(http, "bob", "audited too")
    operating = gateway.app.state.gateway.operating
    await operating.audit.flush()
    alice = (await http.get("/ui/api/audit", headers=as_("alice"))).json()["entries"]
    ops = (await http.get("/ui/api/audit", headers=as_("ops"))).json()["entries"]
    assert alice and {e["caller"] for e in alice} == {"apikey:alice"}
    assert {"apikey:alice", "apikey:bob"} <= {e["caller"] for e in ops}
    first = (await http.get("/ui/api/audit", params={"limit": 1}, headers=as_("ops"))).json()
    older = (await http.get("/ui/api/audit", params={"limit": 1, "before": first["next"]}, headers=as_("ops"))).json()
    assert first["next"] and older["entries"][0]["at"] <= first["entries"][0]["at"]
    for before in ("yesterday", "\u00b2"):
        bad = await http.get("/ui/api/audit", params={"before": before}, headers=as_("ops"))
        assert bad.status_code == 400 and "before must be a whole number" in bad.json()["error"]["message"]


async def test_metrics_need_the_operator_or_metrics_scope(http: httpx.AsyncClient) -> None:
    await send_echo(http, "alice", "counted")
    refused = await http.get("/ui/api/metrics", headers=as_("alice"))
    assert refused.status_code == 403
    assert "switchboard:operator" in refused.json()["error"]["message"]
    metrics = (await http.get("/ui/api/metrics", headers=as_("ops"))).json()
    echo = next(a for a in metrics["agents"] if a["agent"] == "echo")
    assert echo["requests"] >= 1
    assert echo["meanS"] > 0
    assert metrics["tasks"].get("completed", 0) >= 1


async def test_keys_agents_and_peers(http: httpx.AsyncClient) -> None:
    keys = (await http.get("/ui/api/keys", headers=as_("alice"))).json()
    jwks = (await http.get("/.well-known/jwks.json")).json()
    assert keys["signing"] is True
    assert [(k["kid"], k["state"]) for k in keys["keys"]] == [(k["kid"], "current") for k in jwks["keys"]]
    agents = {a["name"]: a for a in (await http.get("/ui/api/agents", headers=as_("alice"))).json()}
    assert agents["code-review"]["pattern"] == "concurrent"
    assert agents["code-review"]["participants"][-1] == "review-lead"
    assert agents["echo"]["kind"] == "python"
    peers = (await http.get("/ui/api/peers", headers=as_("alice"))).json()
    assert peers["peers"] == [] and peers["gatewayId"].startswith("gw-")


async def test_api_answers_are_not_cached_and_unknown_paths_are_json_404(http: httpx.AsyncClient) -> None:
    answer = await http.get("/ui/api/me", headers=as_("alice"))
    assert answer.headers["cache-control"] == "no-store"
    missing = await http.get("/ui/api/nothing", headers=as_("alice"))
    assert missing.status_code == 404
    assert "no dashboard API at /ui/api/nothing" in missing.json()["error"]["message"]
    assert (await http.post("/ui/api/tasks", headers=as_("alice"))).status_code == 405


async def test_root_redirects_to_the_dashboard_and_pages_carry_a_strict_csp(http: httpx.AsyncClient) -> None:
    root = await http.get("/")
    assert root.status_code == 302 and root.headers["location"] == "/ui/"
    for path in ("/ui/", "/ui/runs", "/ui/tasks/echo/some-id", "/ui/static/app.js"):
        page = await http.get(path)
        assert page.status_code == 200, path
        assert page.headers["content-security-policy"] == CSP
        assert page.headers["x-content-type-options"] == "nosniff"
    assert "'unsafe-inline'" not in CSP and "default-src 'self'" in CSP
    index = (await http.get("/ui/agents/echo")).text
    assert '<script type="module" src="/ui/static/app.js">' in index
    assert "<script>" not in index and "style=" not in index


async def test_a_browser_opening_an_agents_url_gets_its_page(http: httpx.AsyncClient) -> None:
    page = await http.get("/agents/echo", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert page.status_code == 303 and page.headers["location"] == "/ui/agents/echo"
    api = await http.get("/agents/echo")
    assert api.status_code == 405 and api.headers["allow"] == "POST"
    assert "agent 'echo' is hosted here" in api.json()["error"]["message"]
    unknown = await http.get("/agents/nobody")
    assert unknown.status_code == 404
    assert "no agent named 'nobody'" in unknown.json()["error"]["message"]


def test_the_front_end_never_parses_markup_or_inlines_code() -> None:
    """Every text goes in as text: no innerHTML and friends, no eval, no inline handlers or styles."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function\(")
    for path in STATIC_DIR.iterdir():
        text = path.read_text(encoding="utf-8")
        assert not forbidden.search(text), f"{path.name}: {forbidden.search(text)}"
        if path.suffix == ".html":
            assert not re.search(r"<script(?![^>]*\bsrc=)|\son\w+=|style=|<style", text), path.name


@pytest.mark.parametrize(("owner", "index"), [("apikey:alice", "tasks_by_owner_time"), (None, "tasks_by_any_time")])
async def test_a_page_of_tasks_is_read_through_an_index_without_sorting_the_history(
    gateway: RunningGateway, owner: str | None, index: str
) -> None:
    """What keeps a page's cost flat as history grows: SQLite walks an index in order and stops after the page."""
    query = TaskQuery(owner=owner, limit=25, cursor=encode_cursor(2**62, "f"))
    sql, args = task_sql(query)
    plan = " ".join(
        str(row[-1]) for row in await gateway.app.state.gateway.db.fetch_all("EXPLAIN QUERY PLAN " + sql, args)
    )
    assert f"USING INDEX {index}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


async def test_paging_and_isolation_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    """The same list on a shared PostgreSQL database (other tests' tasks are there too: callers are unique here)."""
    run = uuid.uuid4().hex[:8]
    keys = {f"alice-{run}": new_api_key(), f"bob-{run}": new_api_key()}
    settings = make_settings(
        tmp_path,
        auth_api_keys=[api_key_line(name, key) for name, key in keys.items()],
        agents=protected_agents(tmp_path),
        database_url=pg_dsn,
    )
    async with running_gateway(settings) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        alice, bob = ({"X-API-Key": key} for key in keys.values())
        sent = [await send_as(http, alice, f"pg {n}") for n in range(5)]
        theirs = await send_as(http, bob, "bob's")
        seen, cursor = [], ""
        while True:
            page = (await http.get("/ui/api/tasks", params={"limit": 2, "cursor": cursor}, headers=alice)).json()
            seen += [t["id"] for t in page["tasks"]]
            cursor = page["next"]
            if not cursor:
                break
        assert seen == list(reversed(sent))
        assert (await http.get("/ui/api/tasks", params={"id": theirs}, headers=alice)).json()["tasks"] == []
        read = await http.get("/ui/api/task", params={"agent": "echo", "id": theirs}, headers=alice)
        assert read.status_code == 404


NUL_QUERIES = [
    ("/ui/api/tasks", {"agent": "echo\x00"}),
    ("/ui/api/tasks", {"id": "\x00"}),
    ("/ui/api/tasks", {"kind": "runs", "agent": "\x00"}),
    ("/ui/api/tasks", {"cursor": "\x00"}),
    ("/ui/api/task", {"agent": "echo\x00", "id": "x"}),
    ("/ui/api/task", {"agent": "echo", "id": "x\x00"}),
    ("/ui/api/audit", {"before": "1\x00"}),
    ("/ui/api/audit", {"limit": "\x00"}),
    ("/ui/api/audit", {"na\x00me": "x"}),
]


async def test_a_nul_in_a_query_is_a_400_on_postgresql(tmp_path: Path, pg_dsn: str) -> None:
    """PostgreSQL text cannot hold NUL: a filter holding one is refused before it reaches the database."""
    key = new_api_key()
    settings = make_settings(
        tmp_path,
        auth_api_keys=[api_key_line(f"nul-{uuid.uuid4().hex[:8]}", key, ["switchboard:operator"])],
        agents=protected_agents(tmp_path),
        database_url=pg_dsn,
    )
    async with running_gateway(settings) as running, httpx.AsyncClient(base_url=running.url, timeout=30) as http:
        answers = [
            (path, params, await http.get(path, params=params, headers={"X-API-Key": key}))
            for path, params in NUL_QUERIES
        ]
        fine = await http.get("/ui/api/tasks", params={"agent": "echo"}, headers={"X-API-Key": key})

    for path, params, answer in answers:
        assert answer.status_code == 400, (path, params, answer.text)
        error = answer.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT"
        assert "NUL" in error["message"] or "whole number" in error["message"], error
    assert fine.status_code == 200


async def send_as(http: httpx.AsyncClient, headers: dict[str, str], text: str) -> str:
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {"message": {"role": "ROLE_USER", "messageId": str(uuid.uuid4()), "parts": [{"text": text}]}},
    }
    answer = (await http.post("/agents/echo", json=body, headers={"A2A-Version": "1.0", **headers})).json()
    return str(answer["result"]["task"]["id"])


def test_every_module_is_preloaded_by_the_page() -> None:
    """The page names every module it will import, so the browser fetches them at once, not level by level."""
    index = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    preloaded = set(re.findall(r'<link rel="modulepreload" href="\{\{static\}\}/([\w.]+)">', index))
    assert preloaded == {p.name for p in STATIC_DIR.glob("*.js")} - {"app.js"}
