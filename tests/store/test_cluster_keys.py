"""Two ``python -m gateway serve`` replicas on one PostgreSQL sign with one key set, rotated and retired live.

Each replica has a data dir (and so a key) of its own; on the database they serve the same JWKS
and the same signers. ``switchboard keys rotate`` / ``retire --database-url`` change both running
replicas' cards and JWKS together, without a restart, and the admin action is in the audit trail.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from gateway.cards.signing import TrustPolicy, verify_card_json
from tests.federation.support import REPO, Org, org, python_agent

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


def keys_cli(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``switchboard keys ARGS`` against the database, as an operator runs it."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "SWITCHBOARD_DATABASE_URL": dsn}
    return subprocess.run(
        [sys.executable, "-m", "gateway", "keys", *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )


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
