"""Process settings: read once from env (``SWITCHBOARD_*``) and the CLI, then passed down."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_MCP_TOOLS = ("security-reviewer", "complexity-reviewer", "style-reviewer", "review-lead", "kind:workflow")
"""The curated default MCP tool list (assistants degrade past ~20 tools); list_agents and the run tools
are always there, and start_run reaches every agent."""


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
    interrupted_task_timeout: float = Field(default=300.0, gt=0)
    allow_private_push_urls: bool = False
    takeover_after_s: float = Field(
        default=900.0,
        gt=0,
        description="on a shared database, a task unchanged this long is taken as crashed at start-up",
    )
    root_agent: str = Field(default="triage", description="the agent whose card is the gateway's root card")
    grpc_port: int = Field(default=50051, ge=0, le=65535)
    grpc_public_url: str = Field(default="", description="host:port gRPC clients dial; default: base URL host")
    grpc_default_agent: str = Field(default="", description="agent for gRPC calls that name no tenant")
    sign_cards: bool = True
    signing_alg: Literal["ES256", "EdDSA"] = "ES256"
    signing_keys: str = Field(default="", description="PEM or JWK text of the signing key(s); default: generated")
    signing_key_files: list[Path] = []
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
    # -- end MCP binding --

    @field_validator("mcp_tools", "mcp_allowed_hosts", "mcp_extra_modules", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Env values are comma-separated (or a JSON array).
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
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
