"""All inventory SQL."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, func, or_
from sqlmodel import Session, col, select

from inventory.models import (
    Bench,
    ClientCompany,
    Delivery,
    Device,
    DeviceEvent,
    HardwareModel,
    Site,
)
from inventory.states import SLOT_HOLDING, DeviceState


# Clients, sites, benches, hardware models.
def get_client(session: Session, client_id: int) -> ClientCompany | None:
    return session.get(ClientCompany, client_id)


def get_client_by_code(session: Session, code: str) -> ClientCompany | None:
    return session.exec(select(ClientCompany).where(ClientCompany.code == code)).first()


def list_clients(session: Session, *, only_id: int | None = None) -> Sequence[ClientCompany]:
    q = select(ClientCompany).order_by(col(ClientCompany.id))
    if only_id is not None:
        q = q.where(ClientCompany.id == only_id)
    return session.exec(q).all()


def get_site_by_code(session: Session, code: str) -> Site | None:
    return session.exec(select(Site).where(Site.code == code)).first()


def list_sites(session: Session) -> Sequence[Site]:
    return session.exec(select(Site).order_by(col(Site.id))).all()


def get_bench(session: Session, bench_id: int) -> Bench | None:
    return session.get(Bench, bench_id)


# Statements of the scan-in path, built once with bind parameters: SQLAlchemy then
# skips rebuilding the expression and its cache key on every call, which is most of
# a simple query's cost here (see "Core: scan-in" in docs/benchmarks.md).
def lock_bench(session: Session, bench_id: int) -> Bench | None:
    """The bench row, locked until the transaction ends: every slot allocation at one
    bench takes this lock first, so they serialise (PostgreSQL ``FOR UPDATE``; SQLite's
    ``BEGIN IMMEDIATE`` already serialises writers)."""
    return session.exec(_LOCK_BENCH, params={"bench_id": bench_id}).first()


def occupied_slots(session: Session, bench_id: int) -> set[int]:
    """Slots of the bench that hold a laptop. Call it *after* ``lock_bench``, as a
    statement of its own: under PostgreSQL's READ COMMITTED each statement reads a new
    snapshot, so this one sees every allocation committed before the lock was granted
    (read in the locking statement itself, from a snapshot taken before the wait, it
    handed one slot to several laptops)."""
    rows = session.exec(_OCCUPIED, params={"bench_id": bench_id}).all()
    return {int(slot) for slot in rows if slot is not None}


def list_benches(session: Session) -> Sequence[Bench]:
    return session.exec(select(Bench).order_by(col(Bench.id))).all()


def get_hardware_model(session: Session, vendor: str, model: str) -> HardwareModel | None:
    return session.exec(
        select(HardwareModel).where(HardwareModel.vendor == vendor, HardwareModel.model == model)
    ).first()


def hardware_models_by_key(session: Session) -> dict[tuple[str, str], HardwareModel]:
    return {(m.vendor, m.model): m for m in session.exec(select(HardwareModel)).all()}


def get_hardware_model_by_id(session: Session, model_id: int) -> HardwareModel | None:
    return session.get(HardwareModel, model_id)


def list_hardware_models(session: Session) -> Sequence[HardwareModel]:
    return session.exec(select(HardwareModel).order_by(col(HardwareModel.id))).all()


# Deliveries.
def get_delivery(session: Session, delivery_id: int) -> Delivery | None:
    return session.get(Delivery, delivery_id)


def get_delivery_by_reference(
    session: Session, client_id: int, order_reference: str
) -> Delivery | None:
    return session.exec(
        select(Delivery).where(
            Delivery.client_id == client_id, Delivery.order_reference == order_reference
        )
    ).first()


def list_deliveries(
    session: Session, *, client_id: int | None, cursor: int | None, limit: int
) -> Sequence[Delivery]:
    q = select(Delivery).order_by(col(Delivery.id)).limit(limit)
    if client_id is not None:
        q = q.where(Delivery.client_id == client_id)
    if cursor is not None:
        q = q.where(col(Delivery.id) > cursor)
    return session.exec(q).all()


def devices_of_delivery(session: Session, delivery_id: int) -> Sequence[Device]:
    return session.exec(
        select(Device).where(Device.delivery_id == delivery_id).order_by(col(Device.id))
    ).all()


# Devices.
def get_device(session: Session, device_id: int) -> Device | None:
    return session.get(Device, device_id)


def get_device_for_update(session: Session, device_id: int) -> Device | None:
    """The device row, locked until the transaction ends (PostgreSQL ``FOR UPDATE``;
    SQLite's ``BEGIN IMMEDIATE`` already serialises writers)."""
    return session.exec(
        select(Device)
        .where(Device.id == device_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


_BY_CODE = (
    select(Device)
    .where(or_(col(Device.asset_tag) == bindparam("code"), col(Device.serial) == bindparam("code")))
    .order_by(col(Device.id))
)
_BY_CODE_FOR_UPDATE = _BY_CODE.with_for_update()


def find_devices_by_code(
    session: Session, code: str, *, for_update: bool = False
) -> Sequence[Device]:
    """Devices whose asset tag is ``code``, or else whose serial is (a serial may repeat
    across vendors), oldest first. ``for_update`` locks them (PostgreSQL ``FOR
    UPDATE``; SQLite's ``BEGIN IMMEDIATE`` already serialises writers).

    One query for both (each column has its own index): this runs on every scan-in.
    """
    q = _BY_CODE_FOR_UPDATE if for_update else _BY_CODE
    found = session.exec(q, params={"code": code}).all()
    by_tag = [d for d in found if d.asset_tag == code]
    return by_tag or found


def devices_by_serials(session: Session, serials: Sequence[str]) -> Sequence[Device]:
    out: list[Device] = []
    # Chunked: SQLite caps bound parameters, and 10,000-row imports are normal.
    for i in range(0, len(serials), 500):
        chunk = serials[i : i + 500]
        out.extend(session.exec(select(Device).where(col(Device.serial).in_(chunk))).all())
    return out


def devices_by_asset_tags(session: Session, tags: Sequence[str]) -> Sequence[Device]:
    out: list[Device] = []
    for i in range(0, len(tags), 500):
        chunk = tags[i : i + 500]
        out.extend(session.exec(select(Device).where(col(Device.asset_tag).in_(chunk))).all())
    return out


def list_devices(
    session: Session,
    *,
    client_id: int | None = None,
    state: DeviceState | None = None,
    delivery_id: int | None = None,
    serial_prefix: str | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[Device]:
    """A page of devices ordered by id; ``cursor`` is the last id of the previous page,
    so pages do not shift when rows are inserted."""
    q = select(Device).order_by(col(Device.id)).limit(limit)
    if client_id is not None:
        q = q.where(Device.client_id == client_id)
    if state is not None:
        q = q.where(Device.state == state)
    if delivery_id is not None:
        q = q.where(Device.delivery_id == delivery_id)
    if serial_prefix:
        escaped = serial_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = q.where(col(Device.serial).like(escaped + "%", escape="\\"))
    if cursor is not None:
        q = q.where(col(Device.id) > cursor)
    return session.exec(q).all()


_LOCK_BENCH = (
    select(Bench)
    .where(Bench.id == bindparam("bench_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)
# Served by the (bench_id, slot) index; the state filter is the unique index's predicate.
_OCCUPIED = select(Device.slot).where(
    col(Device.bench_id) == bindparam("bench_id"),
    col(Device.state).in_(sorted(SLOT_HOLDING)),
    col(Device.slot).is_not(None),
)


def device_events(session: Session, device_id: int) -> Sequence[DeviceEvent]:
    return session.exec(
        select(DeviceEvent).where(DeviceEvent.device_id == device_id).order_by(col(DeviceEvent.id))
    ).all()


def count_devices_by_state(
    session: Session, *, client_id: int | None = None, delivery_id: int | None = None
) -> dict[str, int]:
    q = select(Device.state, func.count()).group_by(Device.state)
    if client_id is not None:
        q = q.where(Device.client_id == client_id)
    if delivery_id is not None:
        q = q.where(Device.delivery_id == delivery_id)
    return {str(state): int(n) for state, n in session.exec(q).all()}


def unexpected_devices(session: Session) -> Sequence[Device]:
    return session.exec(
        select(Device)
        .where(or_(col(Device.state) == DeviceState.UNEXPECTED, col(Device.delivery_id).is_(None)))
        .order_by(col(Device.id))
    ).all()
