"""Ship-notice intake: a vendor's CSV becomes a delivery's EXPECTED devices.

Two formats (docs/intake.md): the generic CSV and the Windows Autopilot hardware-hash
CSV. An import runs in three phases so that a bad file writes nothing:

1. ``parse`` (this module): bytes to rows, pure, no database; every error with its line
   and column.
2. ``intake_plan.plan``: read-only look-ups in bulk (existing serials, asset tags, the
   hardware catalogue) decide, row by row, create / update / unchanged / attach, or an
   error.
3. ``intake_publish``: only when there is no error and it is not a dry run, the writes,
   through ``inventory.lifecycle`` (the one writer of device state); a large file is
   staged, then published in short transactions so that scan-in never waits for it.

Error messages echo serials, MACs and models (so an operator can find the line) but
never hardware hashes or assigned users: those are the teleworker's data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core import csvfile
from core.errors import TooLarge
from inventory import codes
from inventory.schemas import IntakeError, IntakeFormat

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


def error_lines(errors: Sequence[dict[str, Any]]) -> list[str]:
    """``line N, column C: message`` for each error (CLI and docs share the wording)."""
    out = []
    for e in errors:
        where = f"line {e.get('line')}" if e.get("line") is not None else "file"
        if e.get("column"):
            where += f", column {e['column']}"
        out.append(f"{where}: {e.get('message', '')}")
    return out
