"""Image catalogue rules: declaration, tenancy, retirement, and which image a laptop
gets.

Services never commit (the request, CLI command or job step does). A dsi caller sees
its own company's images only and gets ``ImageNotFound`` (404) for any other, so ids do
not leak; logistics never reaches these functions (the routes refuse it with 403).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from datetime import timedelta

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.errors import InvalidInput
from core.principal import Principal
from core.settings import get_settings
from core.timeutil import utcnow
from images import repository
from images.errors import (
    ImageConflict,
    ImageNotFound,
    NoImageForDevice,
    PinnedImageUnavailable,
    TooManyUploads,
    UploadTooLarge,
)
from images.models import ClientConfig, Image, ImageFormat, ImageStatus
from images.schemas import HardwareModelRef, ImageDeclare, ImageRead
from inventory import service as inventory
from inventory.models import Device

UPLOADS_PREFIX = "/uploads"


def client_for_write(session: Session, client_code: str | None, principal: Principal) -> int:
    """The client a write acts for: a dsi caller's own; an admin names it.

    :raises ClientNotFound: unknown code, or another company's for a dsi caller.
    :raises InvalidInput: an admin gave no client_code.
    """
    if principal.role.client_bound:
        assert principal.client_id is not None
        if client_code is not None:
            inventory.client_by_code(session, client_code, principal)
        return principal.client_id
    if not client_code:
        raise InvalidInput("client_code is required")
    client = inventory.client_by_code(session, client_code, principal)
    assert client.id is not None
    return client.id


def declare(session: Session, body: ImageDeclare, principal: Principal) -> Image:
    """Record an image version before its bytes arrive (status ``uploading``).

    :raises ClientNotFound: see ``client_for_write``.
    :raises UploadTooLarge: over ``Settings.max_image_size``.
    :raises TooManyUploads: the client already has its maximum of uploads in progress.
    :raises ImageConflict: this client already has that name and version.
    """
    settings = get_settings()
    client_id = client_for_write(session, body.client_code, principal)
    if body.size > settings.max_image_size:
        raise UploadTooLarge(f"image is {body.size} bytes; the limit is {settings.max_image_size}")
    if repository.get_image_by_version(session, client_id, body.name, body.version):
        raise ImageConflict(
            f"image {body.name} version {body.version} already exists; versions are "
            "immutable: declare a new version"
        )
    in_progress = repository.count_in_progress(session, client_id)
    if len(in_progress) >= settings.max_concurrent_uploads:
        raise TooManyUploads(
            f"{len(in_progress)} uploads already in progress for this client (images "
            f"{', '.join(map(str, sorted(in_progress)))}); finish or cancel one first",
            in_progress=sorted(in_progress),
        )
    row = Image(
        client_id=client_id,
        name=body.name,
        version=body.version,
        os_family=body.os_family,
        format=body.format,
        stored_size=body.size,
        stored_sha256=body.sha256,
        raw_size=body.raw_size or body.size,
        raw_sha256=body.raw_sha256 or body.sha256,
        status=ImageStatus.UPLOADING,
        uploaded_by=principal.actor,
        notes=body.notes,
        upload_touched_at=utcnow(),
    )
    session.add(row)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError as e:
        raise ImageConflict(f"image {body.name} version {body.version} already exists") from e
    assert row.id is not None
    models = [
        inventory.get_or_create_hardware_model(session, ref.vendor.strip(), ref.model.strip())
        for ref in body.compatible_models
    ]
    repository.set_compatible(session, row.id, [m.id for m in models if m.id is not None])
    session.flush()
    return row


def get_image(session: Session, image_id: int, principal: Principal) -> Image:
    """:raises ImageNotFound: unknown, or another company's for a dsi caller."""
    return principal.visible(repository.get_image(session, image_id), ImageNotFound(image_id))


def list_images(
    session: Session,
    principal: Principal,
    *,
    client_code: str | None = None,
    name: str | None = None,
    version: str | None = None,
    status: ImageStatus | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[Image]:
    """:raises ClientNotFound: a client code the caller cannot see."""
    client_id = principal.client_scope
    if client_code is not None:
        client = inventory.client_by_code(session, client_code, principal)
        client_id = client.id
    return repository.list_images(
        session,
        client_id=client_id,
        name=name,
        version=version,
        status=status,
        cursor=cursor,
        limit=limit,
    )


def to_read(session: Session, rows: Sequence[Image]) -> list[ImageRead]:
    ids = [r.id for r in rows if r.id is not None]
    models = repository.compatible_models(session, ids)
    codes = repository.client_codes(session, {r.client_id for r in rows})
    out = []
    for r in rows:
        assert r.id is not None
        out.append(
            ImageRead(
                id=r.id,
                client_id=r.client_id,
                client_code=codes.get(r.client_id, ""),
                name=r.name,
                version=r.version,
                os_family=r.os_family,
                format=r.format,
                size=r.stored_size,
                sha256=r.stored_sha256,
                raw_size=r.raw_size,
                raw_sha256=r.raw_sha256,
                status=r.status,
                compatible_models=[
                    HardwareModelRef(vendor=m.vendor, model=m.model) for m in models.get(r.id, [])
                ],
                uploaded_by=r.uploaded_by,
                notes=r.notes,
                created_at=r.created_at,
                published_at=r.published_at,
                retired_at=r.retired_at,
                purged_at=r.purged_at,
                upload_offset=r.upload_offset,
                upload_url=f"{UPLOADS_PREFIX}/{r.upload_id}" if r.upload_id else None,
            )
        )
    return out


def retire(session: Session, image_id: int, principal: Principal) -> Image:
    """Retire a published version: it never resolves for a new run again; its storage
    is reclaimed by ``images gc`` once no run needs it. Retiring twice is a no-op.

    :raises ImageNotFound: see ``get_image``.
    :raises ImageConflict: not published (cancel an upload instead).
    """
    get_image(session, image_id, principal)
    row = repository.get_image_for_update(session, image_id)
    assert row is not None
    if row.status == ImageStatus.RETIRED:
        return row
    if row.status != ImageStatus.AVAILABLE:
        raise ImageConflict(
            f"image {image_id} is {row.status}; only a published image can be retired "
            "(cancel an upload with DELETE /images/{id})"
        )
    row.status = ImageStatus.RETIRED
    row.retired_at = utcnow()
    row.retired_by = principal.actor
    session.add(row)
    session.flush()
    return row


def cancel(session: Session, image_id: int, principal: Principal) -> str | None:
    """Delete a declared image whose upload never finished; returns its upload id (the
    caller removes the partial file after commit).

    :raises ImageNotFound: see ``get_image``.
    :raises ImageConflict: published versions are immutable (retire them instead).
    """
    get_image(session, image_id, principal)
    row = repository.get_image_for_update(session, image_id)
    assert row is not None and row.id is not None
    if row.status != ImageStatus.UPLOADING:
        raise ImageConflict(
            f"image {image_id} is {row.status}; published versions are immutable "
            "(retire it instead)"
        )
    upload_id = row.upload_id
    repository.delete_image(session, row.id)
    return upload_id


# Resolution, for the provisioning pipeline.
def active_config(session: Session, client_id: int) -> ClientConfig | None:
    """The client's active configuration version, or None when it has none."""
    return repository.active_config(session, client_id)


def resolve_for_device(session: Session, device: Device) -> Image:
    """The image a new run for ``device`` writes.

    From the device's client only, never another's: the version pinned by the client's
    active configuration if it pins one, else the newest available image (of the pinned
    name, if only a name is pinned) compatible with the device's hardware model (an
    image with no compatible models listed fits every model). Retired, unpublished and
    installer (``file``) entries never resolve.

    :raises NoImageForDevice: the device has no client, or nothing fits.
    :raises PinnedImageUnavailable: the pinned version is retired, unpublished or not for
        this hardware model.
    """
    if device.client_id is None:
        raise NoImageForDevice(f"device {device.serial} belongs to no client; no image")
    return resolve_with_config(session, device, active_config(session, device.client_id))


def resolve_with_config(session: Session, device: Device, config: ClientConfig | None) -> Image:
    """``resolve_for_device`` for a caller that has already read the client's active
    configuration (scan-in does, to skip the lookup when there is none).

    :raises: as ``resolve_for_device``.
    """
    if device.client_id is None:
        raise NoImageForDevice(f"device {device.serial} belongs to no client; no image")
    pin = (config.body.get("image") if config else None) or {}
    name, version = pin.get("name"), pin.get("version")
    if name and version:
        row = repository.get_image_by_version(session, device.client_id, name, version)
        if row is None:
            raise PinnedImageUnavailable(
                f"the configuration pins image {name} {version}, which does not exist"
            )
        if row.status != ImageStatus.AVAILABLE or row.format == ImageFormat.FILE:
            raise PinnedImageUnavailable(
                f"the configuration pins image {name} {version}, which is {row.status}"
            )
        assert row.id is not None
        if not repository.is_compatible(session, row.id, device.hardware_model_id):
            raise PinnedImageUnavailable(
                f"the configuration pins image {name} {version}, which is not for this "
                f"hardware model (device {device.serial})"
            )
        return row
    candidates = repository.candidate_images(
        session,
        client_id=device.client_id,
        hardware_model_id=device.hardware_model_id,
        name=name,
    )
    if not candidates:
        what = f"image {name}" if name else "image"
        raise NoImageForDevice(
            f"no available {what} of this client fits device {device.serial} "
            "(none published, all retired, or none for its hardware model)"
        )
    return candidates[0]


# Which retired images a run still needs (gc keeps their files).
NeededHook = Callable[[Session, Collection[int]], set[int]]
STILL_NEEDED: list[NeededHook] = []
"""Functions ``(session, retired_image_ids) -> ids still needed``; gc keeps the storage
of any id one of them returns. Provisioning appends its own at start (``wiring.wire``):
the images of its active runs."""


def still_needed(session: Session, image_ids: Collection[int]) -> set[int]:
    """The ids among ``image_ids`` that some run (or other registered user) needs."""
    if not image_ids:
        return set()
    needed: set[int] = set()
    for hook in STILL_NEEDED:
        needed |= hook(session, image_ids)
    return needed


def upload_expiry() -> timedelta:
    return timedelta(hours=get_settings().upload_expiry_hours)
