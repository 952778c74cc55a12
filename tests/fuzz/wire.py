"""Sending a fuzzed HTTP request and judging its answer: no 5xx, no -32603, nothing logged at ERROR."""

from __future__ import annotations

import json

import httpx

from tests.fuzz.conftest import Target, Trouble

READ_S = 10.0


def internal_errors(text: str) -> list[str]:
    """Every JSON-RPC error object in a JSON or SSE body whose code is -32603 (internal)."""
    found = []
    for line in text.splitlines() or [text]:
        line = line.removeprefix("data:").strip()
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        for item in doc if isinstance(doc, list) else [doc]:
            error = item.get("error") if isinstance(item, dict) else None
            if isinstance(error, dict) and error.get("code") == -32603:
                found.append(line[:300])
    return found


def exchange(client: httpx.Client, method: str, url: str, body: bytes | None, sent: dict[str, str]) -> tuple[int, str]:
    """Send one request and read the whole answer (an SSE stream until it ends, bounded)."""
    with client.stream(method, url, content=body, headers=sent) as response:
        chunks = []
        for chunk in response.iter_text():
            chunks.append(chunk)
        return response.status_code, "".join(chunks)


def check(target: Target, trouble: Trouble, status: int, text: str, what: str) -> None:
    assert status < 500, f"{what}: HTTP {status}: {text[:300]}"
    assert not internal_errors(text), f"{what}: {internal_errors(text)}"
    logged = trouble.take()
    assert not logged, f"{what}: logged {logged}"
