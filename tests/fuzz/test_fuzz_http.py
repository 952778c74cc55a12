"""Fuzz JSON-RPC and HTTP+JSON: whatever a client sends, the answer is never a 5xx or -32603, no
traceback is logged, and the gateway stays healthy (checked when the session's gateways stop)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import FUZZ, TIMEOUT_S, Target, Trouble
from tests.fuzz.shapes import STREAMING_METHODS, headers, jsonrpc_body, rest_path
from tests.fuzz.wire import READ_S, check, exchange


@pytest.mark.fuzz
@pytest.mark.timeout(TIMEOUT_S)
@FUZZ
@given(data=st.data())
def test_jsonrpc_fuzz(target: Target, trouble: Trouble, data: st.DataObject) -> None:
    agent = data.draw(st.sampled_from(target.agents))
    body, method = data.draw(jsonrpc_body())
    sent = data.draw(headers(data.draw(st.sampled_from(target.credentials))))
    url = f"{target.gateway.url}/agents/{agent}{data.draw(st.sampled_from(['', '/']))}"
    trouble.take()
    with httpx.Client(timeout=READ_S) as client:
        try:
            status, text = exchange(client, "POST", url, body, sent)
        except httpx.ReadTimeout:
            if isinstance(method, str) and method in STREAMING_METHODS:
                return  # a stream that stays open (a task still running) is not a failure
            raise
    check(target, trouble, status, text, f"POST {url} {body[:200]!r}")


@pytest.mark.fuzz
@pytest.mark.timeout(TIMEOUT_S)
@FUZZ
@given(data=st.data())
def test_rest_fuzz(target: Target, trouble: Trouble, data: st.DataObject) -> None:
    agent = data.draw(st.sampled_from(target.agents))
    method, path, body = data.draw(rest_path(agent))
    sent = data.draw(headers(data.draw(st.sampled_from(target.credentials))))
    trouble.take()
    with httpx.Client(base_url=target.gateway.url, timeout=READ_S) as client:
        try:
            status, text = exchange(client, method, path, body, sent)
        except httpx.ReadTimeout:
            if ":subscribe" in path or ":stream" in path:
                return
            raise
    check(target, trouble, status, text, f"{method} {path} {body[:200]!r}" if body else f"{method} {path}")


def test_fuzzed_gateways_stay_healthy(target: Target) -> None:
    response: Any = httpx.get(f"{target.gateway.url}/healthz", timeout=10)
    assert response.status_code == 200
