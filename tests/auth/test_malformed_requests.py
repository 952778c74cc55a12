"""A malformed request to a protected agent gets the protocol's client error, as it would on an open one.

The auth guard reads a JSON-RPC body to learn which skill a message names; what it reads may be
anything a client sends.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from tests.auth.conftest import ApiKeys

V1 = {"A2A-Version": "1.0", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("method", "params"),
    [({"an": "object"}, {}), (["SendMessage"], {}), (7, {}), ("SendMessage", "not-an-object"), (None, {})],
    ids=["object", "list", "number", "params-string", "null"],
)
async def test_a_malformed_jsonrpc_request_to_a_skill_scoped_agent_is_a_client_error(
    http: httpx.AsyncClient, api_keys: ApiKeys, caplog: pytest.LogCaptureFixture, method: Any, params: Any
) -> None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    response = await http.post("/agents/vault", content=body, headers={**V1, "X-API-Key": api_keys.ci})
    assert response.status_code < 500, response.text
    error = response.json()["error"]
    assert error["code"] != -32603, error  # a client error: invalid request, or the scopes a send needs
    assert not [r for r in caplog.records if r.exc_info or r.levelno > logging.WARNING]


@pytest.mark.parametrize("path", ["", "/message:send"], ids=["jsonrpc", "rest"])
async def test_json_nested_too_deep_for_the_auth_guard_is_a_client_error(
    http: httpx.AsyncClient, api_keys: ApiKeys, caplog: pytest.LogCaptureFixture, path: str
) -> None:
    body = b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}"  # json.loads gives up (RecursionError) on this
    response = await http.post(f"/agents/vault{path}", content=body, headers={**V1, "X-API-Key": api_keys.ci})
    assert response.status_code in (200, 400, 403), response.text  # 403: a REST send naming no skill needs them all
    if path == "":
        assert response.json()["error"]["code"] == -32700
    assert not [r for r in caplog.records if r.exc_info or r.levelno > logging.WARNING]
