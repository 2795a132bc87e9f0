"""Disks: the block devices under ``/sys/block`` and their health from ``smartctl -j``
(SATA and NVMe) or ``nvme smart-log -o json`` (NVMe, when smartctl is missing).

The parsers take the tools' JSON text, so tests feed them outputs recorded on real
machines. Health is one of ok, warning (worn, reallocated or pending sectors, media
errors: still working), failing (the drive's own assessment failed, or an NVMe critical
warning), unknown (no data).
"""

from __future__ import annotations

import json
from typing import Any

from .sysinfo import Root, clean

_SKIP_PREFIXES = ("loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd")
# ATA attributes: 5 reallocated, 197 pending, 198 offline uncorrectable; wear from the
# normalised value of 177 (Samsung), 231 (SSD life left), 233 (Intel media wearout).
_WEAR_ATTRS = (177, 231, 233)
# NVMe critical warning bits that mean the drive is failing (temperature, bit 1, is a
# condition of the moment, not of the drive).
_NVME_FAILING_BITS = 0x01 | 0x04 | 0x08 | 0x10


def block_devices(root: Root) -> list[dict[str, Any]]:
    """Whole disks with size, model, serial, transport, rotational, removable."""
    out = []
    for name in root.listdir("sys/block"):
        if name.startswith(_SKIP_PREFIXES):
            continue
        base = f"sys/block/{name}"
        sectors = root.read(f"{base}/size")
        if not sectors or not sectors.isdigit() or int(sectors) == 0:
            continue
        target = root.resolve(f"{base}/device") or ""
        if name.startswith("nvme"):
            transport = "nvme"
        elif "/usb" in target:
            transport = "usb"
        elif name.startswith("mmcblk"):
            transport = "mmc"
        elif name.startswith("vd"):
            transport = "virtio"
        else:
            transport = "sata"
        out.append(
            {
                "name": name[:32],
                "model": clean(root.read(f"{base}/device/model")),
                "serial": clean(root.read(f"{base}/device/serial"), 64),
                # The kernel counts 512-byte sectors whatever the disk's block size.
                "size_bytes": int(sectors) * 512,
                "transport": transport,
                "rotational": root.read(f"{base}/queue/rotational") == "1",
                "removable": root.read(f"{base}/removable") == "1" or transport == "usb",
            }
        )
    return out[:32]


def _n(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value)
    if isinstance(value, str):
        digits = value.replace(",", "").split()[0] if value.strip() else ""
        return int(digits) if digits.isdigit() else None
    return None


def _nvme_health(log: dict[str, Any], passed: bool | None) -> dict[str, Any]:
    raw_warning = log.get("critical_warning")
    if isinstance(raw_warning, dict):  # nvme-cli --human-readable / verbose layout
        raw_warning = raw_warning.get("value", raw_warning.get("Value"))
    warning = _n(raw_warning)
    spare = _n(log.get("available_spare", log.get("avail_spare")))
    spare_min = _n(log.get("available_spare_threshold", log.get("spare_thresh")))
    wear = _n(log.get("percentage_used", log.get("percent_used")))
    media = _n(log.get("media_errors"))
    temperature = _n(log.get("temperature"))
    if temperature is not None and temperature > 200:  # nvme-cli reports kelvins
        temperature -= 273
    out = {
        "wear_pct": wear,
        "available_spare_pct": spare,
        "media_errors": media,
        "power_on_hours": _n(log.get("power_on_hours")),
        "temperature_c": temperature,
        "smart_passed": passed,
    }
    reasons = []
    if warning and warning & _NVME_FAILING_BITS:
        reasons.append(f"NVMe critical warning 0x{warning:02x}")
    if spare is not None and spare_min is not None and spare_min > 0 and spare < spare_min:
        reasons.append(f"available spare {spare}% below its threshold {spare_min}%")
    if passed is False:
        reasons.append("SMART overall assessment failed")
    if reasons:
        return {**out, "health": "failing", "note": "; ".join(reasons)[:200]}
    notes = []
    if media:
        notes.append(f"{media} media errors")
    if wear is not None and wear >= 90:
        notes.append(f"{wear}% of rated endurance used")
    if notes:
        return {**out, "health": "warning", "note": "; ".join(notes)[:200]}
    return {**out, "health": "ok" if passed is not False else "failing"}


def parse_smartctl(text: str) -> dict[str, Any]:
    """Health fields from ``smartctl -j -a DEV`` output (any exit status: smartctl
    prints its JSON even when it sets the "disk failing" bit)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {"health": "unknown", "note": "smartctl output is not JSON", "source": "smartctl"}
    status = data.get("smart_status") or {}
    passed = status.get("passed") if isinstance(status.get("passed"), bool) else None
    if isinstance(data.get("nvme_smart_health_information_log"), dict):
        nvme = _nvme_health(data["nvme_smart_health_information_log"], passed)
        return {**nvme, "source": "smartctl"}
    table = ((data.get("ata_smart_attributes") or {}).get("table")) or []
    attrs = {a.get("id"): a for a in table if isinstance(a, dict)}

    def raw(attr_id: int) -> int | None:
        a = attrs.get(attr_id)
        return _n((a.get("raw") or {}).get("value")) if a else None

    wear = None
    for attr_id in _WEAR_ATTRS:
        a = attrs.get(attr_id)
        value = _n(a.get("value")) if a else None
        if value is not None and 0 <= value <= 100:
            wear = 100 - value
            break
    failed_now = [
        str(a.get("name"))
        for a in table
        if isinstance(a, dict) and a.get("when_failed") in ("now", "FAILING_NOW")
    ]
    out: dict[str, Any] = {
        "smart_passed": passed,
        "wear_pct": wear,
        "reallocated_sectors": raw(5),
        "pending_sectors": raw(197),
        "power_on_hours": _n((data.get("power_on_time") or {}).get("hours")),
        "temperature_c": _n((data.get("temperature") or {}).get("current")),
        "source": "smartctl",
    }
    if passed is False or failed_now:
        why = ["SMART overall assessment failed"] if passed is False else []
        if failed_now:
            why.append("failing now: " + ", ".join(failed_now))
        return {**out, "health": "failing", "note": "; ".join(why)[:200]}
    if passed is None:
        messages = (data.get("smartctl") or {}).get("messages") or []
        note = next((str(m.get("string")) for m in messages if isinstance(m, dict)), None)
        return {**out, "health": "unknown", "note": (note or "no SMART data")[:200]}
    notes = []
    for label, value in (
        ("reallocated", out["reallocated_sectors"]),
        ("pending", out["pending_sectors"]),
    ):
        if value:
            notes.append(f"{value} {label} sectors")
    if wear is not None and wear >= 90:
        notes.append(f"{wear}% worn")
    if notes:
        return {**out, "health": "warning", "note": "; ".join(notes)[:200]}
    return {**out, "health": "ok"}


def parse_nvme_smart_log(text: str) -> dict[str, Any]:
    """Health fields from ``nvme smart-log -o json DEV`` (nvme-cli)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {"health": "unknown", "note": "nvme smart-log output is not JSON", "source": "nvme"}
    if not isinstance(data, dict):
        return {"health": "unknown", "note": "unexpected nvme smart-log output", "source": "nvme"}
    return {**_nvme_health(data, None), "source": "nvme"}
