"""Google ADK agents for the ``adk`` adapter's tests, on the scripted model server (``OPENAI_BASE_URL``)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncGenerator
from pathlib import Path

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # LiteLLM would fetch its price list at import

from google.adk.agents import BaseAgent, LlmAgent
from google.adk.agents.invocation_context import InvocationContext
from google.adk.agents.readonly_context import ReadonlyContext
from google.adk.events import Event
from google.adk.models.lite_llm import LiteLlm
from google.adk.tools import BaseTool, FunctionTool, LongRunningFunctionTool
from google.adk.tools.base_toolset import BaseToolset
from google.genai import types

CHAT_URL_ENV = "OPENAI_BASE_URL"
CLOSED_FILE_ENV = "ADK_CLOSED_FILE"


def lookup(topic: str) -> str:
    """Look up what is known about a topic."""
    return f"notes on {topic}"


def deploy(version: str) -> str:
    """Deploy a version to production."""
    return f"deployed {version}"


def assistant() -> LlmAgent:
    """An LLM agent with a plain tool and one that needs the caller's confirmation."""
    model = LiteLlm(model="openai/test-model", api_base=os.environ[CHAT_URL_ENV], api_key="sk-test")
    return LlmAgent(
        name="release_assistant",
        model=model,
        instruction="You help ship releases.",
        tools=[FunctionTool(lookup), FunctionTool(deploy, require_confirmation=True)],
    )


def ask_manager(request: str) -> dict[str, str]:
    """Ask the release manager to sign a request off; the answer comes later."""
    return {"status": "waiting for the release manager"}


def signoff() -> LlmAgent:
    """An LLM agent whose long-running tool waits for a person's answer."""
    model = LiteLlm(model="openai/test-model", api_base=os.environ[CHAT_URL_ENV], api_key="sk-test")
    return LlmAgent(
        name="signoff", model=model, instruction="Get sign-off.", tools=[LongRunningFunctionTool(ask_manager)]
    )


class NotingToolset(BaseToolset):
    """The lookup tool, as a toolset that writes "closed" to the file ``$ADK_CLOSED_FILE`` names when ADK closes it."""

    async def get_tools(self, readonly_context: ReadonlyContext | None = None) -> list[BaseTool]:
        return [FunctionTool(lookup)]

    async def close(self) -> None:
        await asyncio.to_thread(Path(os.environ[CLOSED_FILE_ENV]).write_text, "closed")


def researcher() -> LlmAgent:
    """An LLM agent whose tools come from a toolset (a resource its runner closes)."""
    model = LiteLlm(model="openai/test-model", api_base=os.environ[CHAT_URL_ENV], api_key="sk-test")
    return LlmAgent(name="researcher", model=model, instruction="Look things up.", tools=[NotingToolset()])


class BrokenAgent(BaseAgent):
    """Says one thing, then raises."""

    async def _run_async_impl(self, ctx: InvocationContext) -> AsyncGenerator[Event, None]:
        content = types.Content(role="model", parts=[types.Part(text="starting")])
        yield Event(author=self.name, invocation_id=ctx.invocation_id, content=content, partial=True)
        raise RuntimeError("the release database is unreachable")


broken = BrokenAgent(name="broken")
