"""CSV exports of a delivery's hardware and of its dead-on-arrival laptops.

Cells come partly from the PE, i.e. from a hostile bench network (a model string can
be anything): they go through the product's one escaping writer (``core.csvfile``),
which prefixes a cell a spreadsheet would run as a formula with ``'``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from boot.hardware.models import HardwareReport
from boot.hardware.schemas import DeadOnArrival
from core.csvfile import write_csv
from inventory.models import Device

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


def _yes_no(value: bool | None) -> str | None:
    return None if value is None else ("yes" if value else "no")


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
            _yes_no(r.secure_boot),
            r.boot_mode,
            r.firmware_vendor,
            r.firmware_version,
            r.firmware_date,
            " ".join(device.mac_addresses or []),
        ]

    return write_csv(HARDWARE_COLUMNS, (line(d, r) for d, r in rows))


def doa_csv(doa: DeadOnArrival) -> str:
    return write_csv(
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
