"""Errors of the image catalogue, uploads and client configurations.

Messages name images by client-visible facts (name, version, id) and never carry a
secret value: configuration secrets are reported by name only.
"""

from __future__ import annotations

from core import vault as _core_vault
from core.errors import Conflict, InvalidInput, MasterlineError, NotFound, TooLarge


class ImageNotFound(NotFound):
    def __init__(self, ref: object) -> None:
        super().__init__(f"image {ref} not found")


class UploadNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("upload not found (finished, cancelled or expired)")


class ImageConflict(Conflict):
    title = "Image conflict"


class NoImageForDevice(NotFound):
    """No image can be resolved for a device (none published, all retired, none
    compatible with its hardware model)."""

    title = "No image for device"


class PinnedImageUnavailable(Conflict):
    """The client configuration pins a version that cannot run (retired, not yet
    available, or not for this hardware model)."""

    title = "Pinned image unavailable"


class UploadMismatch(InvalidInput):
    """The bytes received do not match the declaration (size or sha256); nothing was
    published."""

    title = "Upload mismatch"


class UploadTooLarge(TooLarge):
    pass


class OffsetMismatch(Conflict):
    """A tus PATCH whose Upload-Offset is not the server's offset (HEAD tells it)."""

    title = "Offset mismatch"


class UploadLocked(MasterlineError):
    """Another request is writing this upload right now (e.g. the one a client
    believes it has lost); retry after a moment."""

    status_code = 423
    exit_code = 5
    title = "Upload locked"


class TooManyUploads(MasterlineError):
    status_code = 429
    exit_code = 5
    title = "Too many uploads"


class StorageFull(MasterlineError):
    """The image store's disk is full; a resumable upload keeps what it has."""

    status_code = 507
    exit_code = 7
    title = "Insufficient storage"


class StoredFileMissing(NotFound):
    title = "Stored file missing"


class ConfigNotFound(NotFound):
    def __init__(self, ref: str) -> None:
        super().__init__(f"client configuration {ref} not found")


class InvalidConfig(InvalidInput):
    title = "Invalid configuration"


class HostnameInvalid(InvalidInput):
    """The hostname pattern rendered for a device is not a valid host name."""

    title = "Invalid hostname"


# Defined beside the vault it guards (core), re-exported for this domain's callers.
SecretKeyError = _core_vault.SecretKeyError
