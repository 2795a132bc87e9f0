"""Bulk files: dispatch assignments and carrier status reports.

Same rules as the ship-notice intake (docs/intake.md): every error with its line and
column, all or nothing, ``dry_run`` checks without writing. Records are read by the
product's one CSV reader (``core.csvfile.read_records``: encodings, separator, line
numbers). Error messages name the column, never the value of a personal field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlmodel import Session

from core import csvfile
from core.errors import TooLarge
from core.principal import Principal
from inventory import repository as inventory_repo
from inventory import service as inventory
from inventory.models import Device
from inventory.states import DeviceState
from logistics import repository, service
from logistics.errors import FileRejected
from logistics.schemas import (
    CarrierImportSummary,
    DispatchImportSummary,
    ImportLine,
    TeleworkerIn,
)

MAX_BYTES = 5 * 1024 * 1024
MAX_ROWS = 20_000
MAX_LISTED_ERRORS = 1000

# Canonical column -> (max length, required, header spellings after _key()).
DISPATCH_COLUMNS: dict[str, tuple[int, bool, tuple[str, ...]]] = {
    "serial": (64, True, ("serial", "serialnumber", "assettag", "devicesserialnumber")),
    "vendor": (64, False, ("vendor", "manufacturer")),
    "name": (200, True, ("name", "teleworker", "fullname", "recipient")),
    "email": (254, True, ("email", "mail", "emailaddress")),
    "phone": (40, False, ("phone", "telephone", "mobile", "phonenumber")),
    "address": (500, True, ("address", "deliveryaddress", "shippingaddress")),
    "carrier": (64, True, ("carrier",)),
    "tracking": (128, True, ("tracking", "trackingnumber", "trackingno")),
    "language": (8, False, ("language", "lang", "langue")),
}
CARRIER_COLUMNS: dict[str, tuple[int, bool, tuple[str, ...]]] = {
    "tracking": (128, True, ("tracking", "trackingnumber", "trackingno")),
    "status": (32, True, ("status", "state")),
    "date": (40, False, ("date", "at", "timestamp", "deliveredat")),
    "reason": (1000, False, ("reason", "comment")),
}
# Whose values are personal: an error says what is wrong with them, never what they were.
_PERSONAL = frozenset({"name", "email", "phone", "address"})
_FIELD_PROBLEM = {"email": "not a valid e-mail address", "language": "fr or en"}


def _key(name: str) -> str:
    return re.sub(r"[\s_\-.]+", "", name.strip().lower())


@dataclass
class Sheet:
    """A decoded CSV: rows as ``{column: value}`` with their physical line numbers."""

    rows: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    errors: list[ImportLine] = field(default_factory=list)
    header: dict[str, str] = field(default_factory=dict)  # canonical -> as written

    def error(self, line: int | None, column: str | None, message: str) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            shown = self.header.get(column, column) if column else None
            self.errors.append(ImportLine(line=line, column=shown, message=message))


def read_sheet(data: bytes, spec: dict[str, tuple[int, bool, tuple[str, ...]]]) -> Sheet:
    """Parse ``data`` against ``spec``. Never raises for a bad file (errors collected).

    :raises TooLarge: over ``MAX_BYTES`` or ``MAX_ROWS``.
    """
    sheet = Sheet()
    if len(data) > MAX_BYTES:
        raise TooLarge(f"file is {len(data)} bytes; the limit is {MAX_BYTES} (split it)")
    by_alias = {a: canon for canon, (_, _, aliases) in spec.items() for a in aliases}
    names: list[str] | None = None
    columns: list[str | None] = []
    for line, cells in csvfile.read_records(data, lambda ln, msg: sheet.error(ln, None, msg)):
        if names is None:
            names = _header(sheet, line, cells, spec, by_alias, columns)
            if sheet.errors:
                return sheet
            continue
        if len(sheet.rows) >= MAX_ROWS:
            raise TooLarge(f"more than {MAX_ROWS} rows; split the file")
        while len(cells) > len(names) and not cells[-1].strip():
            cells = cells[:-1]
        if len(cells) != len(names):
            sheet.error(line, None, f"expected {len(names)} fields, found {len(cells)}")
            continue
        values: dict[str, str] = {}
        for canon, raw in zip(columns, cells, strict=True):
            if canon is None:
                continue
            value, limit = raw.strip(), spec[canon][0]
            if len(value) > limit:
                sheet.error(line, canon, f"longer than {limit} characters")
            elif value and not value.isprintable():
                sheet.error(line, canon, "contains control characters")
            elif not value and spec[canon][1]:
                sheet.error(line, canon, "required value is empty")
            else:
                values[canon] = value
        sheet.rows.append((line, values))
    if names is None and not sheet.errors:
        sheet.error(1, None, "the file has no header line")
    return sheet


def _header(
    sheet: Sheet,
    line: int,
    cells: list[str],
    spec: dict[str, tuple[int, bool, tuple[str, ...]]],
    by_alias: dict[str, str],
    columns: list[str | None],
) -> list[str]:
    while cells and not cells[-1].strip():
        cells.pop()
    for name in cells:
        canon = by_alias.get(_key(name))
        if canon is None:
            sheet.error(line, name.strip(), f"unknown column (expected: {', '.join(spec)})")
        elif canon in sheet.header:
            sheet.error(line, name.strip(), f"column '{canon}' appears twice")
        else:
            sheet.header[canon] = name.strip()
        columns.append(canon)
    for canon, (_, required, _) in spec.items():
        if required and canon not in sheet.header:
            sheet.error(line, canon, f"required column '{canon}' is missing")
    return cells


def _reject_or_summarise(sheet: Sheet, dry_run: bool) -> None:
    if sheet.errors and not dry_run:
        raise FileRejected([e.model_dump() for e in sheet.errors])


# Dispatch assignments.
def import_dispatch(
    session: Session, data: bytes, principal: Principal, *, dry_run: bool
) -> DispatchImportSummary:
    """Dispatch every laptop of the file, or none.

    :raises FileRejected: any error (422, every error listed), unless ``dry_run``.
    :raises TooLarge: over the size or row limit.
    """
    sheet = read_sheet(data, DISPATCH_COLUMNS)
    # Rows with value errors are skipped by the plan, which adds what only the database
    # knows (unknown serial, not READY), so one pass reports every error of the file.
    planned = _plan_dispatch(session, sheet, principal)
    _reject_or_summarise(sheet, dry_run)
    dispatched = 0
    if not dry_run and not sheet.errors:
        for device, person_in, carrier, tracking in planned:
            assert device.id is not None and device.client_id is not None
            locked = service.lock_device(session, device.id, principal)
            person = service.upsert_teleworker(session, device.client_id, person_in)
            service.ship(
                session, locked, person, carrier=carrier, tracking=tracking, principal=principal
            )
            dispatched += 1
    return DispatchImportSummary(
        dry_run=dry_run,
        rows=len(sheet.rows),
        rejected=bool(sheet.errors),
        dispatched=dispatched,
        would_dispatch=len(planned) if dry_run and not sheet.errors else 0,
        errors=sheet.errors,
    )


def _plan_dispatch(
    session: Session, sheet: Sheet, principal: Principal
) -> list[tuple[Device, TeleworkerIn, str, str]]:
    planned = []
    seen: dict[int, int] = {}
    for line, values in sheet.rows:
        if "serial" not in values:
            continue
        person = _person(sheet, line, values)
        code = inventory.normalize_code(values["serial"])
        device = _device(sheet, session, line, code, values.get("vendor"), principal)
        if device is None or person is None:
            continue
        assert device.id is not None
        if device.id in seen:
            sheet.error(line, "serial", f"device {code} already on line {seen[device.id]}")
            continue
        seen[device.id] = line
        if device.state != DeviceState.READY:
            sheet.error(
                line,
                "serial",
                f"device {code} is {device.state}; only ready laptops can be dispatched",
            )
            continue
        if "carrier" in values and "tracking" in values:
            planned.append((device, person, values["carrier"], values["tracking"]))
    return planned


def _person(sheet: Sheet, line: int, values: dict[str, str]) -> TeleworkerIn | None:
    if not all(k in values for k in ("name", "email", "address")):
        return None
    try:
        return TeleworkerIn(
            name=values["name"],
            email=values["email"],
            phone=values.get("phone") or None,
            address=values["address"],
            language=(values.get("language") or "fr").strip().lower(),
        )
    except ValueError as e:
        # Pydantic's message may quote the input; say which field only.
        for err in getattr(e, "errors", list)():
            where = str(err.get("loc", ("?",))[0])
            sheet.error(line, where, _FIELD_PROBLEM.get(where, "invalid value"))
        return None


def _device(
    sheet: Sheet,
    session: Session,
    line: int,
    code: str,
    vendor: str | None,
    principal: Principal,
) -> Device | None:
    found = [
        d
        for d in inventory_repo.find_devices_by_code(session, code)
        if principal.sees_client(d.client_id) and (vendor is None or d.vendor == vendor)
    ]
    if not found:
        sheet.error(line, "serial", f"device {code} not found")
        return None
    if len(found) > 1:
        sheet.error(line, "vendor", f"serial {code} exists for several vendors; add a vendor")
        return None
    return found[0]


# Carrier status reports.
_DELIVERED = frozenset({"delivered", "livre", "livré", "delivere"})
_RETURNED = frozenset({"returned", "return", "retour", "returnedtosender"})


def import_carrier_status(
    session: Session, data: bytes, principal: Principal, *, dry_run: bool
) -> CarrierImportSummary:
    """Apply a carrier's status file (tracking, status, optional date and reason).

    :raises FileRejected: any error (422), unless ``dry_run``.
    :raises TooLarge: over the size or row limit.
    """
    sheet = read_sheet(data, CARRIER_COLUMNS)
    actions, unchanged = _plan_carrier(session, sheet, principal)
    _reject_or_summarise(sheet, dry_run)
    if sheet.errors:  # a dry run of a file that would be refused whole: nothing counts
        actions, unchanged = [], 0
    delivered = sum(1 for _, kind in actions if kind == "delivered")
    if not dry_run:
        for run, _ in actions:
            run()
    return CarrierImportSummary(
        dry_run=dry_run,
        rows=len(sheet.rows),
        rejected=bool(sheet.errors),
        delivered=delivered,
        returned=len(actions) - delivered,
        unchanged=unchanged,
        errors=sheet.errors,
    )


def _plan_carrier(
    session: Session, sheet: Sheet, principal: Principal
) -> tuple[list[tuple[Callable[[], object], str]], int]:
    trackings = [v["tracking"] for _, v in sheet.rows if "tracking" in v]
    shipments = repository.shipments_by_tracking(session, trackings)
    actions: list[tuple[Callable[[], object], str]] = []
    unchanged = 0
    seen: set[int] = set()
    for line, values in sheet.rows:
        if "tracking" not in values or "status" not in values:
            continue
        shipment = shipments.get(values["tracking"])
        if shipment is None or not principal.sees_client(shipment.client_id):
            sheet.error(line, "tracking", "no shipment with this tracking number")
            continue
        status = _key(values["status"])
        at = _date(sheet, line, values.get("date"))
        if status not in _DELIVERED | _RETURNED:
            sheet.error(line, "status", "expected delivered or returned")
            continue
        if at is False:
            continue
        device = inventory_repo.get_device(session, shipment.device_id)
        assert device is not None and device.id is not None
        if device.id in seen:
            sheet.error(line, "tracking", "this shipment appears twice in the file")
            continue
        seen.add(device.id)
        when = at if isinstance(at, datetime) else None
        state = DeviceState(device.state)
        device_id = device.id
        if status in _DELIVERED:
            if state is DeviceState.DELIVERED:
                unchanged += 1
            elif state is DeviceState.DISPATCHED:
                actions.append((_bind_deliver(session, device_id, principal, when), "delivered"))
            else:
                sheet.error(
                    line, "status", f"device {device.serial} is {state}; cannot be delivered"
                )
        else:
            reason = values.get("reason") or "returned by the carrier"
            if state is DeviceState.RETURNED:
                unchanged += 1
            elif state in (DeviceState.DISPATCHED, DeviceState.DELIVERED):
                actions.append(
                    (_bind_return(session, device_id, principal, when, reason), "returned")
                )
            else:
                sheet.error(
                    line, "status", f"device {device.serial} is {state}; cannot be returned"
                )
    return actions, unchanged


def _bind_deliver(
    session: Session, device_id: int, principal: Principal, at: datetime | None
) -> Callable[[], object]:
    return lambda: service.deliver(session, device_id, principal, at=at)


def _bind_return(
    session: Session, device_id: int, principal: Principal, at: datetime | None, reason: str
) -> Callable[[], object]:
    return lambda: service.return_device(session, device_id, principal, reason=reason, at=at)


def _date(sheet: Sheet, line: int, raw: str | None) -> datetime | bool | None:
    """The row's date (UTC when no zone is given); ``False`` after recording an error."""
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        sheet.error(line, "date", "expected an ISO date such as 2026-11-23T14:05:00Z")
        return False
    return value if value.tzinfo else value.replace(tzinfo=UTC)
