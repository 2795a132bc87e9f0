"""All SQL of the image catalogue and client configurations."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import and_, bindparam, delete, func, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from images.models import ClientConfig, DeviceSecret, Image, ImageHardwareModel, ImageStatus
from inventory.models import ClientCompany, Device, HardwareModel


# Images.
def get_image(session: Session, image_id: int) -> Image | None:
    return session.get(Image, image_id)


def get_image_for_update(session: Session, image_id: int) -> Image | None:
    return session.exec(select(Image).where(Image.id == image_id).with_for_update()).first()


def get_image_by_upload(session: Session, upload_id: str) -> Image | None:
    return session.exec(select(Image).where(Image.upload_id == upload_id)).first()


def get_image_by_version(session: Session, client_id: int, name: str, version: str) -> Image | None:
    return session.exec(
        select(Image).where(
            Image.client_id == client_id, Image.name == name, Image.version == version
        )
    ).first()


def list_images(
    session: Session,
    *,
    client_id: int | None,
    name: str | None = None,
    version: str | None = None,
    status: ImageStatus | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[Image]:
    q = select(Image).order_by(col(Image.id)).limit(limit)
    if client_id is not None:
        q = q.where(Image.client_id == client_id)
    if name is not None:
        q = q.where(Image.name == name)
    if version is not None:
        q = q.where(Image.version == version)
    if status is not None:
        q = q.where(Image.status == status)
    if cursor is not None:
        q = q.where(col(Image.id) > cursor)
    return session.exec(q).all()


def count_in_progress(session: Session, client_id: int) -> list[int]:
    """Ids of the client's uploads in progress (declared, not yet published)."""
    q = select(Image.id).where(
        Image.client_id == client_id,
        col(Image.status).in_([ImageStatus.UPLOADING, ImageStatus.VERIFYING]),
    )
    return [i for i in session.exec(q).all() if i is not None]


def _candidates_statement(*, by_name: bool, by_model: bool) -> SelectOfScalar[Image]:
    has_rows = (
        select(ImageHardwareModel.image_id).where(ImageHardwareModel.image_id == Image.id).exists()
    )
    q = select(Image).where(
        Image.client_id == bindparam("client_id"),
        Image.status == ImageStatus.AVAILABLE,
        Image.format != "file",
    )
    if by_name:
        q = q.where(Image.name == bindparam("name"))
    if not by_model:
        q = q.where(~has_rows)
    else:
        matches = (
            select(ImageHardwareModel.image_id)
            .where(
                ImageHardwareModel.image_id == Image.id,
                ImageHardwareModel.hardware_model_id == bindparam("hardware_model_id"),
            )
            .exists()
        )
        q = q.where(~has_rows | matches)
    return q.order_by(col(Image.published_at).desc(), col(Image.id).desc())


# Built once (every scan-in resolves an image): rebuilding these correlated subqueries
# and their cache key cost more than running them.
_CANDIDATES = {
    (by_name, by_model): _candidates_statement(by_name=by_name, by_model=by_model)
    for by_name in (False, True)
    for by_model in (False, True)
}


def candidate_images(
    session: Session, *, client_id: int, hardware_model_id: int | None, name: str | None
) -> Sequence[Image]:
    """The client's available disk images usable on a hardware model (an image with no
    compatibility rows is for every model), newest published first."""
    q = _CANDIDATES[(name is not None, hardware_model_id is not None)]
    params = {"client_id": client_id, "name": name, "hardware_model_id": hardware_model_id}
    return session.exec(q, params={k: v for k, v in params.items() if v is not None}).all()


def is_compatible(session: Session, image_id: int, hardware_model_id: int | None) -> bool:
    rows = session.exec(
        select(ImageHardwareModel.hardware_model_id).where(ImageHardwareModel.image_id == image_id)
    ).all()
    return not rows or hardware_model_id in rows


def compatible_models(
    session: Session, image_ids: Collection[int]
) -> dict[int, list[HardwareModel]]:
    out: dict[int, list[HardwareModel]] = {i: [] for i in image_ids}
    if not image_ids:
        return out
    q = (
        select(ImageHardwareModel.image_id, HardwareModel)
        .join(HardwareModel, col(HardwareModel.id) == ImageHardwareModel.hardware_model_id)
        .where(col(ImageHardwareModel.image_id).in_(list(image_ids)))
        .order_by(col(HardwareModel.vendor), col(HardwareModel.model))
    )
    for image_id, model in session.exec(q).all():
        out[image_id].append(model)
    return out


def set_compatible(session: Session, image_id: int, model_ids: Collection[int]) -> None:
    for model_id in sorted(set(model_ids)):
        session.add(ImageHardwareModel(image_id=image_id, hardware_model_id=model_id))


def client_codes(session: Session, client_ids: Collection[int]) -> dict[int, str]:
    if not client_ids:
        return {}
    q = select(ClientCompany.id, ClientCompany.code).where(
        col(ClientCompany.id).in_(list(client_ids))
    )
    return {i: c for i, c in session.exec(q).all() if i is not None}


def available_by_sha(session: Session, client_id: int, sha256: str) -> Image | None:
    return session.exec(
        select(Image).where(
            Image.client_id == client_id,
            Image.stored_sha256 == sha256,
            Image.status == ImageStatus.AVAILABLE,
        )
    ).first()


def verifying_ids(session: Session, image_id: int | None = None) -> list[int]:
    """Images being published, or left ``verifying`` by a server that died publishing."""
    q = select(Image.id).where(Image.status == ImageStatus.VERIFYING)
    if image_id is not None:
        q = q.where(Image.id == image_id)
    return [i for i in session.exec(q).all() if i is not None]


def retired_unpurged(session: Session) -> Sequence[Image]:
    return session.exec(
        select(Image).where(Image.status == ImageStatus.RETIRED, col(Image.purged_at).is_(None))
    ).all()


def shas_in_use(session: Session) -> set[str]:
    """Content addresses some image row still needs: anything not purged (published,
    retired but kept, or being published right now)."""
    q = select(Image.stored_sha256).where(
        col(Image.status).in_([ImageStatus.AVAILABLE, ImageStatus.VERIFYING])
        | and_(col(Image.status) == ImageStatus.RETIRED, col(Image.purged_at).is_(None))
    )
    return set(session.exec(q).all())


def stale_uploads(session: Session, before: datetime) -> Sequence[Image]:
    """Unpublished images whose upload has not moved since ``before``."""
    touched = func.coalesce(Image.upload_touched_at, Image.created_at)
    return session.exec(
        select(Image).where(Image.status == ImageStatus.UPLOADING, touched < before)
    ).all()


def live_upload_ids(session: Session) -> set[str]:
    q = select(Image.upload_id).where(col(Image.upload_id).is_not(None))
    return {u for u in session.exec(q).all() if u is not None}


def delete_image(session: Session, image_id: int) -> None:
    session.execute(delete(ImageHardwareModel).where(col(ImageHardwareModel.image_id) == image_id))
    session.execute(delete(Image).where(col(Image.id) == image_id))


def record_offset(
    session: Session, image_id: int, upload_id: str, offset: int, at: datetime
) -> None:
    session.execute(
        update(Image)
        .where(col(Image.id) == image_id, col(Image.upload_id) == upload_id)
        .values(upload_offset=offset, upload_touched_at=at)
    )


# Client configurations.
def list_configs(session: Session, client_id: int) -> Sequence[ClientConfig]:
    return session.exec(
        select(ClientConfig)
        .where(ClientConfig.client_id == client_id)
        .order_by(col(ClientConfig.version).desc())
    ).all()


def get_config(session: Session, client_id: int, version: int) -> ClientConfig | None:
    return session.exec(
        select(ClientConfig).where(
            ClientConfig.client_id == client_id, ClientConfig.version == version
        )
    ).first()


_ACTIVE_CONFIG = select(ClientConfig).where(
    ClientConfig.client_id == bindparam("client_id"), col(ClientConfig.active).is_(True)
)


def active_config(session: Session, client_id: int) -> ClientConfig | None:
    return session.exec(_ACTIVE_CONFIG, params={"client_id": client_id}).first()


def lock_client(session: Session, client_id: int) -> ClientCompany | None:
    """The client row, locked: versions of its configuration are numbered one at a time."""
    return session.exec(
        select(ClientCompany).where(ClientCompany.id == client_id).with_for_update()
    ).first()


def deactivate_configs(session: Session, client_id: int) -> None:
    session.execute(
        update(ClientConfig).where(col(ClientConfig.client_id) == client_id).values(active=False)
    )


def next_config_version(session: Session, client_id: int) -> int:
    top = session.exec(
        select(func.max(ClientConfig.version)).where(ClientConfig.client_id == client_id)
    ).one()
    return int(top or 0) + 1


def get_device_secret(session: Session, device_id: int, name: str) -> DeviceSecret | None:
    return session.exec(
        select(DeviceSecret).where(DeviceSecret.device_id == device_id, DeviceSecret.name == name)
    ).first()


def device_secrets(session: Session, device_id: int) -> Sequence[DeviceSecret]:
    return session.exec(
        select(DeviceSecret)
        .where(DeviceSecret.device_id == device_id)
        .order_by(col(DeviceSecret.name))
    ).all()


def device_public_keys(session: Session, client_id: int) -> Sequence[tuple[DeviceSecret, str]]:
    q = (
        select(DeviceSecret, Device.serial)
        .join(Device, col(Device.id) == DeviceSecret.device_id)
        .where(DeviceSecret.client_id == client_id)
        .order_by(col(Device.serial), col(DeviceSecret.name))
    )
    return [(s, serial) for s, serial in session.exec(q).all()]


def devices_by_serial(
    session: Session, client_id: int, serials: Collection[str]
) -> dict[str, Device]:
    q = select(Device).where(Device.client_id == client_id, col(Device.serial).in_(list(serials)))
    return {d.serial: d for d in session.exec(q).all()}
