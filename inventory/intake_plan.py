"""Phase 2 of a ship-notice import (see ``inventory.intake``): what each row does.

Read-only look-ups in bulk (existing serials, asset tags, the hardware catalogue)
decide, row by row, create / update / unchanged / attach, or an error on the row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session

from core.principal import Principal
from inventory import repository, service
from inventory.intake import Parsed, Row
from inventory.models import Delivery, Device, HardwareModel
from inventory.schemas import IntakeError, IntakeFormat
from inventory.states import DeviceState

MODEL_KEY = "hardware_model"


@dataclass
class Plan:
    delivery: Delivery
    parsed: Parsed
    creates: list[tuple[Row, str]] = field(default_factory=list)  # (row, vendor)
    updates: list[tuple[Row, Device, dict[str, Any]]] = field(default_factory=list)
    attaches: list[tuple[Row, Device, str]] = field(default_factory=list)
    unchanged: int = 0
    models: dict[tuple[str, str], HardwareModel | None] = field(default_factory=dict)

    @property
    def errors(self) -> list[IntakeError]:
        return self.parsed.errors

    def use_model(self, vendor: str, model: str | None, known: HardwareModel | None) -> None:
        if model:
            self.models[(vendor, model)] = known

    def new_models(self) -> list[str]:
        return sorted(f"{v} {m}" for (v, m), row in self.models.items() if row is None)


def plan(
    session: Session,
    delivery: Delivery,
    parsed: Parsed,
    *,
    principal: Principal,
    allow_other_vendor: bool = False,
) -> Plan:
    """Decide what each row does, reading in bulk; writes nothing."""
    result = Plan(delivery=delivery, parsed=parsed)
    catalogue = repository.hardware_models_by_key(session)
    spelling: dict[str, str] = {}
    # The delivery's spelling of its vendor wins, then the catalogue's: "DELL" in a file
    # must not create a second vendor beside "Dell" (serials are unique per vendor).
    for vendor in [delivery.vendor, *(v for v, _ in catalogue)]:
        spelling.setdefault(vendor.casefold(), vendor)
    # Likewise "LATITUDE  7450" is the catalogue's "Latitude 7450", not a new model.
    model_spelling = {(v.casefold(), _fold(m)): m for v, m in catalogue}
    rows = parsed.rows
    existing: dict[tuple[str, str], Device] = {}
    by_serial: dict[str, list[Device]] = {}
    for d in repository.devices_by_serials(session, sorted({r.serial for r in rows})):
        existing[(d.vendor.casefold(), d.serial)] = d
        by_serial.setdefault(d.serial, []).append(d)
    tags = sorted({r.asset_tag for r in rows if r.asset_tag})
    by_tag = {d.asset_tag: d for d in repository.devices_by_asset_tags(session, tags)}
    seen: dict[tuple[str, str], int] = {}
    seen_tags: dict[str, int] = {}
    serial_col, model_col, tag_col = (parsed.column(k) for k in ("serial", "model", "asset_tag"))
    for row in rows:
        given = row.vendor or delivery.vendor
        vendor = spelling.setdefault(given.casefold(), given)
        key = (vendor.casefold(), row.serial)
        if key in seen:
            parsed.error(
                row.line,
                serial_col,
                f"serial {row.serial} appears twice (first on line {seen[key]})",
            )
            continue
        seen[key] = row.line
        if row.vendor is None and not allow_other_vendor:
            other = _under_another_vendor(by_serial.get(row.serial, []), vendor)
            if other is not None:
                parsed.error(
                    row.line, serial_col, _other_vendor_message(row, other, result, principal)
                )
                continue
        if row.asset_tag and row.asset_tag in seen_tags:
            parsed.error(
                row.line,
                tag_col,
                f"asset tag {row.asset_tag} appears twice (first on line "
                f"{seen_tags[row.asset_tag]})",
            )
            continue
        if row.asset_tag:
            seen_tags[row.asset_tag] = row.line
        if row.model:
            row.model = model_spelling.setdefault((key[0], _fold(row.model)), row.model)
        # None until created: a model the catalogue does not know yet.
        model = catalogue.get((vendor, row.model)) if row.model else None
        device = existing.get(key)
        loose = existing.get((service.UNKNOWN_VENDOR, row.serial))
        if device is None and loose is not None and loose.delivery_id is None:
            if loose.state != DeviceState.UNEXPECTED:
                # Scanned before any delivery listed it, then quarantined or rejected: a
                # second record of the same laptop would be worse than asking a human.
                parsed.error(
                    row.line,
                    serial_col,
                    f"serial {row.serial} was scanned as unexpected and is now "
                    f"{loose.state}; resolve it at the bench first",
                )
                continue
            device = loose
        holder = by_tag.get(row.asset_tag) if row.asset_tag else None
        if holder is not None and holder is not device:
            parsed.error(
                row.line, tag_col, f"asset tag {row.asset_tag} is already used by another device"
            )
            continue
        if device is None:
            result.creates.append((row, vendor))
            result.use_model(vendor, row.model, model)
        elif device.delivery_id is None and device.state == DeviceState.UNEXPECTED:
            result.attaches.append((row, device, vendor))
            result.use_model(vendor, row.model, model)
        elif device.delivery_id != delivery.id or device.client_id != delivery.client_id:
            # Says nothing of the other delivery: it may be another company's.
            parsed.error(
                row.line,
                serial_col,
                f"serial {row.serial} ({vendor}) is already registered to another delivery",
            )
        elif (
            row.model
            and device.hardware_model_id is not None
            and (model is None or model.id != device.hardware_model_id)
        ):
            was = repository.get_hardware_model_by_id(session, device.hardware_model_id)
            parsed.error(
                row.line,
                model_col,
                f"serial {row.serial} is already expected in this delivery as "
                f"{was.model if was else 'another model'}, not {row.model}",
            )
        else:
            changes = _changes(row, device, vendor)
            if changes:
                result.updates.append((row, device, changes))
                result.use_model(vendor, row.model, model)
            else:
                result.unchanged += 1
    return result


def _under_another_vendor(known: list[Device], vendor: str) -> Device | None:
    """A device with this serial under a vendor other than ``vendor`` (scanned-first
    laptops, whose vendor is not known yet, do not count)."""
    for d in known:
        if d.vendor.casefold() not in (vendor.casefold(), service.UNKNOWN_VENDOR):
            return d
    return None


def _other_vendor_message(row: Row, other: Device, result: Plan, principal: Principal) -> str:
    """Why a line without a vendor is refused when its serial exists under another
    vendor: it would become a second laptop that the bench cannot tell from the first
    ("matches devices of several vendors"). Names the other delivery only to a caller
    who may see it."""
    delivery = result.delivery
    if principal.sees_client(other.client_id):
        known = f"a {other.vendor} laptop" + (
            f" (order {other.order_reference})" if other.order_reference else ""
        )
    else:
        known = "a laptop of another vendor"
    kind = "an Autopilot file" if result.parsed.format is IntakeFormat.AUTOPILOT else "this line"
    return (
        f"serial {row.serial} is already {known}; {kind} names no vendor, so it would "
        f"become a second laptop under this delivery's vendor ({delivery.vendor}) that "
        "the bench cannot tell apart. Import it into the delivery that lists this "
        "serial, or, if it really is another laptop, retry with allow_other_vendor"
    )


def _fold(name: str) -> str:
    return " ".join(name.split()).casefold()


_DETAIL_FIELDS = (
    "order_reference",
    "carton_id",
    "asset_tag",
    "windows_product_id",
    "hardware_hash",
    "group_tag",
    "assigned_user",
)


def _changes(row: Row, device: Device, vendor: str) -> dict[str, Any]:
    """Fields this row gives that differ from the device: a later file (say, the
    Autopilot hashes after the vendor's CSV) fills details in; blanks never erase."""
    out: dict[str, Any] = {}
    for name in _DETAIL_FIELDS:
        value = getattr(row, name)
        if value is not None and value != getattr(device, name):
            out[name] = value
    if row.macs is not None and sorted(row.macs) != sorted(device.mac_addresses or []):
        out["mac_addresses"] = row.macs
    if row.model and device.hardware_model_id is None:
        # Resolved to an id once the catalogue entry exists (see _execute).
        out[MODEL_KEY] = (vendor, row.model)
    return out
