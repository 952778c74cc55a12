"""Human in the loop: an input-required A2A task asks the MCP client, or hands its task id back."""

from __future__ import annotations

from typing import Any

import anyio
from mcp.client import ClientRequestContext
from mcp_types import ElicitRequestParams, ElicitResult

from tests.mcp.conftest import McpTarget

TIMEOUT_S = 30


class Answers:
    """An elicitation callback that answers (or declines) and records the questions it was asked."""

    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.questions: list[str] = []

    async def __call__(self, ctx: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult:
        self.questions.append(params.message)
        if self.answer is None:
            return ElicitResult(action="decline")
        return ElicitResult(action="accept", content={"answer": self.answer})


def artifact_text(outcome: dict[str, Any]) -> str:
    return " ".join(a.get("text") or "" for a in outcome["artifacts"])


async def test_an_input_required_task_is_answered_through_elicitation(mcp: McpTarget) -> None:
    answers = Answers("Ada")
    async with mcp.client(elicitation_callback=answers) as client:
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("echo", {"text": "ask: name?"})
    outcome = result.structured_content or {}
    assert answers.questions == ["name?"]
    assert outcome["state"] == "completed", outcome
    assert artifact_text(outcome) == "You answered: Ada"


async def test_a_declined_question_hands_back_the_task_id_to_answer_later(mcp: McpTarget) -> None:
    async with mcp.client(elicitation_callback=Answers(None)) as client:
        with anyio.fail_after(TIMEOUT_S):
            first = await client.call_tool("echo", {"text": "ask: name?"})
            waiting = first.structured_content or {}
            later = await client.call_tool("echo", {"text": "Grace", "task_id": waiting["task_id"]})
    assert not first.is_error
    assert waiting["state"] == "input-required" and waiting["text"] == "name?"
    assert waiting["task_id"] in waiting["hint"]
    done = later.structured_content or {}
    assert done["task_id"] == waiting["task_id"] and done["state"] == "completed"
    assert artifact_text(done) == "You answered: Grace"


async def test_a_client_that_cannot_elicit_gets_the_task_id(mcp_http: McpTarget) -> None:
    async with mcp_http.client() as client:
        with anyio.fail_after(TIMEOUT_S):
            result = await client.call_tool("echo", {"text": "ask: colour?"})
    outcome = result.structured_content or {}
    assert outcome["state"] == "input-required" and outcome["task_id"]


async def test_an_unknown_task_id_is_a_tool_error(mcp_http: McpTarget) -> None:
    async with mcp_http.client() as client:
        result = await client.call_tool("echo", {"text": "hi", "task_id": "no-such-task"})
    assert result.is_error and "no-such-task" in result.content[0].text
