"""The ``agent_cards/`` file format, version 1: one YAML file per agent.

A file holds the card content (name, description, version, skills, modes, capabilities,
security) and a ``runtime:`` binding. The committed JSON Schema (``agent_cards/schema.json``)
is generated from these models; a test fails when the two drift apart.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
_URL_RE = re.compile(r"\b[a-z][a-z0-9+.-]*://", re.IGNORECASE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SkillSpec(_Strict):
    """One skill of the agent, as published on its card."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    name: str
    description: str
    tags: list[str] = Field(min_length=1)
    examples: list[str] = []
    input_modes: list[str] = []
    output_modes: list[str] = []


class CapabilitiesSpec(_Strict):
    """What the agent's A2A surface supports."""

    streaming: bool = True
    push_notifications: bool = True


class PythonRuntime(_Strict):
    """An in-process async callable ``(call, emit) -> Reply`` or an a2a ``AgentExecutor`` class."""

    kind: Literal["python"]
    entrypoint: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", description="module:attribute")
    options: dict[str, Any] = {}


class LlmRuntime(_Strict):
    """A chat model behind an OpenAI-compatible endpoint (settings supply URL and key)."""

    kind: Literal["llm"]
    model: str = Field(default="", description="overrides the model setting")
    system_prompt: str = ""
    handoffs: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default=[], description="agents this one may transfer to, each offered as a transfer_to_<agent> tool"
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    input_price_per_1k: float | None = Field(default=None, ge=0, description="default: the llm price setting")
    output_price_per_1k: float | None = Field(default=None, ge=0, description="default: the llm price setting")


class A2ARuntime(_Strict):
    """A remote agent by card URL (federation); the only runtime whose file may hold a URL."""

    kind: Literal["a2a"]
    card_url: str
    peer: str = ""


class McpRuntime(_Strict):
    """One tool of an MCP server, wrapped as an agent."""

    kind: Literal["mcp"]
    server: str
    tool: str


class CommandRuntime(_Strict):
    """A subprocess speaking JSON on stdin/stdout."""

    kind: Literal["command"]
    argv: list[str] = Field(min_length=1)
    timeout_s: float = Field(default=60.0, gt=0)


class WorkflowLimits(_Strict):
    """Overrides of a run's default limits; each one left out keeps the engine's default."""

    max_steps: int | None = Field(default=None, ge=1, description="steps (child tasks) per run; default 50")
    max_rounds: int | None = Field(default=None, ge=1, description="rounds of a looping pattern; default 10")
    max_hops: int | None = Field(default=None, ge=1, description="handoffs and nested workflow levels; default 8")
    deadline_s: float | None = Field(default=None, gt=0, description="wall-clock seconds per run; default 600")
    max_tokens: int | None = Field(default=None, ge=1, description="token budget from reported usage; default none")
    max_cost: float | None = Field(default=None, gt=0, description="cost budget from reported usage; default none")
    step_timeout_s: float | None = Field(default=None, gt=0, description="seconds per step attempt; default 120")
    retries: int | None = Field(default=None, ge=0, description="retries of a retryable step failure; default 2")
    backoff_base_s: float | None = Field(default=None, ge=0, description="first retry's backoff cap; default 0.2")
    backoff_max_s: float | None = Field(default=None, ge=0, description="largest backoff cap; default 5")
    breaker_threshold: int | None = Field(
        default=None, ge=1, description="consecutive failures that open an agent's circuit; default 5"
    )
    breaker_reset_s: float | None = Field(
        default=None, gt=0, description="seconds an open circuit waits before a trial call; default 30"
    )


class WorkflowRuntime(_Strict):
    """An orchestration: a pattern over participants, itself an agent."""

    kind: Literal["workflow"]
    pattern: str = Field(description="a pattern of gateway.orchestration.catalog, e.g. sequential or concurrent")
    participants: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(min_length=1)
    options: dict[str, Any] = Field(
        default={},
        description="the pattern's options, plus fallbacks: {agent: [alternate, ...]} tried when a step fails",
    )
    limits: WorkflowLimits = WorkflowLimits()


RuntimeSpec = Annotated[
    PythonRuntime | LlmRuntime | A2ARuntime | McpRuntime | CommandRuntime | WorkflowRuntime,
    Field(discriminator="kind"),
]


class AgentSpec(_Strict):
    """One agent file."""

    format: Literal[1] = Field(description="version of this file format")
    name: str = Field(pattern=NAME_PATTERN, description="URL-safe name; the agent is served at /agents/{name}")
    description: str = Field(min_length=1)
    version: str = "1.0.0"
    provider: str = "Switchboard"
    default_input_modes: list[str] = ["text/plain"]
    default_output_modes: list[str] = ["text/plain", "application/json"]
    capabilities: CapabilitiesSpec = CapabilitiesSpec()
    skills: list[SkillSpec] = Field(min_length=1)
    security: Literal["default", "none"] = Field(
        default="default", description="'none' publishes the agent without authentication (conformance agents)"
    )
    enabled: bool = True
    runtime: RuntimeSpec

    @field_validator("description", "provider", "version")
    @classmethod
    def _no_urls(cls, value: str) -> str:
        # URLs come from the public base URL setting, never from a local agent's file.
        if _URL_RE.search(value):
            raise ValueError("URLs do not belong in an agent file; they come from the public URL setting")
        return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the agent file format, as committed in ``agent_cards/schema.json``."""
    schema = AgentSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Switchboard agent file, format 1"
    return schema


if __name__ == "__main__":  # python -m gateway.spec > agent_cards/schema.json
    import json
    import sys

    sys.stdout.write(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n")
