"""The one writer of device state.

Every state change goes through ``apply`` (or ``create`` for new devices), which checks
the move against ``inventory.states.TRANSITIONS``, sets state and target, and appends the
``DeviceEvent`` in the caller's transaction. Nothing else assigns ``Device.state``; a test
greps the tree to keep it so. Callers lock the device row first (see
``inventory.repository.get_device_for_update``) so concurrent moves serialise.

Each event carries the laptop's client, delivery and site as they are when it is
written (the console's chart filters the events by them without joining the laptops):
a caller that changes them (attach, scan-in) does so before the move it records.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlmodel import Session

from core.timeutil import utcnow
from inventory.errors import InvalidTransition
from inventory.models import Bench, Device, DeviceEvent
from inventory.states import TARGET_OF, DeviceState, Event, next_state


def apply(
    session: Session,
    device: Device,
    event: Event,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> DeviceEvent:
    """Move ``device`` by ``event`` and record it.

    :raises InvalidTransition: the table has no such move from the device's state.
    """
    if device.id is None:
        raise ValueError("apply() needs a persisted device; use create() for new ones")
    current = DeviceState(device.state)
    dst = next_state(current, event)
    if dst is None:
        raise InvalidTransition(serial=device.serial, state=current, event=event)
    at = now or utcnow()
    _set_state(device, dst, at)
    row = DeviceEvent(
        device_id=device.id,
        **_scope(device, _sites(session, [device.bench_id])),
        from_state=current.value,
        to_state=dst.value,
        event=event.value,
        actor=actor,
        at=at,
        reason=reason,
        details=details or {},
    )
    session.add(device)
    session.add(row)
    session.flush()
    return row


def create(
    session: Session,
    devices: Sequence[Device],
    event: Event,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> list[DeviceEvent]:
    """Insert new devices in the state ``event`` creates, with one event each.

    Batched (two multi-row INSERTs) so a 10,000-line ship notice imports in seconds.

    :raises InvalidTransition: ``event`` does not create devices.
    """
    dst = next_state(None, event)
    if dst is None:
        raise InvalidTransition(
            serial=devices[0].serial if devices else "?", state=None, event=event
        )
    at = utcnow()
    for device in devices:
        _set_state(device, dst, at)
    session.add_all(devices)
    session.flush()
    sites = _sites(session, {d.bench_id for d in devices})
    rows = [
        DeviceEvent(
            device_id=_id(d),
            **_scope(d, sites),
            from_state=None,
            to_state=dst.value,
            event=event.value,
            actor=actor,
            at=at,
            reason=reason,
            details=details or {},
        )
        for d in devices
    ]
    session.add_all(rows)
    session.flush()
    return rows


def create_many(
    session: Session,
    rows: Sequence[dict[str, Any]],
    event: Event,
    *,
    actor: str,
    reason: str | None = None,
    details: dict[str, Any] | None = None,
) -> list[int]:
    """``create`` for rows given as column values (``serial``, ``vendor``,
    ``mac_addresses``…; no state), as two Core executemany INSERTs without ORM objects:
    about three times cheaper, which is what lets a large import publish in short
    transactions. Returns the new ids in the order of ``rows``.

    :raises InvalidTransition: ``event`` does not create devices.
    """
    dst = next_state(None, event)
    if dst is None:
        raise InvalidTransition(serial=rows[0]["serial"] if rows else "?", state=None, event=event)
    if not rows:
        return []
    at = utcnow()
    devices: Any = Device.__table__  # type: ignore[attr-defined]
    values = [
        {
            **row,
            "state": dst.value,
            "target_state": TARGET_OF.get(dst),
            "state_changed_at": at,
            "created_at": at,
            "updated_at": at,
        }
        for row in rows
    ]
    conn = session.connection()
    ids = [
        int(i)
        for i in conn.execute(
            insert(devices).returning(devices.c.id, sort_by_parameter_order=True), values
        ).scalars()
    ]
    sites = _sites(session, {row.get("bench_id") for row in rows})
    conn.execute(
        insert(DeviceEvent.__table__),  # type: ignore[attr-defined]
        [
            {
                "device_id": device_id,
                "client_id": row.get("client_id"),
                "delivery_id": row.get("delivery_id"),
                "site_id": sites.get(row.get("bench_id")),
                "from_state": None,
                "to_state": dst.value,
                "event": event.value,
                "actor": actor,
                "at": at,
                "reason": reason,
                "details": details or {},
            }
            for device_id, row in zip(ids, rows, strict=True)
        ],
    )
    return ids


def _sites(session: Session, bench_ids: Collection[int | None]) -> dict[int | None, int]:
    """The site of each bench (a bench never changes site): no query when the caller
    holds the bench already (scan-in locks it), one primary-key read otherwise. A batch
    of new laptops has at most a bench or two."""
    sites: dict[int | None, int] = {}
    for bench_id in {b for b in bench_ids if b is not None}:
        bench = session.get(Bench, bench_id)
        if bench is not None:
            sites[bench_id] = bench.site_id
    return sites


def _scope(device: Device, sites: dict[int | None, int]) -> dict[str, int | None]:
    return {
        "client_id": device.client_id,
        "delivery_id": device.delivery_id,
        "site_id": sites.get(device.bench_id),
    }


def _id(device: Device) -> int:
    assert device.id is not None, "flushed devices have ids"
    return device.id


def _set_state(device: Device, dst: DeviceState, at: datetime) -> None:
    device.state = dst
    device.target_state = TARGET_OF.get(dst)
    device.state_changed_at = at
    device.updated_at = at
