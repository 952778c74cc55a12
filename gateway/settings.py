"""Process settings: read once from env (``SWITCHBOARD_*``) and the CLI, then passed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MCP_TOOLS = ("security-reviewer", "complexity-reviewer", "style-reviewer", "review-lead", "kind:workflow")
"""The curated default MCP tool list (assistants degrade past ~20 tools); list_agents and the run tools
are always there, and start_run reaches every agent."""


ASYMMETRIC_JWT_ALGS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "Ed25519"}
)
"""The JWS algorithms a caller's token may use: public-key ones only, never HS* or none."""


class IssuerSettings(BaseModel):
    """One OAuth 2.0 authorization server whose bearer JWTs callers may present."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(pattern=r"^https?://", description="the exact `iss` of its tokens (an http(s) URL)")
    audience: list[str] = Field(min_length=1, description="accepted `aud` values; a token must carry one of them")
    jwks_uri: str = Field(default="", description="where its public keys are fetched (cached, refetched on a new kid)")
    jwks: dict[str, Any] | None = Field(default=None, description="its public keys inline, instead of jwks_uri")
    algorithms: list[str] = Field(default=["RS256", "ES256", "EdDSA"], min_length=1)
    scheme: str = Field(default="", description="security scheme name on cards; default oauth2, oauth2-2, ...")
    token_url: str = Field(default="", description="advertised on cards as the OAuth2 client-credentials flow")
    leeway_s: int = Field(default=30, ge=0, le=300, description="clock skew allowed on exp and nbf")

    @field_validator("audience", mode="before")
    @classmethod
    def _one_or_many(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_JWT_ALGS]
        if refused:
            raise ValueError(f"{', '.join(refused)} not accepted: use one of {', '.join(sorted(ASYMMETRIC_JWT_ALGS))}")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> IssuerSettings:
        if bool(self.jwks_uri) == (self.jwks is not None):
            raise ValueError(f"issuer {self.issuer}: give exactly one of jwks_uri and jwks")
        return self


def bundled_agents_dir() -> Path:
    """Where the bundled ``agent_cards/`` live: inside the wheel, or beside the package in a checkout."""
    here = Path(__file__).resolve().parent
    packaged = here / "bundled_cards"
    return packaged if packaged.is_dir() else here.parent / "agent_cards"


class Settings(BaseSettings):
    """Everything the process needs to know; nothing else reads the environment."""

    model_config = SettingsConfigDict(env_prefix="SWITCHBOARD_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    data_dir: Path = Path(".switchboard")
    agents: Path = Field(default_factory=bundled_agents_dir)
    public_url: str = ""
    log_level: str = "info"
    database_url: str = ""
    max_body_bytes: int = Field(default=4 * 1024 * 1024, gt=0)
    max_message_parts: int = Field(
        default=100, gt=0, description="parts (files count one each) a message may carry; more: invalid params"
    )
    list_tasks_page_bytes: int = Field(
        default=4 * 1024 * 1024, gt=0, description="a ListTasks page stops adding tasks past this many stored bytes"
    )
    header_timeout_s: float = Field(default=10.0, gt=0, description="a request's headers must arrive within this")
    body_timeout_s: float = Field(
        default=60.0, gt=0, description="a request's body must arrive within this of its headers (a total, not a gap)"
    )
    keep_alive_timeout_s: float = Field(default=5.0, gt=0, description="an idle kept-alive connection is closed after")
    interrupted_task_timeout: float = Field(default=300.0, gt=0)
    allow_private_push_urls: bool = Field(
        default=False, description="let push URLs reach loopback/private/link-local addresses (tests, closed networks)"
    )
    # -- triggers (gateway/triggers/) --
    nats_url: str = Field(default="nats://127.0.0.1:4222", description="the NATS server of nats triggers")
    trigger_retention_days: float = Field(
        default=7.0, ge=1.0, description="how long an event id is remembered (a repeat within it starts no run)"
    )
    # -- end triggers --
    # -- push delivery (gateway/push/) --
    push_max_attempts: int = Field(default=8, ge=1, le=100, description="tries per notification, then it is dropped")
    push_retry_base_s: float = Field(default=1.0, gt=0, description="backoff after the first failed try; doubles")
    push_retry_max_s: float = Field(default=300.0, gt=0, description="longest backoff between two tries")
    push_retry_after_max_s: float = Field(
        default=3600.0, ge=0, description="longest wait a receiver's Retry-After is honoured for"
    )
    push_timeout_s: float = Field(default=10.0, gt=0, description="connect and read timeout of one try")
    push_concurrency: int = Field(default=16, ge=1, description="notifications in flight at once (one per task)")
    push_poll_s: float = Field(default=1.0, gt=0, description="how often the outbox is read with nothing queued here")
    push_ca_file: Path | None = Field(
        default=None,
        description="CA certificates (PEM) receivers' TLS certificates are checked against; default certifi",
    )
    # -- end push delivery --
    takeover_after_s: float = Field(
        default=900.0,
        gt=0,
        description=(
            "on a shared database, a task written before tasks recorded their process, unchanged this long, "
            "is taken as crashed at start-up (others: when the process that last wrote them is gone)"
        ),
    )
    root_agent: str = Field(default="triage", description="the agent whose card is the gateway's root card")
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    grpc_public_url: str = Field(default="", description="host:port gRPC clients dial; default: base URL host")
    grpc_default_agent: str = Field(default="", description="agent for gRPC calls that name no tenant")
    card_interfaces: Annotated[list[Literal["JSONRPC", "HTTP+JSON", "GRPC"]], NoDecode] = Field(
        default=["JSONRPC", "HTTP+JSON", "GRPC"],
        min_length=1,
        description="the bindings each card lists, in this order (all are served); comma-separated. "
        "'JSONRPC,HTTP+JSON' keeps every interface on the card's own origin, as Google ADK's RemoteA2aAgent requires",
    )
    sign_cards: bool = True
    signing_alg: Literal["ES256", "EdDSA"] = "ES256"
    signing_keys: str = Field(default="", description="PEM or JWK text of the signing key(s); default: generated")
    signing_key_files: list[Path] = []
    # -- federation (gateway/federation/, adapters/a2a_remote.py) --
    peers: Path | None = Field(default=None, description="peers file (YAML/JSON): partner gateways and what to import")
    federation_max_hops: int = Field(default=8, ge=1, description="gateway hops a request may take, then refused")
    gateway_id: str = Field(default="", description="this gateway's id on hop paths; default: from its signing key")
    peer_card_refresh_s: float = Field(default=30.0, gt=0, description="how often stale remote cards are re-checked")
    peer_discovery_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="start-up deadline for importing peers' agents (all peers at once); an agent whose card has not "
        "verified by then is hosted out of service and comes in when it verifies",
    )
    # -- end federation --
    # -- the llm runtime: any OpenAI-compatible chat-completions endpoint (adapters/llm.py) --
    llm_base_url: str = Field(default="", description="API base of the chat model, the part before /chat/completions")
    llm_model: str = Field(default="", description="model name; an agent file's runtime.model overrides it")
    llm_api_key: SecretStr = Field(default=SecretStr(""), description="sent as a Bearer token; never logged")
    llm_timeout: float = Field(default=120.0, gt=0, description="seconds to wait for the model's next streamed chunk")
    llm_input_price_per_1k: float = Field(default=0.0, ge=0, description="cost of 1000 prompt tokens, for budgets")
    llm_output_price_per_1k: float = Field(default=0.0, ge=0, description="cost of 1000 completion tokens")
    # -- end llm runtime --
    # -- the MCP binding (gateway/bindings/mcp_*.py) --
    mcp_tools: Annotated[list[str], NoDecode] = Field(
        default=list(DEFAULT_MCP_TOOLS),
        description="agents exposed as MCP tools: names, '*' (all) or 'kind:<runtime kind>'; comma-separated",
    )
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default=[], description="Host values /mcp accepts beyond loopback and the public URL's; '*' turns the check off"
    )
    mcp_extra_modules: Annotated[list[str], NoDecode] = Field(
        default=[], description="'module[:attr]' callables register(server) adding MCP tools/resources/prompts"
    )
    mcp_state_key: SecretStr = Field(
        default=SecretStr(""), description="secret (32+ bytes) sealing MCP requestState; share it across replicas"
    )
    mcp_session_idle_s: float = Field(
        default=300.0, gt=0, description="a 2025-11-25 MCP session with no request or stream open this long is closed"
    )
    mcp_max_sessions: int = Field(default=4096, gt=0, description="open 2025-11-25 MCP sessions, all callers together")
    mcp_max_sessions_per_caller: int = Field(
        default=32, gt=0, description="open 2025-11-25 MCP sessions one caller may hold; past it, 429"
    )
    mcp_max_subscriptions_per_caller: int = Field(
        default=256, gt=0, description="resource subscriptions (and listen streams) one caller may hold at once"
    )
    # -- end MCP binding --
    # -- inbound auth (gateway/auth*.py); none configured: every caller is anonymous (local dev) --
    auth_api_keys: Annotated[list[str], NoDecode] = Field(
        default=[],
        description="API keys as 'name:sha256-hex-of-key[:scope,scope]', whitespace-separated (or a JSON array)",
    )
    auth_api_keys_file: Path | None = Field(default=None, description="a file of such lines, one a line; # comments")
    auth_issuers: list[IssuerSettings] = Field(default=[], description="OAuth 2.0 issuers of bearer JWTs (JSON)")
    auth_jwks_ttl_s: float = Field(default=300.0, gt=0, description="seconds a fetched JWKS is used before refetching")
    auth_jwks_refetch_s: float = Field(
        default=10.0, ge=0, description="least seconds between two JWKS fetches caused by unknown key ids"
    )
    insecure: bool = Field(default=False, description="allow serving a non-loopback address with no auth configured")
    # -- end inbound auth --
    # -- operating (gateway/telemetry/): metrics, access log, audit; traces are configured by OTEL_* --
    metrics: bool = Field(default=True, description="count requests, runs, relays, store calls; serve /metrics")
    metrics_scope: str = Field(
        default="metrics:read", description="scope a caller needs for /metrics on the HTTP port when auth is on"
    )
    metrics_listen: str = Field(
        default="", description="host:port of a listener serving only /metrics, no auth (then not on the HTTP port)"
    )
    access_log: bool = Field(default=True, description="one INFO line per request (logger switchboard.access)")
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="log lines as JSON or readable text; auto: text on a terminal, JSON otherwise"
    )
    audit: bool = Field(default=True, description="keep the audit trail (table audit): calls, refusals, admin actions")
    audit_required: bool = Field(
        default=False, description="a call whose audit row cannot be written is answered 503 instead of succeeding"
    )
    audit_retention_days: float = Field(
        default=90.0, ge=0, description="audit rows older than this are deleted; 0 keeps all"
    )
    # -- end operating --
    # -- the web dashboard (gateway/ui/) --
    ui: bool = Field(default=True, description="serve the web dashboard at /ui (and redirect / there)")
    ui_operator_scope: str = Field(
        default="switchboard:operator",
        description="scope whose holder sees every caller's tasks, runs and audit rows in the dashboard",
    )
    # -- end web dashboard --

    @field_validator("mcp_tools", "mcp_allowed_hosts", "mcp_extra_modules", "card_interfaces", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Env values are comma-separated (or a JSON array).
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        return value

    @field_validator("auth_api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        # Scopes are comma-separated inside an entry, so entries are separated by whitespace.
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else text.split()
        return value

    @field_validator("public_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        """The URL clients reach the gateway at; cards are built from it, never from agent files."""
        if self.public_url:
            return self.public_url
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def store_url(self) -> str:
        """The task database: the given DSN, or SQLite in the data dir."""
        return self.database_url or f"sqlite:///{self.data_dir / 'switchboard.db'}"
