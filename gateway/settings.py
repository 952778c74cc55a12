"""Process settings: read once from env (``SWITCHBOARD_*``) and the CLI, then passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    sign_cards: bool = True
    signing_alg: Literal["ES256", "EdDSA"] = "ES256"
    signing_keys: str = Field(default="", description="PEM or JWK text of the signing key(s); default: generated")
    signing_key_files: list[Path] = []

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
