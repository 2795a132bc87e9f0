"""What a lab laptop is: the spec it is built from, the record the lab keeps of it
(``lab.json``, see ``lab.lab.Lab``), and the checks on a spec."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from lab.errors import InvalidLabInput

OsFamily = Literal["linux", "windows"]
DEFAULT_DISK_BYTES = 2 * 1024**3
SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


@dataclass(frozen=True)
class LaptopSpec:
    """What to build: the identity of one lab laptop."""

    serial: str
    os_family: OsFamily = "linux"
    vendor: str = "Dell"
    model: str = "Latitude 5440"
    disk_bytes: int = DEFAULT_DISK_BYTES
    name: str | None = None
    smbios_uuid: str | None = None
    macs: list[str] | None = None
    # The installed Windows' local admin password (the client configuration's); random if
    # not given. Never printed by the lab.
    winrm_password: str | None = None


@dataclass
class LabLaptop:
    """One running lab laptop and everything a client needs to reach it."""

    name: str
    serial: str
    smbios_uuid: str
    macs: list[str]
    vendor: str
    model: str
    os_family: OsFamily
    dir: Path
    pe_root: Path
    os_root: Path
    disk_path: Path
    disk_bytes: int
    ssh_port: int
    sshd_port: int
    ssh_user: str
    client_key_path: Path
    known_hosts_path: Path
    host_key_fingerprint: str
    host: str = "127.0.0.1"
    disk_device: str = "nvme0n1"
    # "pe" = booted into the provisioning environment; "os" = rebooted into the image.
    boot: Literal["pe", "os"] = "pe"
    winrm_port: int | None = None
    winrm_http_port: int | None = None
    winrm_ca_path: Path | None = None
    winrm_username: str | None = None
    winrm_password: str | None = None
    ifnames: list[str] = field(default_factory=list)
    # Disk mtime at the last boot into the OS: a later write means a re-image.
    os_image_mtime_ns: int | None = None

    @property
    def winrm_endpoint(self) -> str | None:
        """HTTPS WS-Management endpoint (validate it against ``winrm_ca_path``)."""
        if self.winrm_port is None:
            return None
        return f"https://127.0.0.1:{self.winrm_port}/wsman"

    @property
    def winrm_http_endpoint(self) -> str | None:
        """Plain-HTTP endpoint: NTLM with message encryption only."""
        if self.winrm_http_port is None:
            return None
        return f"http://127.0.0.1:{self.winrm_http_port}/wsman"

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, Path):
                out[key] = str(value)
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabLaptop:
        paths = {f.name for f in fields(cls) if "Path" in str(f.type)}
        kwargs: dict[str, Any] = {
            k: (Path(v) if k in paths and v is not None else v)
            for k, v in data.items()
            if k in {f.name for f in fields(cls)}
        }
        return cls(**kwargs)


def name_for(spec: LaptopSpec) -> str:
    return spec.name or spec.serial.lower()


def validate(spec: LaptopSpec) -> None:
    """Raises InvalidLabInput."""
    if not SERIAL.fullmatch(spec.serial):
        raise InvalidLabInput(f"serial {spec.serial!r}: letters, digits, '.', '_', '-' only")
    if spec.name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", spec.name):
        raise InvalidLabInput(f"name {spec.name!r}: lower-case letters, digits, '.', '_', '-'")
    if spec.os_family not in ("linux", "windows"):
        raise InvalidLabInput(f"os_family must be linux or windows, not {spec.os_family!r}")
    if spec.disk_bytes < 1024 * 1024 or spec.disk_bytes % 512:
        raise InvalidLabInput("disk size must be at least 1 MiB and a multiple of 512 bytes")
    for text in (spec.vendor, spec.model):
        if not text or "\n" in text:
            raise InvalidLabInput("vendor and model must be one non-empty line")
    if spec.winrm_password is not None and (
        not spec.winrm_password or any(c in spec.winrm_password for c in ":\n\r")
    ):
        raise InvalidLabInput("the WinRM password must be non-empty, without ':' or newlines")
    for mac in spec.macs or []:
        if not re.fullmatch(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}", mac):
            raise InvalidLabInput(f"bad MAC address {mac!r}")
