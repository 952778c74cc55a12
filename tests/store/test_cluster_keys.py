"""Two ``python -m gateway serve`` replicas on one PostgreSQL sign with one key set, rotated and retired live.

Each replica has a data dir (and so a key) of its own; on the database they serve the same JWKS
and the same signers. ``switchboard keys rotate`` / ``retire --database-url`` change both running
replicas' cards and JWKS together, without a restart, and the admin action is in the audit trail.
A single gateway that grows into a cluster keeps its kids, whether a replica or the CLI starts the ring.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.cards import keys
from gateway.cards.signing import TrustPolicy, verify_card_json
from gateway.store import open_database
from tests.federation.support import REPO, Org, org, python_agent
from tests.store.test_task_store import _run_sql

pytest_plugins = ["tests.store.test_cluster_replicas"]  # cluster_dsn: a schema of the module's own
pytestmark = pytest.mark.skipif(not os.environ.get("SWITCHBOARD_TEST_PG_DSN"), reason="needs PostgreSQL")
CARD = "/agents/echo/.well-known/agent-card.json"
CHANGE_S = 10.0
"""How long every replica may take to serve a key change (a NOTIFY: well under a second here)."""


@pytest.fixture(scope="module")
def replicas(cluster_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Org]]:
    """R1 and R2 on one database, each with a data dir (and a generated key) of its own."""
    root = tmp_path_factory.mktemp("keys")
    orgs = [org(f"r{n}", root, SWITCHBOARD_DATABASE_URL=cluster_dsn) for n in (1, 2)]
    for replica in orgs:
        python_agent(replica.folder / "agents", "echo", "gateway.agents.echo:EchoExecutor")
    try:
        for replica in orgs:  # one after the other: R2 starts on the ring R1 seeded
            replica.start()
            replica.wait_ready()
        yield orgs
    finally:
        for replica in orgs:
            replica.stop()


@pytest.fixture
def fresh_dsn() -> Iterator[str]:
    """A schema of this test's own: a database no replica started on yet."""
    dsn = os.environ["SWITCHBOARD_TEST_PG_DSN"]
    schema = f"sb_keys_{uuid.uuid4().hex[:12]}"
    _run_sql(dsn, f"CREATE SCHEMA {schema}")
    try:
        yield f"{dsn}{'&' if '?' in dsn else '?'}search_path={schema}"
    finally:
        _run_sql(dsn, f"DROP SCHEMA {schema} CASCADE")


def keys_cli(dsn: str, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """``switchboard keys ARGS`` against the database, as an operator runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWITCHBOARD_DATABASE_URL": dsn, **env}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def single_gateway_keys(data_dir: Path) -> tuple[str, str]:
    """A single gateway's data dir after a rotation of its own: (the retired kid, still published; the active kid)."""
    (old,) = keys.KeyRing.load_or_create(data_dir).keys
    keys.rotate(data_dir)
    keys.retire(data_dir, old.kid)
    (active,) = keys.KeyRing.load_or_create(data_dir).signing_keys()
    return old.kid, active.kid


def started(replica: Org) -> Org:
    python_agent(replica.folder / "agents", "echo", "gateway.agents.echo:EchoExecutor")
    replica.start()
    replica.wait_ready()
    return replica


async def served(replica: Org) -> tuple[set[str], set[str]]:
    """(kids in the replica's JWKS, kids whose signature on its card verifies against that JWKS)."""
    async with httpx.AsyncClient(base_url=replica.url, timeout=5) as http:
        jwks = (await http.get("/.well-known/jwks.json")).json()
        card = await http.get(CARD)
    verified = await verify_card_json(card.content, TrustPolicy(jwks=jwks))
    return {k["kid"] for k in jwks["keys"]}, set(verified.kids)


async def until_served(replicas: list[Org], jwks: set[str], signers: set[str]) -> None:
    """Wait (bounded) until every replica serves ``jwks`` and signs with ``signers``.

    Polled over HTTP: the change happens in other processes, with no event this one could wait on.
    """
    deadline = time.monotonic() + CHANGE_S
    while True:
        seen = [await served(replica) for replica in replicas]
        if all(s == (jwks, signers) for s in seen):
            return
        assert time.monotonic() < deadline, f"replicas serve {seen}, expected {(jwks, signers)}"
        await asyncio.sleep(0.05)


async def admin_rows(dsn: str) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch("SELECT method, detail FROM audit WHERE kind = 'admin'")]
    finally:
        await conn.close()


async def test_replicas_sign_with_one_key_set_and_follow_rotate_and_retire_live(
    replicas: list[Org], cluster_dsn: str
) -> None:
    first = [await served(replica) for replica in replicas]
    assert first[0] == first[1], "both replicas serve the same JWKS and sign with the same key"
    (kid,) = first[0][0]
    assert first[0][1] == {kid}

    rotated = keys_cli(cluster_dsn, "rotate")
    assert rotated.returncode == 0, rotated.stderr
    listed = {line.split()[0] for line in rotated.stdout.splitlines()}
    (new,) = listed - {kid}
    await until_served(replicas, {kid, new}, {kid, new})  # both keys sign while both are active

    retired = keys_cli(cluster_dsn, "retire", kid)
    assert retired.returncode == 0, retired.stderr
    await until_served(replicas, {kid, new}, {new})  # the retired key stays published, and no longer signs

    last = keys_cli(cluster_dsn, "retire", new)
    assert last.returncode == 2 and "only key that signs" in last.stderr, "the last signing key cannot be retired"
    unknown = keys_cli(cluster_dsn, "retire", "no-such-kid")
    assert unknown.returncode == 2 and "no signing key 'no-such-kid'" in unknown.stderr
    await until_served(replicas, {kid, new}, {new})
    assert ("keys.rotate", "") in await admin_rows(cluster_dsn)
    assert ("keys.retire", kid) in await admin_rows(cluster_dsn)


async def test_a_replica_starting_the_ring_keeps_the_kids_its_data_dir_publishes(
    fresh_dsn: str, tmp_path: Path
) -> None:
    replica = org("single", tmp_path, SWITCHBOARD_DATABASE_URL=fresh_dsn)
    old, active = single_gateway_keys(replica.folder / "data")
    try:
        published, signers = await served(started(replica))
    finally:
        replica.stop()
    assert published == {old, active}, "the retired key stays published to the end of its grace"
    assert signers == {active}


async def test_keys_rotate_before_any_replica_adopts_the_gateways_keys(fresh_dsn: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "single"
    old, active = single_gateway_keys(data_dir)

    rotated = keys_cli(fresh_dsn, "rotate", SWITCHBOARD_DATA_DIR=str(data_dir))  # the data dir as the gateway finds it
    assert rotated.returncode == 0, rotated.stderr
    listed = {line.split()[0]: line.split()[2] for line in rotated.stdout.splitlines()}
    assert listed.pop(old) == "retired" and listed.pop(active) == "active"
    ((new, state),) = listed.items()
    assert state == "active"
    assert f"starts with the keys of {data_dir}: {old}, {active}" in rotated.stderr

    replica = org("replica", tmp_path, SWITCHBOARD_DATABASE_URL=fresh_dsn)  # a data dir (and key) of its own
    try:
        assert await served(started(replica)) == ({old, active, new}, {active, new})
    finally:
        replica.stop()
    assert ("keys.rotate", "") in await admin_rows(fresh_dsn)


async def test_keys_list_on_a_database_without_a_ring_says_so_and_makes_nothing(fresh_dsn: str) -> None:
    listed = keys_cli(fresh_dsn)
    assert listed.returncode == 0 and listed.stdout == ""
    assert len(listed.stderr.splitlines()) == 1, listed.stderr
    assert "no shared key ring in this database yet" in listed.stderr
    assert "'switchboard keys rotate --database-url ...'" in listed.stderr
    retired = keys_cli(fresh_dsn, "retire", "some-kid")
    assert retired.returncode == 2 and "no signing key 'some-kid' in the database" in retired.stderr
    conn = await asyncpg.connect(fresh_dsn)
    try:
        assert await conn.fetch("SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema()") == []
    finally:
        await conn.close()


async def test_keys_commands_do_not_wait_for_a_replicas_open_transaction(fresh_dsn: str, tmp_path: Path) -> None:
    db = await open_database(fresh_dsn)  # the tables, as a replica makes them
    await db.close()
    conn = await asyncpg.connect(fresh_dsn)
    try:
        async with conn.transaction():  # a replica reading tasks: a full migrate's ALTER TABLE would wait for it
            await conn.fetch("SELECT * FROM tasks")
            env = {"SWITCHBOARD_DATA_DIR": str(tmp_path)}
            rotated = await asyncio.to_thread(keys_cli, fresh_dsn, "rotate", timeout=20, **env)
            assert rotated.returncode == 0, rotated.stderr
            (kid,) = {line.split()[0] for line in rotated.stdout.splitlines()}
            listed = await asyncio.to_thread(keys_cli, fresh_dsn, timeout=20, **env)
            assert listed.returncode == 0 and listed.stdout.split()[0] == kid
    finally:
        await conn.close()
