"""A site's health policy applied to one inventory: pure functions, no database.

Each finding has a stable code (for filters and the dead-on-arrival CSV) and a message a
technician reads. Unknown values never fail a threshold: a laptop whose battery the PE
could not read is not "worn"; a site that must know sets the matching requirement.
"""

from __future__ import annotations

from dataclasses import dataclass

from boot.hardware.models import DiskHealth, HealthPolicy, TpmRequirement
from boot.hardware.schemas import Finding, HardwareInventory

GIB = 1024**3

DEFAULT_POLICY = HealthPolicy(site_id=0)
"""A site without a policy: only a failing disk stops imaging."""


@dataclass(frozen=True)
class Summary:
    """The few values the policy, the exports and the report columns read."""

    ram_bytes: int | None
    disk_count: int
    disk_bytes: int | None
    largest_disk_bytes: int | None
    disk_health: DiskHealth
    disk_wear_pct: int | None
    battery_health_pct: float | None
    battery_cycles: int | None
    tpm_version: str | None
    secure_boot: bool | None


_HEALTH_RANK = {
    DiskHealth.OK: 0,
    DiskHealth.UNKNOWN: 1,
    DiskHealth.WARNING: 2,
    DiskHealth.FAILING: 3,
}


def summarize(inv: HardwareInventory) -> Summary:
    """Fixed disks only (USB sticks and card readers are not the laptop's); the worst
    disk and the worst battery speak for the laptop."""
    disks = [d for d in inv.disks if not d.removable and d.transport != "usb"]
    health = max((d.health for d in disks), key=_HEALTH_RANK.__getitem__, default=None)
    wear = [d.wear_pct for d in disks if d.wear_pct is not None]
    healths = [b.health_pct for b in inv.batteries if b.health_pct is not None]
    cycles = [b.cycles for b in inv.batteries if b.cycles is not None]
    return Summary(
        ram_bytes=inv.memory.installed_bytes or inv.memory.usable_bytes,
        disk_count=len(disks),
        disk_bytes=sum(d.size_bytes for d in disks) if disks else None,
        largest_disk_bytes=max((d.size_bytes for d in disks), default=None),
        disk_health=health or DiskHealth.UNKNOWN,
        disk_wear_pct=max(wear) if wear else None,
        battery_health_pct=min(healths) if healths else None,
        battery_cycles=max(cycles) if cycles else None,
        tpm_version=inv.tpm.version if inv.tpm.present else None,
        secure_boot=inv.firmware.secure_boot,
    )


def evaluate(
    policy: HealthPolicy, inv: HardwareInventory, *, os_family: str | None
) -> list[Finding]:
    """Every way ``inv`` breaks ``policy``; empty when it passes. ``os_family`` is the
    image the laptop will get (None: not known yet, the Windows-only TPM rule waits)."""
    s = summarize(inv)
    out: list[Finding] = []

    def over(value: float | None, limit: float | None) -> bool:
        return value is not None and limit is not None and value > limit

    def under(value: float | None, limit: float | None) -> bool:
        return value is not None and limit is not None and value < limit

    if policy.fail_on_failing_disk:
        for d in inv.disks:
            if d.health is DiskHealth.FAILING and not d.removable:
                why = f" ({d.note})" if d.note else ""
                out.append(Finding(code="disk_failing", message=f"disk {d.name} is failing{why}"))
    if over(s.disk_wear_pct, policy.max_disk_wear_pct):
        out.append(
            Finding(
                code="disk_worn",
                message=f"disk wear {s.disk_wear_pct}% (policy: ≤ {policy.max_disk_wear_pct}%)",
            )
        )
    if under(s.battery_health_pct, policy.min_battery_health_pct):
        out.append(
            Finding(
                code="battery_worn",
                message=f"battery at {s.battery_health_pct:.1f}% of its design capacity "
                f"(policy: ≥ {policy.min_battery_health_pct}%)",
            )
        )
    if over(s.battery_cycles, policy.max_battery_cycles):
        out.append(
            Finding(
                code="battery_cycles",
                message=f"battery has {s.battery_cycles} cycles "
                f"(policy: ≤ {policy.max_battery_cycles})",
            )
        )
    # Compared by value: a policy read back from the database holds plain strings.
    tpm_needed = policy.require_tpm2 == TpmRequirement.ALWAYS or (
        policy.require_tpm2 == TpmRequirement.WINDOWS and os_family == "windows"
    )
    if tpm_needed and s.tpm_version != "2.0":
        have = f"TPM {s.tpm_version}" if s.tpm_version else "no TPM"
        out.append(Finding(code="tpm_missing", message=f"{have}; the image needs TPM 2.0"))
    if policy.require_secure_boot and s.secure_boot is not True:
        state = "off" if s.secure_boot is False else "unknown (not booted in UEFI mode?)"
        out.append(Finding(code="secure_boot_off", message=f"Secure Boot is {state}"))
    # Installed RAM reads a little under its nominal size (firmware reserves some), and
    # marketed disk sizes are decimal: a "256 GB" disk is 238 GiB.
    if policy.min_ram_gib is not None and under(s.ram_bytes, policy.min_ram_gib * GIB * 0.95):
        ram = (s.ram_bytes or 0) / GIB
        out.append(
            Finding(
                code="ram_low", message=f"{ram:.1f} GiB of RAM (policy: ≥ {policy.min_ram_gib})"
            )
        )
    if policy.min_disk_gib is not None and under(
        s.largest_disk_bytes, policy.min_disk_gib * GIB * 0.9
    ):
        disk = (s.largest_disk_bytes or 0) / GIB
        out.append(
            Finding(
                code="disk_small",
                message=f"{disk:.0f} GiB disk (policy: ≥ {policy.min_disk_gib} GiB)",
            )
        )
    return out
