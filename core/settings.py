"""One settings object, read from ``MASTERLINE_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.egress import IPNetwork, parse_networks

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Everything configurable about a Masterline process.

    Server-side processes (API, worker, db commands) read ``database_url``; bench-side
    commands (``masterline scan`` and friends) read only ``api_url`` and ``token``.
    """

    model_config = SettingsConfigDict(env_prefix="MASTERLINE_", extra="ignore")

    data_dir: Path = Field(default=REPO_ROOT / "var", description="Root of local state.")
    database_url: str = Field(
        default="",
        description="SQLAlchemy URL; empty means the embedded SQLite file in data_dir.",
    )
    sqlite_busy_timeout_ms: int = 10_000
    auth_cache_seconds: float = Field(
        default=2.0,
        ge=0,
        description="How long a server process reuses a token it has checked (0: never). "
        "A token revoked through the API stops at once in that process; revoked from "
        "the CLI or another process, within this many seconds.",
    )
    max_json_body: int = Field(
        default=4 * 1024 * 1024,
        ge=1024,
        description="Largest JSON request body accepted (bytes); larger ones get 413 "
        "before they are read. Raw uploads have their own limits.",
    )
    image_store_dir: Path | None = None
    max_image_size: int = Field(
        default=256 * 1024**3, ge=1, description="Largest image (stored bytes) accepted."
    )
    max_concurrent_uploads: int = Field(
        default=4, ge=1, description="Uploads in progress at once, per client company."
    )
    upload_expiry_hours: int = Field(
        default=72, ge=1, description="An upload untouched this long is discarded by gc."
    )
    secret_key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts secrets at rest; generated into data_dir if unset.",
    )
    # Bench side: where the API is and who we are.
    api_url: str = "http://127.0.0.1:8000"
    token: SecretStr | None = None
    # Server.
    host: str = "127.0.0.1"
    port: int = 8000
    playbooks_dir: Path = REPO_ROOT / "playbooks"
    # Web console.
    console_session_hours: float = Field(
        default=12.0, gt=0, le=24 * 30, description="A console sign-in lasts this long."
    )
    console_secure_cookies: bool = Field(
        default=False,
        description="Mark console cookies Secure even when the request arrives over plain "
        "HTTP (behind a TLS-terminating proxy). Always on for HTTPS requests.",
    )
    console_figures_seconds: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="A wave dashboard's figures are kept this long per viewer scope and "
        "filter (one computation for a wall of screens); 0: computed on every request.",
    )
    console_upload_chunk_bytes: int = Field(
        default=32 * 1024 * 1024,
        ge=64 * 1024,
        description="Size of each request of a browser's resumable image upload.",
    )
    # Logistics: teleworkers' personal data is erased this long after their last delivery.
    teleworker_retention_days: int = Field(default=90, ge=0)
    # Help desk: where teleworkers' phones reach the help pages a welcome sheet's QR code
    # links to (``/help/…``); empty: ``api_url``.
    help_public_url: str = ""

    webhook_allow_networks: str = Field(
        default="",
        description="Networks (CIDR, comma-separated) that webhook receivers may be in "
        "although not public: on-premise receivers, e.g. 10.20.0.0/16. Empty: public "
        "addresses only.",
    )

    webhook_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Deadline of a whole webhook call (connect, send, answer), not per read.",
    )
    webhook_max_reply_bytes: int = Field(
        default=64 * 1024, ge=0, description="At most this much of a receiver's reply is read."
    )

    @field_validator("webhook_allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)  # raises ValueError: a clear settings error at start
        return value

    @property
    def webhook_networks(self) -> tuple[IPNetwork, ...]:
        return parse_networks(self.webhook_allow_networks)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'masterline.db'}"

    @property
    def resolved_image_store_dir(self) -> Path:
        return self.image_store_dir or (self.data_dir / "images")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
