"""Hardware inventory and the site's health policy, through the real API on both
databases: reports per boot, the gate that quarantines before any byte is written, the
per-delivery exports (CSV included), client scoping."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from boot.agent import inventory
from boot.agent.sysinfo import Root
from boot.hardware import service as hardware
from boot.hardware.models import HealthPolicy, TpmRequirement
from boot.hardware.policy import evaluate
from boot.hardware.schemas import HardwareInventory
from core.principal import Role
from inventory import repository as inventory_repo
from inventory.states import DeviceState
from tests.boot.conftest import HOST_KEY_2, Boot, register
from tests.boot.fakeroot import Disk, Laptop, build, shims
from tests.boot.test_registration import attempts, device, scan
from tests.conftest import auth

WORN_BATTERY = [("BAT0", 48248000, 40877000, 481, "ASUSTeK", "UX32-65")]  # 84.7 %
FAILING_DISK = [
    Disk(
        "sda",
        500107862016,
        "Hitachi HDS721050DLE630",
        "H1",
        smartctl="hitachi-hds721050-failing.json",
    )
]


def collected(tmp_path: Path, laptop: Laptop, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """What the agent reports for ``laptop`` (its real readers on a fake root)."""
    root = build(tmp_path / f"root-{laptop.serial}", laptop)
    bin_dir = shims(tmp_path / f"bin-{laptop.serial}", laptop)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    return inventory.collect(Root(root), budget=20)


def test_the_report_is_stored_per_boot_and_shown(
    client: TestClient, boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = collected(tmp_path, Laptop(serial="ACME0001"), monkeypatch)
    scan(client, boot, "ACME0001")
    go = register(client, boot.credential, "ACME0001", inventory=inv)
    assert go.status_code == 200, go.text
    # The same boot registering again (agent restarted) adds no report; a new boot does.
    register(client, boot.credential, "ACME0001", inventory=inv)
    register(client, boot.credential, "ACME0001", inventory=inv, host_key=HOST_KEY_2)
    hw = client.get(f"/devices/{go.json()['device_id']}/hardware", headers=boot.technician)
    assert hw.status_code == 200, hw.text
    latest = hw.json()["latest"]
    assert len(hw.json()["history"]) == 1
    assert latest["verdict"] == "pass" and latest["findings"] == []
    assert latest["cpu_model"] == "11th Gen Intel(R) Core(TM) i5-1135G7 @ 2.40GHz"
    assert (latest["cpu_cores"], latest["cpu_threads"]) == (4, 8)
    assert latest["ram_bytes"] == 8 * 1024**3  # installed, from dmidecode
    assert (latest["disk_count"], latest["disk_health"], latest["disk_wear_pct"]) == (1, "ok", 0)
    assert latest["battery_health_pct"] == 87.1
    assert (latest["tpm_version"], latest["secure_boot"], latest["boot_mode"]) == (
        "2.0",
        True,
        "uefi",
    )
    assert (latest["firmware_vendor"], latest["firmware_version"], latest["firmware_date"]) == (
        "Dell Inc.",
        "1.33.0",
        "11/14/2024",
    )
    assert latest["inventory"]["disks"][0]["model"] == "INTEL SSDPEKNW010T8"


def test_a_worn_battery_is_quarantined_before_any_byte_is_written(
    client: TestClient, boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = client.put(
        "/boot/sites/PAR/policy", json={"min_battery_health_pct": 85}, headers=boot.admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["fail_on_failing_disk"] is True and r.json()["updated_by"].startswith("admin:")
    inv = collected(tmp_path, Laptop(serial="ACME0001", batteries=WORN_BATTERY), monkeypatch)
    scan(client, boot, "ACME0001")
    refused = register(client, boot.credential, "ACME0001", inventory=inv)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["reason"] == "health_policy"
    assert [f["code"] for f in body["findings"]] == ["battery_worn"]
    assert "agent_token" not in body
    laptop = device(boot, "ACME0001")
    assert laptop.state == DeviceState.QUARANTINED
    assert laptop.quarantine_reason == (
        "health policy: battery at 84.7% of its design capacity (policy: ≥ 85%)"
    )
    with boot.db.session(write=False) as s:
        (event,) = [
            e for e in inventory_repo.device_events(s, laptop.id or 0) if e.event == "quarantine"
        ]
    assert event.details["health_policy"] is True and event.details["findings"] == ["battery_worn"]
    assert [(a.outcome, a.reason) for a in attempts(boot)] == [("quarantined", "health_policy")]

    doa = client.get(
        f"/deliveries/{boot.world.acme_delivery.id}/dead-on-arrival", headers=boot.technician
    )
    assert doa.status_code == 200
    assert [(x["serial"], x["state"]) for x in doa.json()["lines"]] == [("ACME0001", "quarantined")]
    assert doa.json()["lines"][0]["quarantined_at"] is not None
    as_csv = client.get(
        f"/deliveries/{boot.world.acme_delivery.id}/dead-on-arrival",
        params={"format": "csv"},
        headers=boot.technician,
    )
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(x["serial"], x["state"]) for x in rows] == [("ACME0001", "quarantined")]
    assert "battery at" in rows[0]["reasons"]

    # A technician who releases it accepts the battery: the same findings do not stop it
    # again, and its history says who decided.
    released = client.post(
        f"/devices/{laptop.id}/events",
        json={"event": "release", "reason": "battery accepted by the client"},
        headers=boot.technician,
    )
    assert released.status_code == 200, released.text
    go = register(client, boot.credential, "ACME0001", inventory=inv, host_key=HOST_KEY_2)
    assert go.status_code == 200, go.text


def test_a_failing_disk_is_quarantined_by_the_default_policy(
    client: TestClient, boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = collected(tmp_path, Laptop(serial="ACME0001", disks=FAILING_DISK), monkeypatch)
    # Booted before scan-in: the report is kept (and says fail) but nothing moves yet.
    assert register(client, boot.credential, "ACME0001", inventory=inv).status_code == 202
    assert device(boot, "ACME0001").state == DeviceState.EXPECTED
    hw = client.get(f"/devices/{device(boot, 'ACME0001').id}/hardware", headers=boot.technician)
    assert hw.json()["latest"]["verdict"] == "fail"
    assert hw.json()["latest"]["disk_health"] == "failing"
    scan(client, boot, "ACME0001")
    r = register(client, boot.credential, "ACME0001", inventory=inv)
    assert (r.status_code, r.json()["reason"]) == (409, "health_policy")
    assert "disk sda is failing" in r.json()["detail"]
    assert device(boot, "ACME0001").state == DeviceState.QUARANTINED


def test_tpm_2_for_windows_images_is_decided_once_the_image_is_known(
    client: TestClient, boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = client.put("/boot/sites/PAR/policy", json={"require_tpm2": "windows"}, headers=boot.admin)
    assert r.status_code == 200, r.text
    inv = collected(tmp_path, Laptop(serial="ACME0001", tpm_major=None), monkeypatch)
    scan(client, boot, "ACME0001")
    # No image resolved yet: the Windows-only rule cannot decide, the PE goes.
    assert register(client, boot.credential, "ACME0001", inventory=inv).status_code == 200
    laptop = device(boot, "ACME0001")
    assert laptop.id is not None
    with boot.db.session() as s:
        locked = inventory_repo.get_device_for_update(s, laptop.id)
        assert locked is not None
        linux = hardware.gate(s, locked, site_id=boot.bench.site_id, os_family="linux", actor="t")
        assert not linux.blocks
        # The pipeline asks again once it knows the image, before writing it.
        windows = hardware.gate(
            s, locked, site_id=boot.bench.site_id, os_family="windows", actor="worker:w1"
        )
        assert windows.blocks and windows.quarantined
        assert [f.code for f in windows.findings] == ["tpm_missing"]
    assert device(boot, "ACME0001").state == DeviceState.QUARANTINED


def test_delivery_hardware_export_escapes_what_the_pe_said(
    client: TestClient, boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = collected(tmp_path, Laptop(serial="ACME0001"), monkeypatch)
    inv["cpu"]["model"] = '=HYPERLINK("http://evil.example","click")'
    scan(client, boot, "ACME0001")
    assert register(client, boot.credential, "ACME0001", inventory=inv).status_code == 200
    r = client.get(
        f"/deliveries/{boot.world.acme_delivery.id}/hardware",
        headers={**boot.technician, "Accept": "text/csv"},
    )
    assert r.status_code == 200
    rows = {x["serial"]: x for x in csv.DictReader(io.StringIO(r.text))}
    assert set(rows) == {"ACME0001", "ACME0002"}  # every laptop, reported or not
    assert rows["ACME0001"]["cpu_model"].startswith("'=HYPERLINK")
    assert rows["ACME0001"]["ram_gib"] == "8.0" and rows["ACME0001"]["tpm_version"] == "2.0"
    assert rows["ACME0001"]["macs"] == "3c:52:82:0a:1b:2c"
    assert rows["ACME0002"]["verdict"] == ""
    as_json = client.get(
        f"/deliveries/{boot.world.acme_delivery.id}/hardware", headers=boot.technician
    ).json()
    assert as_json[0]["cpu_cores"] == 4 and as_json[1] is None


def test_client_bound_callers_see_only_their_own_laptops_hardware(
    client: TestClient, boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = collected(tmp_path, Laptop(serial="ACME0001"), monkeypatch)
    scan(client, boot, "ACME0001")
    scan(client, boot, "GLBX0001")
    register(client, boot.credential, "ACME0001", inventory=inv)
    register(client, boot.credential, "GLBX0001", inventory=inv, host_key=HOST_KEY_2)
    dsi = auth(boot.world.token(Role.DSI, "ACME"))
    own, other = device(boot, "ACME0001").id, device(boot, "GLBX0001").id
    assert client.get(f"/devices/{own}/hardware", headers=dsi).status_code == 200
    assert client.get(f"/devices/{other}/hardware", headers=dsi).status_code == 404
    logistics = auth(boot.world.token(Role.LOGISTICS, "ACME"))
    globex = boot.world.globex_delivery.id
    assert client.get(f"/deliveries/{globex}/dead-on-arrival", headers=logistics).status_code == 404
    assert client.get(f"/deliveries/{globex}/hardware", headers=logistics).status_code == 404


def test_policy_rules_and_unknown_values() -> None:
    inv = HardwareInventory.model_validate(
        {
            "memory": {"installed_bytes": 8 * 1024**3},
            "disks": [
                {"name": "nvme0n1", "size_bytes": 256 * 10**9, "health": "ok", "wear_pct": 91},
                {"name": "sdb", "size_bytes": 10**9, "health": "failing", "removable": True},
            ],
            "batteries": [{"name": "BAT0", "health_pct": 70.0, "cycles": 1200}],
            "tpm": {"present": True, "version": "1.2"},
            "firmware": {"boot_mode": "uefi", "secure_boot": False},
        }
    )
    strict = HealthPolicy(
        site_id=1,
        min_battery_health_pct=80,
        max_battery_cycles=1000,
        max_disk_wear_pct=90,
        require_tpm2=TpmRequirement.ALWAYS,
        require_secure_boot=True,
        min_ram_gib=16,
        min_disk_gib=512,
    )
    codes = [f.code for f in evaluate(strict, inv, os_family=None)]
    # The failing USB stick is not the laptop's disk.
    assert codes == [
        "disk_worn",
        "battery_worn",
        "battery_cycles",
        "tpm_missing",
        "secure_boot_off",
        "ram_low",
        "disk_small",
    ]
    # Nominal sizes pass: 8 GB of RAM for 8, a "256 GB" disk for 238 GiB.
    fair = HealthPolicy(site_id=1, min_ram_gib=8, min_disk_gib=238)
    assert evaluate(fair, inv, os_family=None) == []
    # What the PE could not read fails nothing (unless the policy requires it).
    unknown = HardwareInventory()
    assert (
        evaluate(
            strict.model_copy(
                update={"require_tpm2": TpmRequirement.NEVER, "require_secure_boot": False}
            ),
            unknown,
            os_family=None,
        )
        == []
    )


def test_the_policy_api_validates_and_keeps_its_author(client: TestClient, boot: Boot) -> None:
    default = client.get("/boot/sites/PAR/policy", headers=boot.technician).json()
    assert default["fail_on_failing_disk"] is True and default["updated_at"] is None
    bad = client.put(
        "/boot/sites/PAR/policy", json={"min_battery_health_pct": 150}, headers=boot.admin
    )
    assert bad.status_code == 422
    assert client.put("/boot/sites/PAR/policy", json={}, headers=boot.technician).status_code == 403
    assert client.get("/boot/sites/NOPE/policy", headers=boot.technician).status_code == 404
