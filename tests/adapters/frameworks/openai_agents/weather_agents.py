"""An OpenAI Agents SDK agent for the adapter's tests: a triage agent that hands off to a forecaster.

The forecaster has a forecast tool and a send tool that needs approval. Its model is the SDK's
chat-completions model on an ``AsyncOpenAI`` client, which finds its endpoint in ``OPENAI_BASE_URL``
(the tests' scripted server). Tracing is off: nothing leaves the machine.
"""

from __future__ import annotations

from agents import Agent, OpenAIChatCompletionsModel, function_tool, set_tracing_disabled
from openai import AsyncOpenAI

set_tracing_disabled(True)


@function_tool
def forecast(city: str) -> str:
    """The weather forecast for a city."""
    return f"Sunny in {city}, 21 C"


@function_tool(needs_approval=True)
def send_forecast(city: str, team: str) -> str:
    """Send a city's forecast to a team."""
    return f"Sent the {city} forecast to {team}."


def build() -> Agent:
    """The triage agent (a client of its own per gateway: each test has an event loop of its own)."""
    model = OpenAIChatCompletionsModel(model="test-model", openai_client=AsyncOpenAI())
    forecaster = Agent(
        name="forecaster",
        instructions="Answer weather questions with the forecast tool; send forecasts only when asked.",
        tools=[forecast, send_forecast],
        model=model,
    )
    return Agent(
        name="triage",
        instructions="Hand weather questions to the forecaster.",
        handoffs=[forecaster],
        model=model,
    )
