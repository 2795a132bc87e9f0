"""Registration API shapes. What a PE sends is validated here, every string and list
bounded; answers never carry a stored secret (a clear secret appears once, in the answer
that created it)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from boot.hardware.schemas import HardwareInventory
from boot.registration.models import BootStatus
from core.values import ModelName, VendorName

Code = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAC = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"
_HOST_KEY = (
    r"^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa)"
    r" [A-Za-z0-9+/]+={0,3}( [^\r\n]{0,200})?$"
)

EXAMPLE_HOST_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHxXm1GgXqTJc1wJmFJ0qTQ9xjv0xgq1LrYkqB7S7fZa root@pe"
)


# Enrollment credentials (admin).
class CredentialCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, examples=["PAR bench B1, wave 3"])
    site_code: str = Code
    bench_code: str | None = Field(
        default=None,
        max_length=32,
        description="Bench the credential belongs to. Its PEs may still register laptops "
        "scanned at any bench of the site; scan-in by registration uses this bench.",
    )
    client_code: str | None = Field(
        default=None,
        max_length=32,
        description="When set, only this client company's laptops may register with it.",
    )
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)
    netboot: bool = Field(
        default=True,
        description="Served to firmware in the bench's iPXE script (kept encrypted at rest "
        "for that). False for a credential typed into a USB stick only: then only its hash "
        "is stored.",
    )


class CredentialRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    prefix: str
    site_id: int
    bench_id: int | None
    client_id: int | None
    netboot: bool
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class CredentialCreated(CredentialRead):
    credential: str = Field(description="Shown once; only its hash is stored for lookups.")


# Site settings and delivery sites (admin).
class SiteSettingsUpdate(BaseModel):
    registration_is_scan_in: bool | None = Field(
        default=None,
        description="A registering laptop is scanned in at the credential's bench, with "
        "the scan-in rules (UNEXPECTED included).",
    )
    worker_key_path: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="Private key the site's worker uses; its `.pub` is read now.",
    )
    worker_public_keys: list[str] | None = Field(
        default=None,
        max_length=16,
        description="Public key lines, when the worker runs on another host than the API.",
    )
    heartbeat_seconds: int | None = Field(default=None, ge=2, le=600)
    silence_seconds: int | None = Field(default=None, ge=5, le=3600)
    allow_address_mismatch: bool | None = Field(
        default=None,
        description="Accept a PE whose declared address differs from the one the server "
        "sees (only behind NAT or a proxy; the worker then uses the declared one).",
    )


class SiteSettingsRead(BaseModel):
    site_code: str
    registration_is_scan_in: bool
    worker_key_path: str | None
    worker_public_keys: list[str]
    heartbeat_seconds: int
    silence_seconds: int
    allow_address_mismatch: bool


class DeliverySiteSet(BaseModel):
    site_code: str = Code


class DeliverySiteRead(BaseModel):
    delivery_id: int
    site_code: str
    assigned_by: str
    assigned_at: datetime


# What a PE sends.
class NetInterface(BaseModel):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._@-]+$")
    mac: str = Field(pattern=_MAC)
    bus: Literal["pci", "usb", "virtual", "other"] = Field(
        default="other",
        description="usb: a dock or a USB adapter, whose MAC moves between laptops.",
    )


class RegisterRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "serial": "5CG1234XYZ",
                    "smbios_uuid": "4c4c4544-0042-3510-8052-b4c04f4e5331",
                    "vendor": "HP",
                    "model": "EliteBook 840 G8",
                    "interfaces": [{"name": "enp0s31f6", "mac": "3c:52:82:0a:1b:2c", "bus": "pci"}],
                    "address": "10.20.0.57",
                    "host_key": EXAMPLE_HOST_KEY,
                    "pe_version": "2026.11.1",
                    "agent_version": "1",
                }
            ]
        }
    )
    serial: str = Field(min_length=1, max_length=64, description="SMBIOS system serial.")
    smbios_uuid: str | None = Field(default=None, max_length=64)
    vendor: VendorName | None = None
    model: ModelName | None = None
    interfaces: list[NetInterface] = Field(default_factory=list, max_length=32)
    address: str = Field(
        min_length=2, max_length=64, description="The PE's own address, as it sees it."
    )
    ssh_port: int = Field(default=22, ge=1, le=65535)
    host_key: str = Field(
        max_length=2000, pattern=_HOST_KEY, description="This boot's SSH host public key."
    )
    inventory: HardwareInventory | None = None
    pe_version: str | None = Field(default=None, max_length=64)
    agent_version: str | None = Field(default=None, max_length=32)


class RegisterGo(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "go",
                    "boot_id": 812,
                    "device_id": 4411,
                    "agent_token": "mla_3q2-7cVv0Yb1nQ…",
                    "token_expires_at": "2026-11-24T08:12:00Z",
                    "authorized_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA… worker@par"],
                    "heartbeat_seconds": 15,
                }
            ]
        }
    )
    status: Literal["go"] = "go"
    boot_id: int
    device_id: int
    agent_token: str = Field(description="This boot's token for /boot/heartbeat; shown once.")
    token_expires_at: datetime
    authorized_keys: list[str] = Field(description="Worker public keys for root's SSH login.")
    heartbeat_seconds: int


class WaitReason(StrEnum):
    NOT_SCANNED = "booted, not scanned"
    UNEXPECTED = "unexpected"
    NO_WORKER_KEY = "no worker key"


class RegisterWait(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "wait",
                    "boot_id": 813,
                    "device_id": 4412,
                    "reason": "booted, not scanned",
                    "message": "5CG1234XYZ booted before it was scanned in: scan it at the bench",
                    "retry_seconds": 15,
                }
            ]
        }
    )
    status: Literal["wait"] = "wait"
    boot_id: int
    device_id: int
    reason: WaitReason
    message: str
    retry_seconds: int


class HeartbeatRequest(BaseModel):
    status: str | None = Field(default=None, max_length=64, examples=["idle"])
    agent_version: str | None = Field(default=None, max_length=32)


class HeartbeatAnswer(BaseModel):
    action: Literal["none", "poweroff", "reboot"]
    heartbeat_seconds: int


# What staff read.
class PeBootRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    device_id: int
    serial: str
    site_id: int
    bench_id: int | None
    status: BootStatus
    wait_reason: str | None
    wait_message: str | None
    peer_address: str
    declared_address: str | None
    ssh_port: int
    host_key_fingerprint: str
    vendor: str | None
    model: str | None
    interfaces: list[NetInterface]
    pe_version: str | None
    alive: bool
    action: str
    created_at: datetime
    registered_at: datetime | None
    last_seen_at: datetime
    token_expires_at: datetime | None
    ended_reason: str | None


class ActionRequest(BaseModel):
    action: Literal["none", "poweroff", "reboot"]


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    at: datetime
    last_at: datetime
    count: int
    credential_id: int | None
    site_id: int | None
    bench_id: int | None
    device_id: int | None
    serial: str | None
    vendor: str | None
    smbios_uuid: str | None
    peer_address: str
    outcome: str
    reason: str
    detail: str
