"""A request body sent chunked (no Content-Length) is served exactly like one with a Content-Length.

The edge reads a chunked body itself (to cap its size) and hands it on; a stream answered to
such a request must run to its final event, not end as if the client had left.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gateway.testing import RunningGateway

V1 = {"A2A-Version": "1.0"}
SAMPLE = "import os\n\ndef f(x):\n    return eval(x)\n"


def _message(text: str) -> dict[str, Any]:
    return {"role": "ROLE_USER", "parts": [{"text": text}], "messageId": str(uuid.uuid4())}


def _jsonrpc_stream(text: str) -> bytes:
    body = {"jsonrpc": "2.0", "id": 1, "method": "SendStreamingMessage", "params": {"message": _message(text)}}
    return json.dumps(body).encode()


def _rest_stream(text: str) -> bytes:
    return json.dumps({"message": _message(text)}).encode()


async def _chunked(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 16):
        yield body[start : start + 16]


def _events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]


def _state(event: dict[str, Any]) -> str | None:
    result = event.get("result", event)
    task = result.get("task") or {}
    status = (result.get("statusUpdate") or {}).get("status") or task.get("status") or {}
    return status.get("state")


@pytest.mark.parametrize(
    ("path", "build"), [("", _jsonrpc_stream), ("/message:stream", _rest_stream)], ids=["jsonrpc", "rest"]
)
async def test_a_chunked_streaming_request_streams_to_the_end(gateway: RunningGateway, path: str, build: Any) -> None:
    url = gateway.agent_url("code-review") + path
    headers = {**V1, "Content-Type": "application/json", "Accept": "text/event-stream"}
    async with httpx.AsyncClient(timeout=60.0) as http:
        sized = await http.post(url, content=build(SAMPLE), headers=headers)
        chunked = await http.post(url, content=_chunked(build(SAMPLE)), headers=headers)
    assert "content-length" not in chunked.request.headers
    assert chunked.request.headers["transfer-encoding"] == "chunked"
    sized_states = [_state(e) for e in _events(sized.text)]
    chunked_states = [_state(e) for e in _events(chunked.text)]
    # How many progress events a run sends varies with timing; both must stream to the same end.
    assert sized_states[-1] == "TASK_STATE_COMPLETED", sized_states
    assert chunked_states[-1] == "TASK_STATE_COMPLETED", chunked_states
    assert len(chunked_states) > 2 and {"TASK_STATE_WORKING", "TASK_STATE_COMPLETED"} <= set(chunked_states)
