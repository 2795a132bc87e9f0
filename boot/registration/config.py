"""Settings of the registration side, read from ``MASTERLINE_BOOT_*`` variables."""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BootSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MASTERLINE_BOOT_", extra="ignore")

    rate_per_address: str = Field(
        default="30/minute",
        description="Registrations (and failed authentications) one source address may "
        "make; `limits` notation (N/second|minute|hour).",
    )
    rate_per_credential: str = Field(
        default="600/minute",
        description="Registrations per enrollment credential: a bench of 64 laptops "
        "waiting to be scanned retries every 15 s, 256 a minute.",
    )
    rate_heartbeat_per_address: str = Field(default="120/minute")
    rate_limit_storage: str = Field(
        default="memory://",
        description="Where the counters live (`limits` storage URI). memory:// counts per "
        "API process: with N uvicorn workers a client may get N times the rate.",
    )
    agent_token_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    register_max_bytes: int = Field(default=256 * 1024, ge=4096)
    wait_retry_seconds: int = Field(default=15, ge=1, le=3600)
    default_control: Literal["registered", "static"] = Field(
        default="registered",
        description="How the pipeline reaches a laptop whose bench slot is not wired: "
        "`registered` (its PE's registration) or `static` (it must be wired, "
        "PUT /runs/endpoints, else its run fails).",
    )
    ca_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the API's TLS certificate (DER), passed to PEs as "
        "`masterline.ca` so the agent pins it.",
    )


@lru_cache(maxsize=1)
def get_boot_settings() -> BootSettings:
    return BootSettings()
