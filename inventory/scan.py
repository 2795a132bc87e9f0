"""Bench scan-in: a scanned code becomes a received, quarantined or unexpected laptop in a
bench slot, or is recognised as already scanned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core.errors import Conflict
from core.principal import Principal
from inventory import codes, hooks, lifecycle, repository
from inventory.errors import BenchNotFound
from inventory.models import Bench, Device
from inventory.schemas import ScanOutcome, ScanRequest
from inventory.slots import pick_slot
from inventory.states import DeviceState, Event

UNKNOWN_VENDOR = "unknown"


@dataclass
class ScanDone:
    outcome: ScanOutcome
    device: Device
    message: str

    @property
    def attention(self) -> bool:
        return self.outcome is not ScanOutcome.RECEIVED


def scan(session: Session, body: ScanRequest, principal: Principal) -> ScanDone:
    """Scan a laptop in at a bench slot.

    Expected → RECEIVED (or QUARANTINED when damaged); unknown → UNEXPECTED; a second
    scan changes nothing and says so. Safe under concurrent scans of the same laptop:
    the device row is locked (PostgreSQL) or the write transaction is exclusive
    (SQLite), and a racing insert of the same unknown serial is caught by the unique
    constraint and read back.

    A laptop that takes a slot (received, unexpected) gets a free one, or the slot
    asked for. The bench row is locked first and its occupied slots read after the
    lock, so concurrent scans at one bench never share a slot; the database's unique
    index on held slots backs this.

    :raises InvalidCode: not a scannable code (``inventory.codes``); nothing written.
    :raises BenchNotFound: unknown bench.
    :raises InvalidInput: slot outside the bench.
    :raises SlotTaken: the slot asked for holds another laptop.
    :raises BenchFull: no free slot left.
    """
    code = codes.scannable(body.code)
    bench = repository.lock_bench(session, body.bench_id)
    if bench is None or bench.id is None:
        raise BenchNotFound(str(body.bench_id))
    found = repository.find_devices_by_code(session, code, for_update=True)
    if len(found) > 1:
        expected = [d for d in found if d.state == DeviceState.EXPECTED]
        found = expected[:1] if len(expected) == 1 else found
    if len(found) > 1:
        vendors = ", ".join(sorted(d.vendor for d in found))
        raise Conflict(f"serial {code} matches devices of several vendors ({vendors})")
    if not found:
        busy = repository.occupied_slots(session, bench.id)
        return _scan_unknown(session, code, bench, busy, body, principal)
    device = found[0]
    state = DeviceState(device.state)
    if body.model:
        device.observed_model = body.model[:128]
    if state is DeviceState.EXPECTED:
        slot = pick_slot(bench, repository.occupied_slots(session, bench.id), body.slot)
        device.bench_id, device.slot = bench.id, slot
        if body.damaged:
            _quarantine(session, device, body, principal, {"bench_id": bench.id, "slot": slot})
            return ScanDone(ScanOutcome.QUARANTINED, device, f"{code} quarantined: damaged")
        lifecycle.apply(
            session,
            device,
            Event.RECEIVE,
            actor=principal.actor,
            details={"bench_id": bench.id, "slot": slot},
        )
        # Provisioning queues its run here when the client has an image and a
        # configuration (its hook); the worker sees it only once this transaction commits.
        hooks.received(session, device, actor=principal.actor)
        return ScanDone(ScanOutcome.RECEIVED, device, f"{code} received at slot {slot}")
    if body.damaged and state is not DeviceState.QUARANTINED:
        _quarantine(session, device, body, principal)
        return ScanDone(ScanOutcome.QUARANTINED, device, f"{code} quarantined: damaged")
    return ScanDone(ScanOutcome.ALREADY, device, f"{code} already scanned ({state.value})")


def _scan_unknown(
    session: Session,
    code: str,
    bench: Bench,
    busy: set[int],
    body: ScanRequest,
    principal: Principal,
) -> ScanDone:
    slot = pick_slot(bench, busy, body.slot)
    device = Device(
        serial=code,
        vendor=UNKNOWN_VENDOR,
        bench_id=bench.id,
        slot=slot,
        observed_model=body.model,
        mac_addresses=[],
    )
    try:
        with session.begin_nested():
            lifecycle.create(
                session,
                [device],
                Event.DISCOVER,
                actor=principal.actor,
                reason="scanned, not in any delivery",
                details={"bench_id": bench.id, "slot": slot},
            )
    except IntegrityError:
        # Another technician scanned the same unknown serial a moment earlier.
        again = repository.find_devices_by_code(session, code)
        if not again:
            raise
        return ScanDone(ScanOutcome.ALREADY, again[0], f"{code} already scanned (unexpected)")
    if body.damaged:
        _quarantine(session, device, body, principal)
        return ScanDone(ScanOutcome.QUARANTINED, device, f"{code} unexpected and damaged")
    return ScanDone(
        ScanOutcome.UNEXPECTED,
        device,
        f"{code} UNEXPECTED at slot {slot}: no delivery lists it; attach or reject it",
    )


def _quarantine(
    session: Session,
    device: Device,
    body: ScanRequest,
    principal: Principal,
    details: dict[str, Any] | None = None,
) -> None:
    """A laptop scanned as damaged: quarantined with the technician's reason."""
    device.quarantine_reason = body.reason or "damaged at scan-in"
    lifecycle.apply(
        session,
        device,
        Event.QUARANTINE,
        actor=principal.actor,
        reason=device.quarantine_reason,
        details=details,
    )
