"""All logistics SQL: teleworkers, shipments, status listings, the change feed's outbox
and counters, webhook subscriptions and deliveries."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from inventory.models import ClientCompany, Device, DeviceEvent
from logistics.models import (
    Counter,
    DeliveryStatus,
    OutboxEntry,
    Shipment,
    ShipmentStatus,
    Teleworker,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)


# Teleworkers.
def get_teleworker(session: Session, teleworker_id: int) -> Teleworker | None:
    return session.get(Teleworker, teleworker_id)


def teleworker_by_email(session: Session, client_id: int, email: str) -> Teleworker | None:
    return session.exec(
        select(Teleworker).where(Teleworker.client_id == client_id, Teleworker.email == email)
    ).first()


def teleworkers_by_email(
    session: Session, email: str, *, client_id: int | None
) -> Sequence[Teleworker]:
    q = select(Teleworker).where(Teleworker.email == email).order_by(col(Teleworker.id))
    if client_id is not None:
        q = q.where(Teleworker.client_id == client_id)
    return session.exec(q).all()


def teleworkers_to_erase(session: Session, *, closed_before: datetime) -> Sequence[Teleworker]:
    """Teleworkers not yet erased whose shipments are all closed (delivered or returned)
    before ``closed_before``."""
    closed_at = func.coalesce(col(Shipment.returned_at), col(Shipment.delivered_at))
    still_open_or_recent = (
        select(Shipment.teleworker_id)
        .where((col(Shipment.status) == ShipmentStatus.DISPATCHED) | (closed_at >= closed_before))
        .scalar_subquery()
    )
    return session.exec(
        select(Teleworker)
        .where(
            col(Teleworker.erased_at).is_(None),
            col(Teleworker.id).not_in(still_open_or_recent),
            col(Teleworker.id).in_(select(Shipment.teleworker_id).scalar_subquery()),
        )
        .order_by(col(Teleworker.id))
    ).all()


# Shipments.
def open_shipment(session: Session, device_id: int) -> Shipment | None:
    """The device's latest shipment that is not returned yet."""
    return session.exec(
        select(Shipment)
        .where(Shipment.device_id == device_id, col(Shipment.status) != ShipmentStatus.RETURNED)
        .order_by(col(Shipment.id).desc())
    ).first()


def latest_shipments(session: Session, device_ids: Sequence[int]) -> dict[int, Shipment]:
    out: dict[int, Shipment] = {}
    for i in range(0, len(device_ids), 500):
        chunk = list(device_ids[i : i + 500])
        rows = session.exec(
            select(Shipment).where(col(Shipment.device_id).in_(chunk)).order_by(col(Shipment.id))
        ).all()
        for row in rows:
            out[row.device_id] = row  # later ids win
    return out


def teleworkers_by_id(session: Session, ids: Sequence[int]) -> dict[int, Teleworker]:
    if not ids:
        return {}
    rows = session.exec(select(Teleworker).where(col(Teleworker.id).in_(list(set(ids))))).all()
    return {t.id: t for t in rows if t.id is not None}


def shipments_by_tracking(session: Session, trackings: Sequence[str]) -> dict[str, Shipment]:
    """The latest shipment of each tracking number."""
    out: dict[str, Shipment] = {}
    for i in range(0, len(trackings), 500):
        chunk = list(trackings[i : i + 500])
        rows = session.exec(
            select(Shipment).where(col(Shipment.tracking).in_(chunk)).order_by(col(Shipment.id))
        ).all()
        for row in rows:
            out[row.tracking] = row
    return out


# Status listings (keyset on device id).
def status_devices(
    session: Session,
    *,
    client_id: int | None,
    serial: str | None = None,
    asset_tag: str | None = None,
    order_reference: str | None = None,
    delivery_id: int | None = None,
    teleworker_id: int | None = None,
    cursor: int | None = None,
    limit: int = 100,
) -> Sequence[Device]:
    q = select(Device).order_by(col(Device.id)).limit(limit)
    if client_id is not None:
        q = q.where(Device.client_id == client_id)
    if serial is not None:
        q = q.where(Device.serial == serial)
    if asset_tag is not None:
        q = q.where(Device.asset_tag == asset_tag)
    if order_reference is not None:
        q = q.where(Device.order_reference == order_reference)
    if delivery_id is not None:
        q = q.where(Device.delivery_id == delivery_id)
    if teleworker_id is not None:
        q = q.where(
            col(Device.id).in_(
                select(Shipment.device_id)
                .where(Shipment.teleworker_id == teleworker_id)
                .scalar_subquery()
            )
        )
    if cursor is not None:
        q = q.where(col(Device.id) > cursor)
    return session.exec(q).all()


def clients(session: Session, *, only_id: int | None) -> Sequence[ClientCompany]:
    q = select(ClientCompany).order_by(col(ClientCompany.id))
    if only_id is not None:
        q = q.where(ClientCompany.id == only_id)
    return session.exec(q).all()


# Webhooks.
def get_subscription(session: Session, sub_id: int) -> WebhookSubscription | None:
    return session.get(WebhookSubscription, sub_id)


def list_subscriptions(session: Session, *, client_id: int | None) -> Sequence[WebhookSubscription]:
    q = select(WebhookSubscription).order_by(col(WebhookSubscription.id))
    if client_id is not None:
        q = q.where(WebhookSubscription.client_id == client_id)
    return session.exec(q).all()


def active_subscriptions(session: Session) -> Sequence[WebhookSubscription]:
    return session.exec(
        select(WebhookSubscription)
        .where(col(WebhookSubscription.active).is_(True))
        .order_by(col(WebhookSubscription.id))
    ).all()


def existing_deliveries(
    session: Session, subscription_id: int, event_ids: Sequence[int]
) -> dict[int, WebhookDelivery]:
    out: dict[int, WebhookDelivery] = {}
    for i in range(0, len(event_ids), 500):
        chunk = list(event_ids[i : i + 500])
        rows = session.exec(
            select(WebhookDelivery).where(
                WebhookDelivery.subscription_id == subscription_id,
                col(WebhookDelivery.event_id).in_(chunk),
            )
        ).all()
        out.update({r.event_id: r for r in rows})
    return out


def due_deliveries(session: Session, *, now: datetime, limit: int) -> Sequence[WebhookDelivery]:
    """Pending deliveries whose time has come, locked; other senders skip them."""
    return session.exec(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.status == DeliveryStatus.PENDING,
            col(WebhookDelivery.next_attempt_at) <= now,
        )
        .order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.id))
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()


def deliveries_of(
    session: Session,
    subscription_id: int,
    *,
    status: DeliveryStatus | None,
    cursor: int | None,
    limit: int,
) -> Sequence[WebhookDelivery]:
    q = (
        select(WebhookDelivery)
        .where(WebhookDelivery.subscription_id == subscription_id)
        .order_by(col(WebhookDelivery.id))
        .limit(limit)
    )
    if status is not None:
        q = q.where(WebhookDelivery.status == status)
    if cursor is not None:
        q = q.where(col(WebhookDelivery.id) > cursor)
    return session.exec(q).all()


def attempts_of(session: Session, delivery_ids: Sequence[int]) -> dict[int, list[WebhookAttempt]]:
    out: dict[int, list[WebhookAttempt]] = {}
    if not delivery_ids:
        return out
    rows = session.exec(
        select(WebhookAttempt)
        .where(col(WebhookAttempt.delivery_id).in_(list(delivery_ids)))
        .order_by(col(WebhookAttempt.id))
    ).all()
    for row in rows:
        out.setdefault(row.delivery_id, []).append(row)
    return out


def get_delivery_for_update(session: Session, delivery_id: int) -> WebhookDelivery:
    """The delivery row, locked until the transaction ends."""
    return session.exec(
        select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
    ).one()


def deliveries_by_id(
    session: Session, subscription_id: int, delivery_ids: Sequence[int]
) -> Sequence[WebhookDelivery]:
    return session.exec(
        select(WebhookDelivery).where(
            WebhookDelivery.subscription_id == subscription_id,
            col(WebhookDelivery.id).in_(list(delivery_ids)),
        )
    ).all()


# The change feed: counters and the outbox (see logistics.feed for the why).
def lock_counter(session: Session, name: str) -> Counter:
    """The named counter row, locked until the transaction ends (created at 0)."""
    row = session.exec(select(Counter).where(Counter.name == name).with_for_update()).first()
    if row is None:
        # Two first-ever callers may race to create it; the loser's insert fails in its
        # savepoint and it simply locks the winner's row.
        try:
            with session.begin_nested():
                session.add(Counter(name=name, value=0))
                session.flush()
        except IntegrityError:
            pass
        row = session.exec(select(Counter).where(Counter.name == name).with_for_update()).one()
    return row


def unsequenced_outbox_ids(session: Session, *, limit: int) -> Sequence[int]:
    """Committed outbox rows without a ``seq`` yet, oldest first."""
    return [
        int(i)
        for i in session.exec(
            select(OutboxEntry.id)
            .where(col(OutboxEntry.seq).is_(None))
            .order_by(col(OutboxEntry.id))
            .limit(limit)
        ).all()
        if i is not None
    ]


def assign_seqs(session: Session, seq_of: dict[int, int]) -> None:
    """Set ``seq`` of each outbox row id in one executemany."""
    table: Any = OutboxEntry.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        update(table).where(table.c.id == bindparam("oid")).values(seq=bindparam("s")),
        [{"oid": oid, "s": seq} for oid, seq in seq_of.items()],
    )


def _feed_rows() -> Any:
    return (
        select(OutboxEntry, DeviceEvent, Device)
        .join(DeviceEvent, col(DeviceEvent.id) == col(OutboxEntry.event_id))
        .join(Device, col(Device.id) == col(DeviceEvent.device_id))
    )


def outbox_since(
    session: Session, *, cursor: int, limit: int, client_id: int | None
) -> Sequence[tuple[OutboxEntry, DeviceEvent, Device]]:
    """Sequenced outbox rows with ``seq > cursor`` and their event and device."""
    q = (
        _feed_rows()
        .where(col(OutboxEntry.seq).is_not(None), col(OutboxEntry.seq) > cursor)
        .order_by(col(OutboxEntry.seq))
        .limit(limit)
    )
    if client_id is not None:
        q = q.where(OutboxEntry.client_id == client_id)
    return session.exec(q).all()


def outbox_by_seq(
    session: Session, seqs: Sequence[int]
) -> Sequence[tuple[OutboxEntry, DeviceEvent, Device]]:
    q = _feed_rows().where(col(OutboxEntry.seq).in_(list(seqs))).order_by(col(OutboxEntry.seq))
    return session.exec(q).all()
