"""Follow-ups that name only their taskId stay in the task's context (the SDK would invent a new one)."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import httpx

V1 = {"A2A-Version": "1.0"}


def send(prefix: str, text: str, task_id: str = "") -> dict[str, Any]:
    message = {"messageId": f"{prefix}-{uuid4().hex}", "role": "ROLE_USER", "parts": [{"text": text}]}
    if task_id:
        message["taskId"] = task_id
    return {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": message}}


async def test_followups_without_context_id_keep_the_task_context(http: httpx.AsyncClient) -> None:
    first = (await http.post("/agents/echo", json=send("tck-input-required", "start"), headers=V1)).json()
    first = first["result"]["task"]
    assert first["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
    for text in ("one", "two"):
        again = (await http.post("/agents/echo", json=send("tck-input-required", text, first["id"]), headers=V1)).json()
        again = again["result"]["task"]
        assert again["status"]["state"] == "TASK_STATE_INPUT_REQUIRED"
        assert again["status"]["message"]["contextId"] == first["contextId"]
    done = (await http.post("/agents/echo", json=send("tck-complete-task", "done", first["id"]), headers=V1)).json()
    done = done["result"]["task"]
    assert done["status"]["state"] == "TASK_STATE_COMPLETED"
    assert done["contextId"] == first["contextId"] == done["status"]["message"]["contextId"]
    assert all(m["contextId"] == first["contextId"] for m in done["history"])
