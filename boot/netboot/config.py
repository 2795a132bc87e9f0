"""Settings of network boot, read from ``MASTERLINE_NETBOOT_*`` variables."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NetbootSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MASTERLINE_NETBOOT_", extra="ignore")

    api_url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="The API address PEs are given (masterline.api). Unset: the address "
        "the laptop's iPXE fetched its script from, which it can reach.",
    )
    networks: str = Field(
        default="",
        description="Comma-separated networks (CIDR) the netboot routes answer; empty: "
        "any. Set it to the bench networks so that a link leaked elsewhere is useless.",
    )
    ipxe_dir: Path = Field(
        default=Path("/usr/lib/ipxe"),
        description="Debian's iPXE builds (package ipxe): ipxe.efi for UEFI HTTP boot.",
    )
    files_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="Port of the boot-file server (``sendfile``, in the API's process): "
        "the iPXE scripts and UEFI HTTP boot then fetch the PE's files from it, on the "
        "host the laptop reached. Unset: from the API's own routes (slower when a wave "
        "boots at once: docs/benchmarks.md).",
    )
    files_host: str = Field(
        default="127.0.0.1",
        description="Address the boot-file server listens on (``masterline serve`` sets "
        "it to its --host unless this is set).",
    )
    console: str = Field(
        default="console=tty0 console=ttyS0,115200",
        description="Kernel console arguments: the screen, and the serial port VMs log.",
    )

    def allowed(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [ipaddress.ip_network(n.strip()) for n in self.networks.split(",") if n.strip()]


@lru_cache(maxsize=1)
def get_netboot_settings() -> NetbootSettings:
    return NetbootSettings()
