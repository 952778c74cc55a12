"""CrewAI crews for the ``crewai`` adapter's tests, on the scripted model server (``OPENAI_BASE_URL``)."""

from __future__ import annotations

import os

from crewai import LLM, Agent, Crew, Process, Task, TaskOutput
from crewai.tools import tool

CHAT_URL_ENV = "OPENAI_BASE_URL"


@tool("lookup")
def lookup(topic: str) -> str:
    """Look up what is known about a topic."""
    return f"notes on {topic}"


def _llm() -> LLM:
    # The scripted server answers every request as a stream, as a streaming model would.
    return LLM(model="openai/test-model", base_url=os.environ[CHAT_URL_ENV], api_key="sk-test", stream=True)


def _agents() -> tuple[Agent, Agent]:
    researcher = Agent(role="Researcher", goal="Find facts", backstory="You research.", llm=_llm(), tools=[lookup])
    writer = Agent(role="Writer", goal="Write clearly", backstory="You write.", llm=_llm())
    return researcher, writer


def release_crew() -> Crew:
    """A researcher (with a tool) then a writer, over the request."""
    researcher, writer = _agents()
    tasks = [
        Task(description="Research {request}", expected_output="notes", agent=researcher),
        Task(description="Write one sentence about {request}", expected_output="a sentence", agent=writer),
    ]
    return Crew(agents=[researcher, writer], tasks=tasks, process=Process.sequential)


def reviewed_crew() -> Crew:
    """A writer whose answer a human reviews before it is final."""
    _, writer = _agents()
    task = Task(
        description="Write a tagline for {request}", expected_output="a tagline", agent=writer, human_input=True
    )
    return Crew(agents=[writer], tasks=[task])


def _fail(output: TaskOutput) -> None:
    raise RuntimeError("the release database is unreachable")


def broken_crew() -> Crew:
    """Its first task's callback raises once the task is done."""
    researcher, writer = _agents()
    tasks = [
        Task(description="Research {request}", expected_output="notes", agent=researcher, callback=_fail),
        Task(description="Write about {request}", expected_output="a sentence", agent=writer),
    ]
    return Crew(agents=[researcher, writer], tasks=tasks)
