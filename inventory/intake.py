"""Ship-notice intake: a vendor's CSV becomes a delivery's EXPECTED devices.

Two formats (docs/intake.md): the generic CSV and the Windows Autopilot hardware-hash
CSV. An import runs in three phases so that a bad file writes nothing:

1. ``parse``: bytes to rows, pure, no database; every error with its line and column.
2. ``plan``: read-only look-ups in bulk (existing serials, asset tags, the hardware
   catalogue) decide, row by row, create / update / unchanged / attach, or an error.
3. ``_execute``: only when there is no error and it is not a dry run, batched writes
   through ``inventory.lifecycle`` (the one writer of device state).

Error messages echo serials, MACs and models (so an operator can find the line) but
never hardware hashes or assigned users: those are the teleworker's data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core import csvfile
from core.errors import Conflict, TooLarge
from core.principal import Principal
from core.timeutil import utcnow
from inventory import codes, lifecycle, repository, service
from inventory.errors import ImportRejected
from inventory.models import Delivery, Device, HardwareModel
from inventory.schemas import ImportSummary, IntakeError, IntakeFormat
from inventory.states import DeviceState, Event

MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 100_000
# A garbage file could yield a million errors; the first thousand are enough to act on.
MAX_LISTED_ERRORS = 1000
MAX_MACS = 16
MAX_HASH_LENGTH = 16_384
_BATCH = 2000

_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_MAC_SPLIT = re.compile(r"[\s|]+")
_HEX12 = re.compile(r"^[0-9a-f]{12}$")

# Canonical field -> (max length, accepted header spellings after _header_key()).
_GENERIC_COLUMNS: dict[str, tuple[int, tuple[str, ...]]] = {
    "serial": (64, ("serial", "serialnumber", "serialno", "servicetag")),
    "vendor": (64, ("vendor", "manufacturer", "make")),
    "model": (128, ("model", "modelname")),
    "macs": (2000, ("macs", "mac", "macaddress", "macaddresses")),
    "order_reference": (64, ("orderreference", "order", "orderref", "ponumber", "po")),
    "carton_id": (64, ("cartonid", "carton", "cartonnumber", "boxid")),
    "asset_tag": (64, ("assettag", "asset")),
}
_GENERIC_REQUIRED = ("serial", "model")
_AUTOPILOT_COLUMNS: dict[str, tuple[int, tuple[str, ...]]] = {
    "serial": (64, ("deviceserialnumber",)),
    "windows_product_id": (64, ("windowsproductid",)),
    "hardware_hash": (MAX_HASH_LENGTH, ("hardwarehash",)),
    "group_tag": (128, ("grouptag",)),
    "assigned_user": (256, ("assigneduser",)),
}
_AUTOPILOT_REQUIRED = ("serial", "hardware_hash")
_DISPLAY = {"serial": "Device Serial Number", "hardware_hash": "Hardware Hash"}
# Checked by the scan-in rule (inventory.codes).
_CODES = frozenset({"serial", "asset_tag"})
# Values never echoed in an error message.
_PRIVATE = frozenset({"hardware_hash", "assigned_user"})


@dataclass
class Row:
    """One data line, validated; ``None`` means "not given by this file"."""

    line: int
    serial: str
    vendor: str | None = None
    model: str | None = None
    macs: list[str] | None = None
    order_reference: str | None = None
    carton_id: str | None = None
    asset_tag: str | None = None
    windows_product_id: str | None = None
    hardware_hash: str | None = None
    group_tag: str | None = None
    assigned_user: str | None = None


@dataclass
class Parsed:
    format: IntakeFormat
    rows: list[Row] = field(default_factory=list)
    errors: list[IntakeError] = field(default_factory=list)
    # Canonical field -> column name as written in the header, for error messages.
    columns: dict[str, str] = field(default_factory=dict)
    data_rows: int = 0

    def error(self, line: int | None, column: str | None, message: str) -> None:
        self.errors.append(IntakeError(line=line, column=column, message=message))

    def column(self, key: str) -> str:
        return self.columns.get(key, key)


# Phase 1: parsing.
decode = csvfile.decode  # kept under this name: other importers and tests use it


def _header_key(name: str) -> str:
    """``Order_Reference``, ``order reference`` and ``ORDER-REFERENCE`` are one column."""
    return re.sub(r"[\s_\-.]+", "", name.strip().lower())


def parse(data: bytes, fmt: IntakeFormat | None = None) -> Parsed:
    """Read a ship notice. ``fmt=None`` detects the format from the header.

    Never raises for a bad file: errors are collected in ``Parsed.errors``.

    :raises TooLarge: more than ``MAX_BYTES`` or ``MAX_ROWS``.
    """
    if len(data) > MAX_BYTES:
        raise TooLarge(f"file is {len(data)} bytes; the limit is {MAX_BYTES} (split it)")
    parsed = Parsed(format=fmt or IntakeFormat.GENERIC)
    records = csvfile.read_records(data, lambda line, msg: parsed.error(line, None, msg))
    header = next(records, None)
    if header is None:
        if not parsed.errors:
            parsed.error(1, None, "the file has no header line")
        return parsed
    line, names = header
    columns = _read_header(parsed, line, names, fmt)
    if parsed.errors:
        return parsed  # rows cannot be read against a broken header
    for line, cells in records:
        parsed.data_rows += 1
        if parsed.data_rows > MAX_ROWS:
            raise TooLarge(f"more than {MAX_ROWS} rows; split the file")
        if len(parsed.errors) > MAX_LISTED_ERRORS:
            continue  # still count rows for the limit above
        row = _read_row(parsed, line, cells, names, columns)
        if row is not None:
            parsed.rows.append(row)
    return parsed


def _read_header(
    parsed: Parsed, line: int, names: list[str], fmt: IntakeFormat | None
) -> list[str | None]:
    # A spreadsheet's trailing delimiter makes empty names at the end: not columns.
    while names and not names[-1].strip():
        names.pop()
    keys = [_header_key(n) for n in names]
    if fmt is None:
        autopilot = {"hardwarehash", "deviceserialnumber"} & set(keys)
        parsed.format = IntakeFormat.AUTOPILOT if autopilot else IntakeFormat.GENERIC
    if parsed.format is IntakeFormat.AUTOPILOT:
        spec, required = _AUTOPILOT_COLUMNS, _AUTOPILOT_REQUIRED
    else:
        spec, required = _GENERIC_COLUMNS, _GENERIC_REQUIRED
    by_alias = {alias: canon for canon, (_, aliases) in spec.items() for alias in aliases}
    columns: list[str | None] = []
    for name, key in zip(names, keys, strict=True):
        canon = by_alias.get(key)
        label = name.strip()[:64]  # a garbage header must not make a huge error
        if not key:
            parsed.error(line, label, "empty column name")
        elif canon is None:
            known = ", ".join(spec)
            parsed.error(line, label, f"unknown column (expected: {known})")
        elif canon in parsed.columns:
            parsed.error(line, label, f"column '{canon}' appears twice")
        else:
            parsed.columns[canon] = label
        columns.append(canon)
    for canon in required:
        if canon not in parsed.columns:
            spelled = _DISPLAY.get(canon, canon) if spec is _AUTOPILOT_COLUMNS else canon
            parsed.error(line, spelled, f"required column '{spelled}' is missing")
    return columns


def _read_row(
    parsed: Parsed, line: int, cells: list[str], names: list[str], columns: list[str | None]
) -> Row | None:
    # Spreadsheets often end every line with a delimiter: tolerate empty extra cells.
    while len(cells) > len(names) and not cells[-1].strip():
        cells = cells[:-1]
    if len(cells) != len(names):
        parsed.error(line, None, f"expected {len(names)} fields, found {len(cells)}")
        return None
    spec = _AUTOPILOT_COLUMNS if parsed.format is IntakeFormat.AUTOPILOT else _GENERIC_COLUMNS
    values: dict[str, str] = {}
    ok = True
    for canon, raw in zip(columns, cells, strict=True):
        if canon is None:
            continue
        value = raw.strip()
        limit = spec[canon][0]
        where = parsed.column(canon)
        if len(value) > limit:
            parsed.error(line, where, f"longer than {limit} characters ({len(value)})")
            ok = False
        elif value and not value.isprintable() and canon not in _CODES:
            # (Codes get the scan-in rule's own message, which names the character.)
            parsed.error(line, where, "contains control characters")
            ok = False
        else:
            values[canon] = value
    if not ok:
        return None
    errors_before = len(parsed.errors)
    serial = _code(parsed, line, "serial", values.get("serial", ""), required=True)
    row = Row(line=line, serial=serial or "")
    if parsed.format is IntakeFormat.AUTOPILOT:
        _autopilot_values(parsed, row, values)
    else:
        _generic_values(parsed, row, values)
    return row if len(parsed.errors) == errors_before else None


def _generic_values(parsed: Parsed, row: Row, values: dict[str, str]) -> None:
    row.vendor = values.get("vendor") or None
    row.model = values.get("model") or None
    if row.model is None:
        parsed.error(row.line, parsed.column("model"), "model is empty")
    if values.get("macs"):
        row.macs = _macs(parsed, row.line, values["macs"])
    row.order_reference = values.get("order_reference") or None
    row.carton_id = values.get("carton_id") or None
    if values.get("asset_tag"):
        row.asset_tag = _code(parsed, row.line, "asset_tag", values["asset_tag"], required=False)


def _autopilot_values(parsed: Parsed, row: Row, values: dict[str, str]) -> None:
    row.windows_product_id = values.get("windows_product_id") or None
    hw_hash = values.get("hardware_hash", "")
    if not hw_hash:
        parsed.error(row.line, parsed.column("hardware_hash"), "hardware hash is empty")
    elif not _BASE64.match(hw_hash):
        parsed.error(row.line, parsed.column("hardware_hash"), "hardware hash is not base64")
    else:
        row.hardware_hash = hw_hash
    row.group_tag = values.get("group_tag") or None
    row.assigned_user = values.get("assigned_user") or None


def _code(parsed: Parsed, line: int, key: str, raw: str, *, required: bool) -> str | None:
    """A serial or asset tag, by the scan-in rule (``inventory.codes``): a laptop the
    import accepts is one the bench can scan."""
    label = key.replace("_", " ")
    if not codes.normalize(raw):
        if required:
            parsed.error(line, parsed.column(key), f"{label} is empty")
        return None
    why = codes.problem(raw, label=label)
    if why is not None:
        parsed.error(line, parsed.column(key), why)
        return None
    return codes.normalize(raw)


def normalize_mac(raw: str) -> str | None:
    """``AA-BB-CC-DD-EE-FF``, ``aabb.ccdd.eeff`` or ``aabbccddeeff`` to
    ``aa:bb:cc:dd:ee:ff``; None when it is not a MAC address."""
    text = raw.strip().lower()
    if re.fullmatch(r"[0-9a-f]{2}([:-])[0-9a-f]{2}(\1[0-9a-f]{2}){4}", text):
        digits = re.sub(r"[:-]", "", text)
    elif re.fullmatch(r"[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}", text):
        digits = text.replace(".", "")
    else:
        digits = text
    if not _HEX12.match(digits):
        return None
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


def _macs(parsed: Parsed, line: int, raw: str) -> list[str] | None:
    out: list[str] = []
    for part in _MAC_SPLIT.split(raw.strip()):
        mac = normalize_mac(part)
        if mac is None:
            parsed.error(line, parsed.column("macs"), f"'{part[:40]}' is not a MAC address")
            return None
        if mac not in out:
            out.append(mac)
    if len(out) > MAX_MACS:
        parsed.error(line, parsed.column("macs"), f"more than {MAX_MACS} MAC addresses")
        return None
    return out


# Phase 2: planning against the database (read-only).
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


_MODEL_KEY = "hardware_model"
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
        out[_MODEL_KEY] = (vendor, row.model)
    return out


# Phase 3: the import itself.
def import_ship_notice(
    session: Session,
    delivery_id: int,
    data: bytes,
    principal: Principal,
    *,
    fmt: IntakeFormat | None = None,
    dry_run: bool = False,
    allow_other_vendor: bool = False,
) -> ImportSummary:
    """Import a ship notice into a delivery as EXPECTED devices, all or nothing.

    A dry run answers what would happen, errors included, and writes nothing.

    :raises DeliveryNotFound: unknown delivery, or another company's for a client-bound
        caller.
    :raises TooLarge: over ``MAX_BYTES`` or ``MAX_ROWS``.
    :raises ImportRejected: (not on a dry run) any error; nothing is written.
    :raises Conflict: another import wrote the same serials at the same moment.
    """
    delivery = service.get_delivery(session, delivery_id, principal)
    parsed = parse(data, fmt)
    # Rows with errors were left out of parsed.rows; the rest are still checked against
    # the database so that one round trip reports every error in the file.
    result = plan(
        session, delivery, parsed, principal=principal, allow_other_vendor=allow_other_vendor
    )
    errors = sorted(parsed.errors, key=lambda e: e.line or 0)[:MAX_LISTED_ERRORS]
    if errors and not dry_run:
        raise ImportRejected([e.model_dump() for e in errors])
    # A file with errors would be refused whole: a dry run says so and counts nothing
    # (saying "2 created" beside "would be rejected" told two things at once).
    ok = not errors
    summary = ImportSummary(
        delivery_id=delivery_id,
        format=parsed.format,
        dry_run=dry_run,
        rows=parsed.data_rows,
        rejected=not ok,
        created=len(result.creates) if ok else 0,
        updated=len(result.updates) if ok else 0,
        unchanged=result.unchanged if ok else 0,
        attached=len(result.attaches) if ok else 0,
        new_hardware_models=result.new_models() if ok else [],
        errors=errors,
    )
    if dry_run:
        return summary
    try:
        with session.begin_nested():
            _execute(session, result, principal)
    except IntegrityError as e:
        raise Conflict("another import wrote some of these serials at the same time; retry") from e
    return summary


def _execute(session: Session, result: Plan, principal: Principal) -> None:
    delivery = result.delivery
    for key, known in list(result.models.items()):
        if known is None:
            result.models[key] = service.get_or_create_hardware_model(session, *key)
    fmt = result.parsed.format.value
    details = {"delivery_id": delivery.id, "format": fmt}
    creates = [_new_device(row, vendor, result) for row, vendor in result.creates]
    for i in range(0, len(creates), _BATCH):
        lifecycle.create(
            session,
            creates[i : i + _BATCH],
            Event.EXPECT,
            actor=principal.actor,
            reason="ship notice import",
            details=details,
        )
    now = utcnow()
    for _, same, changes in result.updates:
        for name, value in changes.items():
            if name == _MODEL_KEY:
                model = result.models[value]
                same.hardware_model_id = model.id if model else None
            else:
                setattr(same, name, value)
        same.updated_at = now
        session.add(same)
    for row, loose, vendor in result.attaches:
        assert loose.id is not None
        device = repository.get_device_for_update(session, loose.id)
        if device is None or device.state != DeviceState.UNEXPECTED:
            raise Conflict(f"device {row.serial} changed during the import; retry")
        template = _new_device(row, vendor, result)
        for name in (
            "vendor",
            "hardware_model_id",
            "client_id",
            "delivery_id",
            "order_reference",
            "carton_id",
            "asset_tag",
            "windows_product_id",
            "hardware_hash",
            "group_tag",
            "assigned_user",
        ):
            setattr(device, name, getattr(template, name))
        if template.mac_addresses:
            device.mac_addresses = template.mac_addresses
        lifecycle.apply(
            session,
            device,
            Event.ATTACH,
            actor=principal.actor,
            reason="listed by a ship notice",
            details=details,
        )
    session.flush()


def _new_device(row: Row, vendor: str, result: Plan) -> Device:
    delivery = result.delivery
    model = result.models.get((vendor, row.model)) if row.model else None
    return Device(
        serial=row.serial,
        vendor=vendor,
        hardware_model_id=model.id if model else None,
        mac_addresses=row.macs or [],
        asset_tag=row.asset_tag,
        client_id=delivery.client_id,
        delivery_id=delivery.id,
        order_reference=row.order_reference or delivery.order_reference,
        carton_id=row.carton_id,
        windows_product_id=row.windows_product_id,
        hardware_hash=row.hardware_hash,
        group_tag=row.group_tag,
        assigned_user=row.assigned_user,
    )


def error_lines(errors: Sequence[dict[str, Any]]) -> list[str]:
    """``line N, column C: message`` for each error (CLI and docs share the wording)."""
    out = []
    for e in errors:
        where = f"line {e.get('line')}" if e.get("line") is not None else "file"
        if e.get("column"):
            where += f", column {e['column']}"
        out.append(f"{where}: {e.get('message', '')}")
    return out
