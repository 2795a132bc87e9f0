"""CSV exports of a delivery's hardware and of its dead-on-arrival laptops.

Cells come partly from the PE, i.e. from a hostile bench network (a model string can
be anything): a cell that a spreadsheet would run as a formula is prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Any

from boot.hardware.models import HardwareReport
from boot.hardware.schemas import DeadOnArrival
from inventory.models import Device

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

HARDWARE_COLUMNS = (
    "serial",
    "asset_tag",
    "state",
    "collected_at",
    "verdict",
    "findings",
    "cpu_model",
    "cpu_cores",
    "cpu_threads",
    "ram_gib",
    "disk_count",
    "disk_gib",
    "disk_health",
    "disk_wear_pct",
    "battery_health_pct",
    "battery_cycles",
    "tpm_version",
    "secure_boot",
    "boot_mode",
    "firmware_vendor",
    "firmware_version",
    "firmware_date",
    "macs",
)
DOA_COLUMNS = ("serial", "asset_tag", "model", "state", "reasons", "collected_at", "quarantined_at")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def _write(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


def _gib(n: int | None) -> str | None:
    return None if n is None else f"{n / 1024**3:.1f}"


def hardware_csv(rows: Sequence[tuple[Device, HardwareReport | None]]) -> str:
    def line(device: Device, r: HardwareReport | None) -> list[Any]:
        head: list[Any] = [device.serial, device.asset_tag, device.state]
        if r is None:
            return (
                head
                + [None] * (len(HARDWARE_COLUMNS) - len(head) - 1)
                + [" ".join(device.mac_addresses or [])]
            )
        return [
            *head,
            r.collected_at.isoformat(),
            r.verdict,
            " | ".join(str(f.get("message", "")) for f in r.findings),
            r.cpu_model,
            r.cpu_cores,
            r.cpu_threads,
            _gib(r.ram_bytes),
            r.disk_count,
            _gib(r.disk_bytes),
            r.disk_health,
            r.disk_wear_pct,
            None if r.battery_health_pct is None else f"{r.battery_health_pct:.0f}",
            r.battery_cycles,
            r.tpm_version,
            r.secure_boot,
            r.boot_mode,
            r.firmware_vendor,
            r.firmware_version,
            r.firmware_date,
            " ".join(device.mac_addresses or []),
        ]

    return _write(HARDWARE_COLUMNS, (line(d, r) for d, r in rows))


def doa_csv(doa: DeadOnArrival) -> str:
    return _write(
        DOA_COLUMNS,
        (
            [
                x.serial,
                x.asset_tag,
                x.model,
                x.state,
                " | ".join(x.reasons),
                x.collected_at.isoformat(),
                x.quarantined_at.isoformat() if x.quarantined_at else None,
            ]
            for x in doa.lines
        ),
    )
