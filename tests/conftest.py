"""Shared fixtures: a real gateway on loopback and a2a-sdk clients for each binding."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.settings import Settings, bundled_agents_dir
from gateway.testing import RunningGateway, running_gateway
from tests.bindings.a2a_clients import BINDINGS, Binding

PG_DSN_ENV = "SWITCHBOARD_TEST_PG_DSN"


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test gateway: bundled agents, a private data dir, loopback push URLs allowed."""
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "agents": bundled_agents_dir(),
        "allow_private_push_urls": True,
        "grpc_port": 0,
    }
    values.update(overrides)
    return Settings(**{k: v for k, v in values.items() if k in Settings.model_fields})


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[RunningGateway]:
    """A gateway with the bundled agents on SQLite, serving real HTTP on a free port."""
    async with running_gateway(make_settings(tmp_path)) as running:
        yield running


@pytest.fixture
async def http(gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    """A raw HTTP client aimed at the gateway, for what a protocol client would never send."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def pg_dsn() -> str:
    """The PostgreSQL DSN from the environment; tests that need it skip only when it is unset."""
    dsn = os.environ.get(PG_DSN_ENV, "")
    if not dsn:
        pytest.skip(f"{PG_DSN_ENV} is not set")
    return dsn


@pytest.fixture(params=BINDINGS, ids=lambda b: b.id)
def binding(request: pytest.FixtureRequest) -> Binding:
    """Each A2A binding a test runs on (a test that parametrizes ``binding`` itself overrides this)."""
    return request.param  # type: ignore[no-any-return]
