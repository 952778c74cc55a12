"""Agent Framework agents for the ``agent-framework`` adapter's tests, on the scripted model server."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

from agent_framework import (
    Agent,
    AgentResponse,
    AgentResponseUpdate,
    AgentSession,
    BaseAgent,
    Content,
    Executor,
    Message,
    ResponseStream,
    Workflow,
    WorkflowBuilder,
    WorkflowContext,
    handler,
    response_handler,
    tool,
)
from agent_framework.openai import OpenAIChatCompletionClient

CHAT_URL_ENV = "OPENAI_BASE_URL"


def lookup(topic: str) -> str:
    """Look up what is known about a topic."""
    return f"notes on {topic}"


@tool(approval_mode="always_require")
def deploy(version: str) -> str:
    """Deploy a version to production."""
    return f"deployed {version}"


def assistant() -> Agent:
    """A chat agent with a plain tool and one that needs the caller's approval."""
    client = OpenAIChatCompletionClient(model="test-model", base_url=os.environ[CHAT_URL_ENV], api_key="sk-test")
    return Agent(
        client=client, name="release_assistant", instructions="You help ship releases.", tools=[lookup, deploy]
    )


class Publisher(Executor):
    """Asks the caller before publishing what it was sent."""

    @handler
    async def draft(self, messages: list[Message], ctx: WorkflowContext) -> None:
        text = " ".join(m.text for m in messages if m.text)
        await ctx.request_info(f"Publish {text!r}? Say what to add.", str)

    @response_handler
    async def decided(self, request: str, answer: str, ctx: WorkflowContext[Any, str]) -> None:
        await ctx.yield_output(f"published with {answer}")


def publishing() -> Workflow:
    """A new one-step workflow that asks before it publishes (a function: each task gets its own)."""
    return WorkflowBuilder(start_executor=Publisher(id="publisher")).build()


class BrokenAgent(BaseAgent):
    """Streams one update, then raises."""

    def run(
        self, messages: Any = None, *, stream: bool = False, session: AgentSession | None = None, **kwargs: Any
    ) -> Any:
        async def updates() -> AsyncIterator[AgentResponseUpdate]:
            yield AgentResponseUpdate(contents=[Content.from_text("starting")], role="assistant")
            raise RuntimeError("the release database is unreachable")

        return ResponseStream(updates(), finalizer=AgentResponse.from_updates)


broken = BrokenAgent(name="broken")
