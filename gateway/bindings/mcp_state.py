"""The key that seals MCP 2026-07-28 ``requestState``, shared by replicas without configuring one.

A tool that needs the caller's input answers ``InputRequiredResult`` with a sealed
``requestState``; the client's retry may reach another replica, which must unseal it. With
``mcp_state_key`` set, every replica has that key. Without it, on PostgreSQL, the replicas use a
random secret the first of them stored in ``cluster_secrets`` (it is read when the database
opens; until then, and on SQLite, a key of this process's own). The sealing is the SDK's own
(``AESGCMRequestStateCodec``); only where its key comes from is decided here.
"""

from __future__ import annotations

import secrets

from mcp.server.request_state import AESGCMRequestStateCodec

from gateway.store.database import Database

SECRET_NAME = "mcp_request_state"


class SharedStateCodec:
    """The SDK's AES-GCM request-state codec, keyed by this process until ``use`` gives it the cluster's secret."""

    def __init__(self) -> None:
        self._codec = AESGCMRequestStateCodec([secrets.token_bytes(32)])

    def use(self, secret: str) -> None:
        """Seal and unseal with ``secret`` from now on (the cluster's shared one)."""
        self._codec = AESGCMRequestStateCodec([secret])

    def seal(self, payload: bytes) -> str:
        """``payload`` sealed into an opaque token."""
        return self._codec.seal(payload)

    def unseal(self, token: str) -> bytes:
        """The payload of a token sealed with the same secret (``InvalidRequestState`` otherwise)."""
        return self._codec.unseal(token)


async def shared_secret(db: Database, name: str = SECRET_NAME) -> str:
    """The cluster's secret called ``name``: made by the first replica that asks, the same for every other."""
    await db.write(
        "INSERT INTO cluster_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (name, secrets.token_hex(32)),
    )
    row = await db.fetch_one("SELECT value FROM cluster_secrets WHERE name = ?", (name,))
    assert row is not None  # inserted above, or by another replica first
    return str(row[0])
