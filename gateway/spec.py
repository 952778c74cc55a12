"""The ``agent_cards/`` file format, version 1: one YAML file per agent.

A file holds the card content (name, description, version, skills, modes, capabilities,
security) and a ``runtime:`` binding. The committed JSON Schema (``agent_cards/schema.json``)
is generated from these models; a test fails when the two drift apart.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
SCOPE_PATTERN = r"^[\x21\x23-\x5b\x5d-\x7e]+$"  # an RFC 6749 scope-token
Scope = Annotated[str, Field(pattern=SCOPE_PATTERN)]
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
    scopes: list[Scope] = Field(
        default=[],
        description="scopes a caller needs, beyond the agent's, for a message that names this skill in its "
        "metadata ({'skill': id}); a message naming no skill needs every skill's scopes",
    )


class CapabilitiesSpec(_Strict):
    """What the agent's A2A surface supports."""

    streaming: bool = True
    push_notifications: bool = True


class PythonRuntime(_Strict):
    """An in-process async callable ``(call, emit) -> Reply`` or an a2a ``AgentExecutor`` class."""

    kind: Literal["python"]
    entrypoint: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", description="module:attribute")
    options: dict[str, Any] = {}


ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HTTP_URL = r"^https?://[^\s/]+"


class NoCredentialsSpec(_Strict):
    """Outbound calls carry no credentials."""

    kind: Literal["none"]


class BearerCredentialsSpec(_Strict):
    """A static bearer token, read from the environment variable named ``token_env``."""

    kind: Literal["bearer"]
    token_env: str = Field(pattern=ENV_NAME_PATTERN, description="NAME of the env var holding the token")


class ApiKeyCredentialsSpec(_Strict):
    """A static API key sent in ``header``, read from the environment variable named ``key_env``."""

    kind: Literal["api-key"]
    header: str = Field(default="X-API-Key", pattern=r"^[A-Za-z0-9-]+$")
    key_env: str = Field(pattern=ENV_NAME_PATTERN, description="NAME of the env var holding the key")


class OAuthCredentialsSpec(_Strict):
    """OAuth 2.0 client credentials: tokens from ``token_url``, cached and refreshed before they expire."""

    kind: Literal["oauth2"]
    token_url: str = Field(pattern=_HTTP_URL)
    client_id: str = Field(min_length=1)
    client_secret_env: str = Field(pattern=ENV_NAME_PATTERN, description="NAME of the env var holding the secret")
    scope: str = ""
    audience: str = ""
    auth_method: Literal["client_secret_basic", "client_secret_post"] = "client_secret_basic"


CredentialsSpec = Annotated[
    NoCredentialsSpec | BearerCredentialsSpec | ApiKeyCredentialsSpec | OAuthCredentialsSpec,
    Field(discriminator="kind"),
]


TOOL_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"  # what a chat model's function names allow (and MCP's names)


class McpServerSpec(_Strict):
    """An MCP server: a local program speaking MCP on stdin/stdout, or a Streamable HTTP endpoint.

    Secrets are never in the file: a stdio server gets the environment variables named in ``env``
    (besides the MCP SDK's safe defaults such as PATH and HOME), an HTTP server the ``credentials``.
    """

    name: str = Field(default="", pattern=r"^([a-z][a-z0-9-]{0,62})?$", description="for messages and logs")
    command: list[Annotated[str, Field(min_length=1)]] = Field(
        default=[], description="argv of a stdio server (a list, never a shell string)"
    )
    url: str = Field(default="", pattern=r"^(https?://[^\s/]+\S*)?$", description="a Streamable HTTP endpoint")
    env: list[Annotated[str, Field(pattern=ENV_NAME_PATTERN)]] = Field(
        default=[], description="NAMES of environment variables passed on to a stdio server"
    )
    credentials: CredentialsSpec | None = Field(default=None, description="what an HTTP server is sent")
    cwd: str = Field(
        default="", description="a stdio server's working directory, relative to the agent file; default: its folder"
    )
    start_timeout_s: float = Field(default=20.0, gt=0, description="seconds to start and initialize a session")

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSpec:
        if bool(self.command) == bool(self.url):
            raise ValueError("give command (a stdio server) or url (a Streamable HTTP server), exactly one")
        if self.command and self.credentials is not None:
            raise ValueError("credentials are for an HTTP server; a stdio server gets env variables by name")
        if self.url and (self.env or self.cwd):
            raise ValueError("env and cwd are for a stdio server; an HTTP server gets credentials")
        return self

    @property
    def label(self) -> str:
        """How messages name the server: its name, else its program or its URL's host."""
        if self.name:
            return self.name
        if self.command:
            return self.command[0].rpartition("/")[2]
        return self.url.split("://", 1)[1].split("/", 1)[0].rpartition("@")[2]


class McpToolsSpec(McpServerSpec):
    """An MCP server whose tools a chat model may call: only those in ``tools`` are offered or run."""

    tools: list[Annotated[str, Field(pattern=TOOL_NAME_PATTERN)]] = Field(
        min_length=1, description="allow-list: the server's tools the model is offered"
    )
    timeout_s: float = Field(default=60.0, gt=0, description="seconds one tool call may take")


class FunctionToolSpec(_Strict):
    """A Python function (sync or async) offered to a chat model as a tool, by import string.

    Its name, description and JSON schema come from its signature and docstring unless given here.
    """

    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", description="module:attribute")
    name: str = Field(default="", pattern=r"^([A-Za-z0-9_.-]{1,64})?$")
    description: str = ""
    parameters: dict[str, Any] | None = Field(default=None, description="JSON schema of the arguments")
    timeout_s: float = Field(default=60.0, gt=0, description="seconds one call may take")

    @property
    def tool_name(self) -> str:
        """The name the model sees: ``name``, else the function's own."""
        return self.name or self.function.rpartition(":")[2].rpartition(".")[2]


class EscalationSpec(_Strict):
    """A stronger model that answers when the agent's model refused, broke ``output_schema`` or was unsure."""

    model: str = Field(min_length=1, description="the stronger model, on the same endpoint")
    # ``when``, not ``on``: YAML 1.1 (PyYAML) reads a bare ``on`` key as the boolean true.
    when: list[Literal["refusal", "invalid", "low-confidence"]] = Field(
        default=["refusal", "invalid", "low-confidence"], min_length=1, description="which signs of a poor answer"
    )
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="below this confidence the answer escalates")
    input_price_per_1k: float | None = Field(default=None, ge=0, description="the stronger model's prices")
    output_price_per_1k: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1, description="default: the agent's max_tokens")


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
    mcp_servers: list[McpToolsSpec] = Field(
        default=[], description="MCP servers whose allow-listed tools the model is offered"
    )
    tools: list[FunctionToolSpec] = Field(default=[], description="Python functions the model is offered as tools")
    max_tool_rounds: int = Field(
        default=8, ge=1, le=64, description="model turns with tool calls per task before it must answer"
    )
    max_tokens: int | None = Field(default=None, ge=1, description="the most tokens the model may write per call")
    output_schema: dict[str, Any] | None = Field(
        default=None, description="a JSON Schema every answer must satisfy (else it escalates or fails)"
    )
    escalation: EscalationSpec | None = Field(default=None, description="a stronger model for poor answers")
    retry_after_max_s: float = Field(
        default=30.0, ge=0, description="a 429/503's Retry-After up to this long is waited out, then the call retried"
    )

    @model_validator(mode="after")
    def _unique_tools(self) -> LlmRuntime:
        names = [tool for server in self.mcp_servers for tool in server.tools]
        names += [tool.tool_name for tool in self.tools]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"tool names must be unique across mcp_servers and tools: {twice}")
        handoff_like = [name for name in names if name.startswith("transfer_to_")]
        if handoff_like:
            raise ValueError(f"transfer_to_<agent> names are the handoffs'; rename the tools {handoff_like}")
        return self


SignatureAlgorithm = Literal["ES256", "ES384", "ES512", "EdDSA", "RS256", "PS256"]
TransportName = Literal["JSONRPC", "GRPC", "HTTP+JSON"]


class TrustSpec(_Strict):
    """The trust anchors a peer's cards must verify against (``gateway.cards.build.signing.TrustPolicy``).

    A card's key is looked up by ``kid`` in the pinned JWKS (``jwks`` inline, or ``jwks_file``),
    else fetched from the card's own ``jku`` when its origin is in ``allowed_jku_origins``.
    """

    jwks: dict[str, Any] | None = Field(default=None, description="pinned JWKS (public keys), inline")
    jwks_file: str = Field(default="", description="pinned JWKS in a file, relative to the file that names it")
    allowed_jku_origins: list[Annotated[str, Field(pattern=_HTTP_URL)]] = Field(
        default=[], description="origins (scheme://host[:port]) whose jku key sets may be fetched"
    )
    algorithms: list[SignatureAlgorithm] = Field(default=["ES256", "EdDSA"], min_length=1)
    require_signature: bool = Field(default=True, description="false accepts an unsigned card, never a bad signature")

    @model_validator(mode="after")
    def _has_anchor(self) -> TrustSpec:
        if self.jwks is not None and self.jwks_file:
            raise ValueError("give jwks or jwks_file, not both")
        if self.require_signature and self.jwks is None and not self.jwks_file and not self.allowed_jku_origins:
            raise ValueError("no trust anchor: give jwks, jwks_file or allowed_jku_origins")
        return self


class A2ARuntime(_Strict):
    """A remote agent by card URL (federation); the only runtime whose file may hold a URL.

    Its trust anchors, outbound credentials and transport preference come from ``peer`` (a peer
    of the ``peers`` setting) or are given here; a secret is never in the file, only the name of
    the environment variable that holds it.
    """

    kind: Literal["a2a"]
    card_url: str = Field(pattern=_HTTP_URL)
    peer: str = Field(default="", description="a peer of the peers setting (its trust, credentials, transports)")
    trust: TrustSpec | None = None
    credentials: CredentialsSpec | None = None
    transports: list[TransportName] = Field(
        default=[], description="client preference, e.g. [GRPC, JSONRPC]; default: the order of the peer's card"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="seconds for a unary call or a connection to the peer")

    @model_validator(mode="after")
    def _peer_or_trust(self) -> A2ARuntime:
        if self.peer and (self.trust or self.credentials or self.transports):
            raise ValueError("with peer, trust, credentials and transports come from the peer; drop them here")
        if not self.peer and self.trust is None:
            raise ValueError("a remote agent needs trust anchors: give trust or name a peer")
        return self


class McpRuntime(_Strict):
    """One tool of an MCP server, wrapped as an agent.

    The card's skill comes from the tool's description and input schema unless the file gives skills.
    """

    kind: Literal["mcp"]
    server: McpServerSpec
    tool: str = Field(pattern=TOOL_NAME_PATTERN)
    timeout_s: float = Field(default=300.0, gt=0, description="seconds a tool call may take")


class CommandRuntime(_Strict):
    """A local program as an agent (``adapters.command``): an argv list, never a shell string.

    ``{python}`` in ``argv`` is the gateway's own interpreter (``[{python}, -m, ruff, ...]`` finds a tool
    installed beside the gateway on any machine); ``{input}`` is the path of each input file, with
    ``input: file``. Nothing of the gateway's environment is inherited but the names in ``env``.
    """

    kind: Literal["command"]
    argv: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    input: Literal["stdin", "file"] = Field(
        default="stdin",
        description="stdin: the message on standard input; file: each file sent (or the text) written to a "
        "fresh folder, its path given as {input} in argv",
    )
    input_format: Literal["text", "json"] = Field(
        default="text",
        description="text: the message's text (or its one file); json: {text, files, data, history, task_id, "
        "context_id} as one JSON object",
    )
    input_name: str = Field(
        default="input.txt", pattern=r"^[\w.-]+$", description="file name for the text, with input: file"
    )
    output: Literal["text", "json"] = Field(
        default="text", description="text: stdout is the reply's text; json: stdout is one JSON value (a data artifact)"
    )
    success_exit_codes: list[int] = Field(default=[0], min_length=1, description="exit codes that complete the task")
    timeout_s: float = Field(default=60.0, gt=0, description="seconds before the program is killed and the task fails")
    max_output_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1, description="stdout plus stderr; past it the program is killed, the task fails"
    )
    kill_grace_s: float = Field(default=5.0, ge=0, description="seconds between SIGTERM and SIGKILL")
    cwd: str = Field(default="", description="working directory, relative to the agent file; default: a fresh folder")
    env: list[Annotated[str, Field(pattern=ENV_NAME_PATTERN)]] = Field(
        default=[], description="NAMES of the gateway's environment variables the program gets (nothing else)"
    )
    set_env: dict[Annotated[str, Field(pattern=ENV_NAME_PATTERN)], str] = Field(
        default={}, description="variables set for the program (no secrets: name them in env instead)"
    )

    @model_validator(mode="after")
    def _input_placeholder(self) -> CommandRuntime:
        named = any("{input}" in arg for arg in self.argv)
        if self.input == "file" and not named:
            raise ValueError("with input: file, argv must name {input} where the input file's path goes")
        if self.input == "stdin" and named:
            raise ValueError("{input} is a file path: set input: file to use it")
        return self


FRAMEWORKS = ("langgraph", "openai-agents", "crewai", "adk", "agent-framework")
"""Runtime kinds that host an agent object of an agent framework (``adapters.<framework>``)."""


class FrameworkRuntime(_Strict):
    """An agent object of an agent framework, by import string (``adapters.framework``).

    ``agent`` names the framework's own object (a compiled LangGraph graph, an Agents SDK ``Agent``,
    a ``Crew``...) or a function returning one; its module may sit beside the agent file.
    """

    kind: Literal["langgraph", "openai-agents", "crewai", "adk", "agent-framework"]
    agent: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$", description="module:attribute")
    options: dict[str, Any] = Field(default={}, description="the adapter's options (see its module)")
    input_price_per_1k: float | None = Field(default=None, ge=0, description="default: the llm price setting")
    output_price_per_1k: float | None = Field(default=None, ge=0, description="default: the llm price setting")


class WorkflowLimits(_Strict):
    """Overrides of a run's default limits; each one left out keeps the engine's default."""

    max_steps: int | None = Field(default=None, ge=1, description="steps (child tasks) per run; default 50")
    max_rounds: int | None = Field(default=None, ge=1, description="rounds of a looping pattern; default 10")
    max_hops: int | None = Field(default=None, ge=1, description="handoffs and nested workflow levels; default 8")
    deadline_s: float | None = Field(default=None, gt=0, description="wall-clock seconds per run; default 600")
    max_tokens: int | None = Field(default=None, ge=1, description="token budget from reported usage; default none")
    max_cost: float | None = Field(default=None, gt=0, description="cost budget from reported usage; default none")
    reserve_tokens: int | None = Field(
        default=None, ge=0, description="tokens a step holds of the budget while it runs; default: learnt"
    )
    reserve_cost: float | None = Field(
        default=None, ge=0, description="cost a step holds of the budget while it runs; default: learnt"
    )
    over_budget: Literal["refuse", "trim"] | None = Field(
        default=None, description="a step whose reservation does not fit: refuse (fail the run) or trim (skip it)"
    )
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
    pattern: str = Field(
        description="a pattern registered under the switchboard.patterns entry points (the built-ins: sequential, "
        "concurrent, ...), or a PatternSpec by import string, module:attribute",
    )
    participants: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(min_length=1)
    options: dict[str, Any] = Field(
        default={},
        description="the pattern's options, plus fallbacks: {agent: [alternate, ...]} tried when a step fails",
    )
    limits: WorkflowLimits = WorkflowLimits()


RuntimeSpec = Annotated[
    PythonRuntime | LlmRuntime | A2ARuntime | McpRuntime | CommandRuntime | FrameworkRuntime | WorkflowRuntime,
    Field(discriminator="kind"),
]


DURATION_PATTERN = r"^[1-9][0-9]*(s|m|h|d)$"
CLOCK_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
TaskStateName = Literal["completed", "failed", "canceled", "rejected", "input-required"]


class _TriggerBase(_Strict):
    """What every trigger declares: its name, who its runs belong to, and the skill they name."""

    name: str = Field(pattern=NAME_PATTERN, description="unique among the agent's triggers; part of its URL")
    owner: str = Field(
        default="",
        max_length=200,
        description="the owner of the runs it starts (default: anonymous without auth, 'trigger:<agent>/<name>' with)",
    )
    scopes: list[Scope] = Field(default=[], description="scopes its runs act with (checked as a caller's would be)")
    skill: str = Field(default="", description="the skill id its messages name in metadata.skill")


class WebhookTriggerSpec(_TriggerBase):
    """An HTTP webhook at ``/triggers/<agent>/<name>``, signed as Standard Webhooks sign (HMAC-SHA256).

    Each request carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
    ``webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``; a JSON body arrives
    as a data part, any other as text. An id seen before answers with the run it started.
    """

    kind: Literal["webhook"]
    secret_env: str = Field(pattern=ENV_NAME_PATTERN, description="NAME of the env var holding the secret (whsec_...)")
    tolerance_s: float = Field(default=300.0, gt=0, le=86400, description="how far a timestamp may be from now")


class NatsTriggerSpec(_TriggerBase):
    """A NATS JetStream subject, read by a durable consumer (server: the nats_url setting).

    A message is acknowledged once its run is recorded; one that is not valid input (not JSON, or
    refused by the agent) is dead-lettered with its reason and not delivered again.
    """

    kind: Literal["nats"]
    stream: str = Field(pattern=r"^[A-Za-z0-9_-]+$", description="the stream (created for the subject if missing)")
    subject: str = Field(pattern=r"^[^\s]+$")
    durable: str = Field(default="", pattern=r"^[A-Za-z0-9_-]*$", description="default: sb-<agent>-<name>")
    max_in_flight: int = Field(default=16, ge=1, le=1024, description="runs started and not finished, at most")
    max_deliver: int = Field(default=5, ge=1, description="deliveries of a message that keeps failing, then DLQ")
    ack_wait_s: float = Field(default=30.0, gt=0, description="seconds before an unacknowledged message is resent")
    dead_letter_subject: str = Field(default="", description="also publish dead letters here (with a reason header)")


class ScheduleTriggerSpec(_TriggerBase):
    """A schedule, in UTC: ``every: 15m`` (slots at multiples of it since the epoch) or ``at: "02:30"`` daily.

    Each slot starts one run, whichever replica or restart sees it first; a slot missed while the
    gateway was down runs once when it starts again (only the latest one).
    """

    kind: Literal["schedule"]
    every: str = Field(default="", pattern=rf"^$|{DURATION_PATTERN}", description="<n>s, <n>m, <n>h or <n>d")
    at: str = Field(default="", pattern=rf"^$|{CLOCK_PATTERN}", description="HH:MM, every day (UTC)")
    input: str | dict[str, Any] = Field(default="", description="the message: text, or an object sent as data")

    @model_validator(mode="after")
    def _one_rule(self) -> ScheduleTriggerSpec:
        if bool(self.every) == bool(self.at):
            raise ValueError("give exactly one of every or at")
        return self


class PushTriggerSpec(_TriggerBase):
    """A2A push notifications from a peer's task, received at ``/triggers/<agent>/<name>``.

    The peer's push config carries the token (``X-A2A-Notification-Token``); when the pushed task
    reaches one of ``states`` a run starts with its status and artifacts as data, once per task.
    """

    kind: Literal["push"]
    token_env: str = Field(pattern=ENV_NAME_PATTERN, description="NAME of the env var holding the expected token")
    states: list[TaskStateName] = Field(default=["completed"], min_length=1)


TriggerSpec = Annotated[
    WebhookTriggerSpec | NatsTriggerSpec | ScheduleTriggerSpec | PushTriggerSpec, Field(discriminator="kind")
]


class CacheSpec(_Strict):
    """Completed results kept and answered again for the same request (opt-in)."""

    ttl_s: float = Field(gt=0, description="seconds a result is answered from the cache")
    max_entries: int = Field(
        default=1000, ge=1, le=1_000_000, description="results kept, least recently used first out"
    )
    shared: bool = Field(
        default=False, description="true: one caller's result may answer another's (same rights); only if safe"
    )


class AdmissionSpec(_Strict):
    """Concurrency caps: over them a caller is told to retry later (or a workflow takes its fallback)."""

    max_concurrent: int | None = Field(default=None, ge=1, description="runs of this agent at once")
    max_queued: int = Field(default=0, ge=0, description="runs waiting for a slot beyond max_concurrent")
    per_caller_concurrent: int | None = Field(default=None, ge=1, description="runs of one caller at once")
    queue_timeout_s: float = Field(default=5.0, gt=0, description="how long a queued run waits for a slot")
    retry_after_s: float = Field(default=1.0, gt=0, description="the retry-after hint given to a refused caller")


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
    skills: list[SkillSpec] = Field(
        default=[], description="at least one; an mcp agent without any gets one from its tool's description and schema"
    )
    security: Literal["default", "none"] = Field(
        default="default", description="'none' publishes the agent without authentication (conformance agents)"
    )
    scopes: list[Scope] = Field(
        default=[], description="scopes a caller's token or API key needs for any call to this agent"
    )
    enabled: bool = True
    triggers: list[TriggerSpec] = Field(default=[], description="what else may start this agent: webhook, nats, ...")
    cache: CacheSpec | None = None
    admission: AdmissionSpec | None = None
    runtime: RuntimeSpec
    _file: Path | None = PrivateAttr(default=None)

    @property
    def file(self) -> Path | None:
        """The agent file this spec was read from (None for a spec built in code or imported from a peer)."""
        return self._file

    @property
    def where(self) -> str:
        """What a load error names this agent by: its file's name, else (built in code) the agent's name."""
        return self._file.name if self._file is not None else self.name

    def read_from(self, path: Path) -> AgentSpec:
        """This spec, remembering ``path`` as its file (modules beside it are importable by its runtime)."""
        self._file = path
        return self

    @field_validator("description", "provider", "version")
    @classmethod
    def _no_urls(cls, value: str) -> str:
        # URLs come from the public base URL setting, never from a local agent's file.
        if _URL_RE.search(value):
            raise ValueError("URLs do not belong in an agent file; they come from the public URL setting")
        return value

    @model_validator(mode="after")
    def _has_skills(self) -> AgentSpec:
        if not self.skills and self.runtime.kind != "mcp":
            raise ValueError("skills: give at least one skill")
        return self

    @model_validator(mode="after")
    def _unique_triggers(self) -> AgentSpec:
        names = [t.name for t in self.triggers]
        if len(names) != len(set(names)):
            raise ValueError(f"trigger names must be unique: {names}")
        return self

    @model_validator(mode="after")
    def _scopes_need_security(self) -> AgentSpec:
        if self.security == "none" and (self.scopes or any(s.scopes for s in self.skills)):
            raise ValueError("an agent with security: none has no callers to check scopes of; drop its scopes")
        return self


class PeerSpec(_Strict):
    """A partner gateway: where it is, which keys its cards are signed with, how to authenticate to it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=NAME_PATTERN, description="this gateway's name for the peer")
    base_url: str = Field(pattern=_HTTP_URL, description="the peer gateway's public URL")
    trust: TrustSpec
    credentials: CredentialsSpec = NoCredentialsSpec(kind="none")
    import_: Literal["all"] | list[Annotated[str, Field(min_length=1)]] = Field(
        default=[],
        alias="import",
        description="'all' agents of the peer's api-catalog, or these names; each is hosted here as <prefix><name>",
    )
    prefix: str | None = Field(default=None, pattern=r"^[a-z0-9-]*$", description="default: '<name>-'")
    transports: list[TransportName] = Field(
        default=[], description="client preference, e.g. [GRPC, JSONRPC]; default: the order of the peer's cards"
    )
    timeout_s: float = Field(default=30.0, gt=0, description="seconds for a unary call or a connection to the peer")
    scopes: list[Scope] = Field(
        default=[],
        description="scopes a caller here needs for any call to an agent imported from this peer (as an agent "
        "file's scopes); an agent file for one of the peer's agents sets its own instead",
    )

    @property
    def local_prefix(self) -> str:
        """What imported agents' names start with here."""
        return f"{self.name}-" if self.prefix is None else self.prefix


class PeersFile(_Strict):
    """The ``peers`` setting's file (YAML or JSON), version 1."""

    format: Literal[1] = Field(description="version of this file format")
    peers: list[PeerSpec] = []

    @model_validator(mode="after")
    def _unique(self) -> PeersFile:
        names = [peer.name for peer in self.peers]
        if len(names) != len(set(names)):
            raise ValueError(f"peer names must be unique: {names}")
        return self


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the agent file format (``gateway.orchestration.file_schema`` adds the patterns' options)."""
    schema = AgentSpec.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Switchboard agent file, format 1"
    return schema
