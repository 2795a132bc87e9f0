"""API shapes of the image catalogue and client configurations. Every string, list and
dict has a limit; secret values are ``SecretStr`` (never printed by a repr or a log) and
appear in no read shape."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from api.kit import Page
from core.values import Int64, ModelName, VendorName
from images.models import ImageFormat, ImageStatus, OsFamily

Sha256 = Annotated[
    str,
    Field(
        min_length=64,
        max_length=64,
        pattern=r"^[0-9a-f]{64}$",
        description="Lower-case hex SHA-256.",
    ),
]
Name = Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")]
Version = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
]
SecretName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_]*$")]
SecretValue = Annotated[SecretStr, Field(min_length=1, max_length=16384)]
ShortText = Annotated[str, Field(min_length=1, max_length=512)]


# Images.
class HardwareModelRef(BaseModel):
    vendor: VendorName = Field(examples=["Dell"])
    model: ModelName = Field(examples=["Latitude 5440"])


class ImageDeclare(BaseModel):
    """Declare an image version before sending its bytes (size and sha256 first, as
    MAAS requires): the server checks what it receives against this."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "win11-corporate",
                    "version": "2026.11.1",
                    "os_family": "windows",
                    "format": "raw+zstd",
                    "size": 9663676416,
                    "sha256": "3f" * 32,
                    "raw_size": 68719476736,
                    "raw_sha256": "9a" * 32,
                    "compatible_models": [{"vendor": "Dell", "model": "Latitude 5440"}],
                    "notes": "November cumulative update; Teams preinstalled.",
                }
            ]
        }
    )
    client_code: str | None = Field(
        default=None, max_length=32, description="Required for admins; implied for dsi."
    )
    name: Name
    version: Version = Field(description="Immutable once published.")
    os_family: OsFamily
    format: ImageFormat = ImageFormat.RAW
    size: Int64 = Field(ge=1, description="Bytes of the file that will be uploaded.")
    sha256: Sha256 = Field(description="SHA-256 of the file that will be uploaded.")
    raw_size: Int64 | None = Field(
        default=None, ge=1, description="raw+zstd only: bytes once decompressed."
    )
    raw_sha256: Sha256 | None = Field(
        default=None, description="raw+zstd only: SHA-256 once decompressed."
    )
    compatible_models: list[HardwareModelRef] = Field(
        default_factory=list, max_length=200, description="Empty: every hardware model."
    )
    notes: str | None = Field(default=None, max_length=10000, description="Release notes.")

    @model_validator(mode="after")
    def _raw_matches_format(self) -> ImageDeclare:
        compressed = self.format is ImageFormat.RAW_ZSTD
        if compressed and (self.raw_size is None or self.raw_sha256 is None):
            raise ValueError("raw+zstd needs raw_size and raw_sha256 (of the decompressed bytes)")
        if not compressed and (
            (self.raw_size not in (None, self.size)) or (self.raw_sha256 not in (None, self.sha256))
        ):
            raise ValueError(f"{self.format.value}: raw_size/raw_sha256 must equal size/sha256")
        return self


class ImageRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    client_id: int
    client_code: str
    name: str
    version: str
    os_family: OsFamily
    format: ImageFormat
    size: int = Field(description="Bytes of the stored file.")
    sha256: str = Field(description="SHA-256 of the stored file (its content address).")
    raw_size: int
    raw_sha256: str
    status: ImageStatus
    compatible_models: list[HardwareModelRef]
    uploaded_by: str
    notes: str | None
    created_at: datetime
    published_at: datetime | None
    retired_at: datetime | None
    purged_at: datetime | None
    upload_offset: int = Field(description="Bytes the server holds of a resumable upload.")
    upload_url: str | None = Field(
        default=None, description="The resumable (tus) upload in progress, if any."
    )


class ImagePage(Page[ImageRead]):
    pass


class ChunkManifestRead(BaseModel):
    """The per-chunk hashes of an image's stored file, which every relay of a wave
    checks each chunk against before writing and forwarding it."""

    image_id: int
    chunk_size: int = Field(description="Bytes per chunk; the last chunk may be shorter.")
    size: int = Field(description="Bytes of the stored file.")
    sha256: str = Field(description="SHA-256 of the whole stored file.")
    chunks: list[str] = Field(description="SHA-256 of each chunk, in order.")


class GcReport(BaseModel):
    reclaimed_images: list[int] = Field(description="Retired versions whose file was freed.")
    kept_images: list[int] = Field(description="Retired, but a run still needs them.")
    discarded_uploads: list[int] = Field(description="Abandoned uploads (images deleted).")
    files_removed: int = Field(description="Stored files no catalogue row needs any more.")
    reclaimed_bytes: int
    temp_files_removed: int = Field(description="Stale partial files of dead uploads.")
    repaired_images: list[int] = Field(
        default_factory=list, description="Left 'verifying' by a crash; settled again."
    )


# Client configurations.
class VpnKind(StrEnum):
    WIREGUARD = "wireguard"
    OPENVPN = "openvpn"
    IKEV2 = "ikev2"
    VENDOR = "vendor"


class DeviceSecretMode(StrEnum):
    GENERATE = "generate"
    """Masterline generates one per device (WireGuard: an X25519 key pair)."""
    IMPORT = "import"
    """The DSI imports one per device (``PUT /clients/{code}/device-secrets``)."""
    NONE = "none"


class StoreRef(BaseModel):
    """A file in this client's image store: an image id, or the sha256 of an available
    image of this client."""

    kind: Literal["store"] = "store"
    image_id: Int64 | None = Field(default=None, ge=1)
    sha256: Sha256 | None = None

    @model_validator(mode="after")
    def _one(self) -> StoreRef:
        if (self.image_id is None) == (self.sha256 is None):
            raise ValueError("give exactly one of image_id and sha256")
        return self


class PackageRef(BaseModel):
    kind: Literal["package"] = "package"
    manager: Literal["winget", "apt", "dnf", "choco"]
    id: str = Field(min_length=1, max_length=200, examples=["Microsoft.Teams"])


class VerifyPackage(BaseModel):
    kind: Literal["package"] = "package"
    name: str = Field(min_length=1, max_length=200)


class VerifyFile(BaseModel):
    kind: Literal["file"] = "file"
    path: str = Field(min_length=1, max_length=1024)


SettingValue = Annotated[str, Field(max_length=4096)] | Int64 | bool

VPN_SECRET_NAMES: dict[VpnKind, tuple[str, ...]] = {
    VpnKind.WIREGUARD: ("private_key", "preshared_key"),
    VpnKind.OPENVPN: ("cert", "key", "username", "password", "tls_crypt"),
    VpnKind.IKEV2: ("eap_password", "psk"),
    VpnKind.VENDOR: ("profile",),
}
"""The secret names each VPN kind takes (shared in ``vpn.secrets`` or per device)."""
ALL_SECRET_NAMES = frozenset(n for names in VPN_SECRET_NAMES.values() for n in names)
GENERATED_SECRET = "private_key"  # noqa: S105 (a name, not a secret)
"""The per-device secret Masterline generates for WireGuard (an X25519 private key)."""


class AppConfig(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    source: StoreRef | PackageRef = Field(discriminator="kind")
    silent_args: list[Annotated[str, Field(max_length=512)]] = Field(
        default_factory=list, max_length=32
    )
    verify: VerifyPackage | VerifyFile = Field(discriminator="kind")


class VpnConfig(BaseModel):
    kind: VpnKind
    name: str = Field(
        default="masterline",
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$",
        description="Name of the VPN connection/profile on the laptop.",
    )
    server: str = Field(min_length=1, max_length=253, examples=["vpn.acme.example"])
    port: int | None = Field(default=None, ge=1, le=65535)
    settings: dict[Annotated[str, Field(max_length=64)], SettingValue] = Field(
        default_factory=dict,
        max_length=50,
        description="Kind-specific, not secret (e.g. wireguard: server_public_key, "
        "allowed_ips, dns, address; vendor: profile_path).",
    )
    client_app: AppConfig | None = Field(
        default=None,
        description="The VPN client to install (required for 'vendor': its installer, "
        "from the image store or a package).",
    )
    device_secret: DeviceSecretMode = Field(
        default=DeviceSecretMode.NONE,
        description="Per-device secret: generated (wireguard private_key), imported, or none.",
    )
    secrets: dict[SecretName, SecretValue] | None = Field(
        default=None,
        max_length=20,
        description="WRITE-ONLY shared secrets, stored encrypted, never returned. Names per "
        "kind: wireguard private_key, preshared_key; openvpn cert, key, username, password, "
        "tls_crypt; ikev2 eap_password, psk; vendor profile. Omit (null) to keep the "
        "previous version's; {} to clear them.",
    )

    @model_validator(mode="after")
    def _kind_rules(self) -> VpnConfig:
        if self.kind is VpnKind.VENDOR and self.client_app is None:
            raise ValueError("vpn kind 'vendor' needs client_app (its installer)")
        if self.kind is VpnKind.WIREGUARD and "server_public_key" not in self.settings:
            raise ValueError("vpn kind 'wireguard' needs settings.server_public_key")
        if self.device_secret is DeviceSecretMode.GENERATE and self.kind is not VpnKind.WIREGUARD:
            raise ValueError("device_secret 'generate' is for wireguard; import the others")
        allowed = VPN_SECRET_NAMES[self.kind]
        for name in self.secrets or {}:
            if name not in allowed:
                raise ValueError(
                    f"secret '{name}' does not apply to {self.kind.value} "
                    f"(allowed: {', '.join(allowed)})"
                )
        return self


class Check(StrEnum):
    IMAGE_HASH = "image_hash"
    HOSTNAME = "hostname"
    VPN_PROFILE = "vpn_profile"
    APPS = "apps"


class PinnedImage(BaseModel):
    name: Name
    version: Version | None = Field(
        default=None, description="Omit: the newest available version of this name."
    )


HOSTNAME_PLACEHOLDERS = ("serial", "asset_tag", "client")
_PLACEHOLDER = re.compile(r"\{([a-z_]*)\}")
_LITERAL = re.compile(r"^[A-Za-z0-9-]*$")


def check_hostname_pattern(pattern: str) -> str:
    """:raises ValueError: unknown placeholder or a character no host name may hold."""
    for m in _PLACEHOLDER.finditer(pattern):
        if m.group(1) not in HOSTNAME_PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{m.group(1)}}}; use "
                + ", ".join("{" + p + "}" for p in HOSTNAME_PLACEHOLDERS)
            )
    literal = _PLACEHOLDER.sub("", pattern)
    if not _LITERAL.match(literal):
        raise ValueError("hostname pattern may hold only letters, digits, '-' and placeholders")
    return pattern


EXAMPLE_CONFIG: dict[str, Any] = {
    "hostname_pattern": "ACME-{serial}",
    "image": {"name": "win11-corporate", "version": "2026.11.1"},
    "vpn": {
        "kind": "wireguard",
        "server": "vpn.acme.example",
        "port": 51820,
        "settings": {
            "server_public_key": "hJ8…=",
            "allowed_ips": "10.0.0.0/8",
            "dns": "10.0.0.53",
        },
        "device_secret": "generate",
        "secrets": {"preshared_key": "write-only; never returned"},
    },
    "apps": [
        {
            "name": "Microsoft Teams",
            "source": {"kind": "package", "manager": "winget", "id": "Microsoft.Teams"},
            "silent_args": ["--silent", "--accept-package-agreements"],
            "verify": {"kind": "package", "name": "Microsoft.Teams"},
        },
        {
            "name": "Zoom",
            "source": {"kind": "store", "image_id": 12},
            "silent_args": ["/quiet", "/norestart"],
            "verify": {"kind": "file", "path": "C:\\Program Files\\Zoom\\bin\\Zoom.exe"},
        },
    ],
    "checks": ["image_hash", "hostname", "vpn_profile", "apps"],
}


class ClientConfigBody(BaseModel):
    """A client configuration: what the pipeline applies to each of its laptops."""

    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_CONFIG]})
    hostname_pattern: str = Field(
        min_length=1,
        max_length=64,
        description="Placeholders {serial}, {asset_tag} (the serial when the device has "
        "none), {client} (the client code). Rendered per device; for Windows the result "
        "must be a NetBIOS name (at most 15 characters).",
        examples=["ACME-{serial}"],
    )
    image: PinnedImage | None = Field(
        default=None, description="Pin an image (name, optionally version); null: newest."
    )
    vpn: VpnConfig | None = None
    apps: list[AppConfig] = Field(default_factory=list, max_length=50)
    checks: list[Check] = Field(
        default_factory=lambda: list(Check),
        max_length=4,
        description="Checks that gate READY.",
    )

    @field_validator("hostname_pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        return check_hostname_pattern(v)


class VpnRead(BaseModel):
    kind: VpnKind
    name: str
    server: str
    port: int | None
    settings: dict[str, Any]
    client_app: AppConfig | None
    device_secret: DeviceSecretMode
    secret_names: list[str] = Field(
        description="Names of the shared secrets set (values are write-only)."
    )


class ClientConfigRead(BaseModel):
    id: int
    client_code: str
    version: int
    active: bool
    hostname_pattern: str
    image: PinnedImage | None
    vpn: VpnRead | None
    apps: list[AppConfig]
    checks: list[Check]
    created_by: str
    created_at: datetime


class DeviceSecretImport(BaseModel):
    serial: str = Field(min_length=1, max_length=64)
    name: SecretName = Field(examples=["wireguard_private_key"])
    value: SecretValue
    public: str | None = Field(default=None, max_length=512, description="Its public half.")


class DeviceSecretsImport(BaseModel):
    """Per-device secrets to import (write-only; replaces a secret of the same name)."""

    secrets: list[DeviceSecretImport] = Field(min_length=1, max_length=10000)


class DeviceSecretsImported(BaseModel):
    imported: int


class DevicePublicKey(BaseModel):
    device_id: int
    serial: str
    name: str
    public: str | None
    origin: str
    created_at: datetime
