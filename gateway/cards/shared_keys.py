"""Card-signing keys shared by every replica through PostgreSQL: one key set, rotated and retired live.

Replicas on one PostgreSQL (and no keys given in settings) keep the key ring in the
``signing_keys`` table: every replica signs with the same keys and serves the same JWKS. Whatever
starts the ring (the first replica, or ``switchboard keys rotate`` run before any replica) adopts
the keys of its data dir that are still published (``adopted``), so a single gateway that grows
into a cluster keeps its kid until it is retired; a new key only when there is none. That happens
under an advisory lock, so two starting together agree on one ring. ``switchboard keys
rotate|retire --database-url ...`` changes the table and NOTIFYs ``KEYS_CHANNEL`` in the same
transaction; every replica reloads the ring on it (and every ``POLL_S``, and when its LISTEN
session comes back), re-signs its cards and serves the new JWKS, without a restart.

Why the database rather than a secret: rotation must reach running replicas, and the database
is the one thing they already share and watch. The private keys are then as safe as the
database (which holds every task too); an operator who wants them only in a secret gives them
as ``SWITCHBOARD_SIGNING_KEYS`` (a JWKS of private keys) to every replica instead: then the table
is not used, and a rotation is a change of the secret and a rolling restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from gateway.cards.keys import DEFAULT_RETIRED_KEY_GRACE, KeyConfigError, KeyRing, SigningKey
from gateway.store.database import Database, Params

logger = logging.getLogger(__name__)

KEYS_CHANNEL = "switchboard_keys"
POLL_S = 30.0
"""The backstop: a replica reloads the ring this often even when no NOTIFY came."""
KEYS_LOCK = 7245063
"""The advisory lock (transaction-scoped) that makes the first seeding of the table happen once."""
# The table is created with the other cluster tables (``gateway.store.postgres.CLUSTER_SCHEMA``).


def _notify(what: str) -> tuple[str, Params]:
    return f"SELECT pg_notify('{KEYS_CHANNEL}', ?)", (what,)


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1e9)


async def load_ring(db: Database) -> KeyRing:
    """The shared key ring as stored, oldest key first."""
    rows = await db.fetch_all(
        "SELECT pem, retired, not_after_ns FROM signing_keys ORDER BY added_ns, kid",
    )
    keys = []
    for pem, retired, not_after_ns in rows:
        key = SigningKey.from_pem(str(pem))
        not_after = datetime.fromtimestamp(int(not_after_ns) / 1e9, UTC) if not_after_ns is not None else None
        keys.append(SigningKey(key.kid, key.alg, key.private_key, not_after, bool(retired)))
    return KeyRing(tuple(keys))


def _seeding(seed: Sequence[SigningKey], now_ns: int) -> list[tuple[str, Params]]:
    """Statements that put ``seed`` (with its retirements) in the table, when no key in it signs.

    Under ``KEYS_LOCK``, so two replicas (or a replica and the CLI) starting the ring together
    agree on one seed.
    """
    values = ", ".join("(?::text, ?::text, ?::text, ?::bigint, ?::boolean, ?::bigint)" for _ in seed)
    params: list[object] = []
    for n, key in enumerate(seed):
        not_after = _ns(key.not_after) if key.not_after else None
        params += [key.kid, key.alg, key.private_pem().decode(), now_ns + n, key.retired, not_after]
    live = "NOT retired AND (not_after_ns IS NULL OR not_after_ns > ?)"
    return [
        ("SELECT pg_advisory_xact_lock(?)", (KEYS_LOCK,)),
        (
            "INSERT INTO signing_keys (kid, alg, pem, added_ns, retired, not_after_ns) SELECT * FROM (VALUES "
            f"{values}) AS v WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE {live}) "
            "ON CONFLICT (kid) DO UPDATE SET retired = excluded.retired, not_after_ns = excluded.not_after_ns",
            (*params, now_ns),
        ),
    ]


def adopted(local: Sequence[SigningKey], now: datetime | None = None) -> tuple[SigningKey, ...]:
    """What a new shared ring takes over from a gateway's own keys: every key its JWKS still publishes.

    Its signing keys sign on, and a retired one stays published until its end, so partners that
    pinned or cached a kid of the single gateway keep verifying once it is a cluster.
    """
    moment = now or datetime.now(UTC)
    return tuple(key for key in local if key.published_at(moment))


async def ensure_ring(db: Database, local: Sequence[SigningKey], alg: str = "ES256") -> KeyRing:
    """The shared ring; when no key in it signs, first started with ``adopted(local)``.

    A new ``alg`` key is added when none of those signs (a cluster's very first start).
    """
    ring = await load_ring(db)
    if ring.signing_keys():
        return ring
    now = datetime.now(UTC)
    seed = adopted(local, now)
    if not any(key.signs_at(now) for key in seed):
        seed = (*seed, SigningKey.generate(alg))
    await db.write_many([*_seeding(seed, _ns(now)), _notify("seeded")])
    return await load_ring(db)


async def rotate(db: Database, alg: str = "ES256", local: Sequence[SigningKey] = ()) -> KeyRing:
    """Add a new key; every replica signs with it too from its next reload (the old keys sign until retired).

    On a database where no key signs yet (no replica started on it), the ring starts with
    ``adopted(local)``, the gateway's own keys, before the new key: its kid stays published.
    """
    key = SigningKey.generate(alg)
    now = time.time_ns()
    seed = adopted(local)
    await db.write_many(
        [
            *(_seeding(seed, now) if seed else []),
            (
                "INSERT INTO signing_keys (kid, alg, pem, added_ns) VALUES (?, ?, ?, ?)",
                (key.kid, key.alg, key.private_pem().decode(), now + len(seed)),
            ),
            _notify(f"rotate {key.kid}"),
        ]
    )
    return await load_ring(db)


async def ring_exists(db: Database) -> bool:
    """Whether the database has a ring at all (a table with a key in it); read without creating anything."""
    row = await db.fetch_one("SELECT to_regclass('signing_keys') IS NOT NULL")
    return bool(row and row[0]) and await db.fetch_one("SELECT 1 FROM signing_keys LIMIT 1") is not None


async def retire(
    db: Database, kid: str, *, keep_for: timedelta = DEFAULT_RETIRED_KEY_GRACE, now: datetime | None = None
) -> KeyRing:
    """Stop ``kid`` signing on every replica; it stays in their JWKS for ``keep_for``.

    ``KeyError`` when there is no such key; ``KeyConfigError`` when it is the last key that signs
    (rotate first: replicas would have nothing to sign cards with).
    """
    ring = await load_ring(db)
    ring.get(kid)
    if [key.kid for key in ring.signing_keys(now)] == [kid]:
        raise KeyConfigError(f"{kid} is the only key that signs; 'switchboard keys rotate' first, then retire it")
    not_after = (now or datetime.now(UTC)) + keep_for
    await db.write_many(
        [
            ("UPDATE signing_keys SET retired = TRUE, not_after_ns = ? WHERE kid = ?", (_ns(not_after), kid)),
            _notify(f"retire {kid}"),
        ]
    )
    return await load_ring(db)


def ring_state(ring: KeyRing) -> tuple[tuple[str, bool, datetime | None], ...]:
    """What a reload compares: each key's kid, retirement and end."""
    return tuple((key.kid, key.retired, key.not_after) for key in ring.keys)


class SharedKeys:
    """This replica's copy of the shared ring: loaded at start, reloaded on NOTIFY, reconnect and every ``POLL_S``."""

    def __init__(self, db: Database, changed: Callable[[KeyRing], None]) -> None:
        self._db = db
        self._changed = changed
        self._state: tuple[tuple[str, bool, datetime | None], ...] = ()
        self._reloading: asyncio.Task[None] | None = None
        self._again = False
        self.reloads = 0
        """How many times the ring changed here since start."""

    async def start(self, local: Sequence[SigningKey], alg: str) -> KeyRing:
        """The shared ring (started with this replica's ``local`` keys on the cluster's first start)."""
        ring = await ensure_ring(self._db, local, alg)
        self._state = ring_state(ring)
        return ring

    def notified(self, payload: str = "") -> None:
        """A NOTIFY on ``KEYS_CHANNEL`` (or the LISTEN session came back): reload soon, once for a burst."""
        if self._reloading is not None and not self._reloading.done():
            self._again = True
            return
        self._reloading = asyncio.ensure_future(self._reload_until_settled())

    async def _reload_until_settled(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            try:
                await self.reload()
            except Exception as exc:  # a database that is down: the next NOTIFY or poll tries again
                logger.warning("could not reload the shared signing keys: %s", exc)

    async def reload(self) -> None:
        """Read the ring; when it changed, hand it to ``changed`` (cards re-signed, JWKS served anew)."""
        ring = await load_ring(self._db)
        state = ring_state(ring)
        if state != self._state and ring.signing_keys():
            self._state = state
            self.reloads += 1
            logger.info("signing keys changed: %s", ", ".join(k.kid for k in ring.signing_keys()) + " sign")
            self._changed(ring)

    async def watch(self) -> None:
        """The backstop for a lost NOTIFY: reload every ``POLL_S`` until cancelled."""
        while True:
            await asyncio.sleep(POLL_S)
            self.notified()

    async def close(self) -> None:
        """Stop a reload under way."""
        if self._reloading is not None:
            self._reloading.cancel()
            await asyncio.gather(self._reloading, return_exceptions=True)
