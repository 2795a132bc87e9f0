"""The Windows Autopilot hardware-hash CSV for a delivery's laptops.

Microsoft's rules (memdocs ``autopilot/add-devices.md``): the header is exactly
``Device Serial Number,Windows Product ID,Hardware Hash`` optionally followed by
``,Group Tag`` and then ``,Assigned User``; no extra columns, no quotes, ANSI text; at
most 500 rows per file. We write Windows-1252 with CRLF line ends (what Windows tools
write), and check every row before anything is produced: a file the DSI cannot import is
worse than an error now.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

from core import csvfile
from inventory.models import Delivery, Device
from inventory.states import DeviceState
from logistics.errors import AutopilotInvalid

MAX_ROWS_PER_FILE = 500
BASE_HEADER = ["Device Serial Number", "Windows Product ID", "Hardware Hash"]
ENCODING = "cp1252"
_FORBIDDEN = re.compile(r"[,\"\r\n]")
# Laptops that left the pipeline for good are not registered.
_EXCLUDED = frozenset({DeviceState.RETIRED, DeviceState.UNEXPECTED})


@dataclass(frozen=True)
class Export:
    filename: str
    media_type: str
    content: bytes
    files: int
    rows: int


def _problems(device: Device) -> list[str]:
    out = []
    if not device.serial.strip():
        out.append("no serial number")
    if not device.hardware_hash:
        out.append("no hardware hash")
    else:
        try:
            base64.b64decode(device.hardware_hash, validate=True)
        except (binascii.Error, ValueError):
            out.append("hardware hash is not base64")
    for label, value in (
        ("serial", device.serial),
        ("Windows Product ID", device.windows_product_id),
        ("Group Tag", device.group_tag),
        ("Assigned User", device.assigned_user),
    ):
        if not value:
            continue
        if _FORBIDDEN.search(value):
            out.append(f"{label} contains a comma, quote or line break")
        if value.startswith(csvfile.FORMULA_START):
            # Elsewhere such a cell gets a ' in front (core.csvfile); this format has no
            # quoting, so it cannot be neutralised: refuse rather than alter the value.
            out.append(
                f"{label} starts with {value[0]!r}, which a spreadsheet would run as a "
                "formula and the Autopilot format cannot escape"
            )
        try:
            value.encode(ENCODING)
        except UnicodeEncodeError:
            out.append(f"{label} has characters ANSI (Windows-1252) cannot encode")
    return out


def rows_of(devices: Sequence[Device]) -> tuple[list[str], list[list[str]]]:
    """The header and rows, validated.

    :raises AutopilotInvalid: any device with a problem (all listed), or no device.
    """
    chosen = [d for d in devices if DeviceState(d.state) not in _EXCLUDED]
    problems = [{"serial": d.serial, "message": msg} for d in chosen for msg in _problems(d)]
    if problems:
        raise AutopilotInvalid(problems)
    if not chosen:
        raise AutopilotInvalid([{"serial": "-", "message": "no laptop to export"}])
    with_user = any(d.assigned_user for d in chosen)
    with_tag = with_user or any(d.group_tag for d in chosen)
    header = list(BASE_HEADER)
    if with_tag:
        header.append("Group Tag")
    if with_user:
        header.append("Assigned User")
    rows = []
    for d in chosen:
        row = [d.serial.strip(), d.windows_product_id or "", (d.hardware_hash or "").strip()]
        if with_tag:
            row.append(d.group_tag or "")
        if with_user:
            row.append(d.assigned_user or "")
        rows.append(row)
    return header, rows


def render(header: Sequence[str], rows: Sequence[Sequence[str]]) -> bytes:
    """One file: plain comma joins (values are checked to need no quoting), CRLF."""
    lines = [",".join(header)] + [",".join(r) for r in rows]
    return ("\r\n".join(lines) + "\r\n").encode(ENCODING)


def export(delivery: Delivery, devices: Sequence[Device]) -> Export:
    """A CSV, or a zip of CSVs of at most 500 rows each.

    :raises AutopilotInvalid: see ``rows_of``.
    """
    header, rows = rows_of(devices)
    stem = "autopilot-" + re.sub(r"[^A-Za-z0-9._-]+", "_", delivery.order_reference)
    chunks = [rows[i : i + MAX_ROWS_PER_FILE] for i in range(0, len(rows), MAX_ROWS_PER_FILE)]
    if len(chunks) == 1:
        return Export(
            f"{stem}.csv", "text/csv; charset=windows-1252", render(header, chunks[0]), 1, len(rows)
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, chunk in enumerate(chunks, 1):
            zf.writestr(f"{stem}-{n:02d}.csv", render(header, chunk))
    return Export(f"{stem}.zip", "application/zip", buf.getvalue(), len(chunks), len(rows))
