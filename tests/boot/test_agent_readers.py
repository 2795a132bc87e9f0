"""The agent's readers and parsers, fed with outputs and sysfs values of real machines
(fixtures/README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boot.agent import cmdline, disks, inventory, sysinfo
from boot.agent.sysinfo import Root
from tests.boot.fakeroot import FIXTURES, Disk, Laptop, build, shims


def fixture(*parts: str) -> str:
    return FIXTURES.joinpath(*parts).read_text()


def test_smartctl_healthy_nvme() -> None:
    out = disks.parse_smartctl(fixture("smartctl", "intel-ssdpeknw010t8-nvme.json"))
    assert out["health"] == "ok"
    assert out["wear_pct"] == 0
    assert out["available_spare_pct"] == 100
    assert out["power_on_hours"] == 2401
    assert out["temperature_c"] == 36


def test_smartctl_nvme_with_media_errors_is_a_warning() -> None:
    out = disks.parse_smartctl(fixture("smartctl", "samsung-970-evo-nvme-media-errors.json"))
    assert out["health"] == "warning"
    assert out["media_errors"] == 7
    assert "7 media errors" in out["note"]


def test_smartctl_sata_ssd_wear_from_its_normalised_attribute() -> None:
    out = disks.parse_smartctl(fixture("smartctl", "samsung-ssd-840-sata.json"))
    assert out["health"] == "ok"
    assert out["wear_pct"] == 2  # Wear_Leveling_Count normalised 98
    assert out["reallocated_sectors"] == 0


def test_smartctl_failing_disk() -> None:
    out = disks.parse_smartctl(fixture("smartctl", "hitachi-hds721050-failing.json"))
    assert out["health"] == "failing"
    assert out["smart_passed"] is False
    assert out["reallocated_sectors"] == 1975
    assert "Reallocated_Sector_Ct" in out["note"]


def test_smartctl_without_smart_support_is_unknown() -> None:
    out = disks.parse_smartctl(fixture("smartctl", "virtio-no-smart.json"))
    assert out["health"] == "unknown"
    assert "Unable to detect device type" in out["note"]
    assert disks.parse_smartctl("smartctl: not json")["health"] == "unknown"


def test_nvme_cli_smart_log() -> None:
    good = disks.parse_nvme_smart_log(fixture("nvme", "smart-log-nvme-cli-2.3.json"))
    assert good["health"] == "ok"
    assert good["temperature_c"] == 40  # kelvins in nvme-cli's JSON
    bad = disks.parse_nvme_smart_log(fixture("nvme", "smart-log-spare-exhausted.json"))
    assert bad["health"] == "failing"
    assert bad["wear_pct"] == 117 and bad["media_errors"] == 36
    assert "below its threshold" in bad["note"] and "0x01" in bad["note"]


def test_dmidecode_type17_sums_the_populated_devices() -> None:
    text = fixture("dmidecode", "dell-latitude-3320-type17.txt")
    assert sysinfo.memory_installed(text) == 8 * 1024**3
    assert sysinfo.memory_installed("") is None


def test_readers_on_a_fake_root(tmp_path: Path) -> None:
    laptop = Laptop(
        serial="5CG1234XYZ",
        nics=[
            ("enp0s31f6", "3c:52:82:0a:1b:2c", "pci"),
            ("enx00e04c680001", "00:e0:4c:68:00:01", "usb"),
        ],
        batteries=[("BAT0", 48248000, 40877000, 481, "ASUSTeK", "UX32-65")],
    )
    root = Root(build(tmp_path, laptop))
    assert sysinfo.identity(root) == {
        "serial": "5CG1234XYZ",
        "smbios_uuid": "4c4c4544-0042-3510-8052-b4c04f4e5331",
        "vendor": "Dell Inc.",
        "model": "Latitude 3320",
    }
    nics = {n["name"]: n for n in sysinfo.interfaces(root)}
    assert set(nics) == {"enp0s31f6", "enx00e04c680001"}  # lo skipped
    assert nics["enp0s31f6"]["bus"] == "pci" and nics["enx00e04c680001"]["bus"] == "usb"
    (battery,) = sysinfo.batteries(root)
    assert battery["health_pct"] == 84.7 and battery["cycles"] == 481
    assert sysinfo.tpm(root) == {"present": True, "version": "2.0"}
    fw = sysinfo.firmware(root)
    assert fw == {
        "vendor": "Dell Inc.",
        "version": "1.33.0",
        "date": "11/14/2024",
        "boot_mode": "uefi",
        "secure_boot": True,
    }
    cpu = sysinfo.cpu(root)
    assert cpu["threads"] == 8 and cpu["cores"] == 4 and "i5-1135G7" in cpu["model"]
    host_key = sysinfo.host_key(root)
    assert host_key is not None and host_key.startswith("ssh-ed25519 AAAA")


def test_lenovo_model_comes_from_product_version(tmp_path: Path) -> None:
    laptop = Laptop(
        serial="PF3ABCDE",
        vendor="LENOVO",
        product_name="21AHCTO1WW",
        product_version="ThinkPad T14 Gen 3",
    )
    assert sysinfo.identity(Root(build(tmp_path, laptop)))["model"] == "ThinkPad T14 Gen 3"


def test_bios_mode_means_secure_boot_off_and_placeholders_are_unknown(tmp_path: Path) -> None:
    laptop = Laptop(serial="To Be Filled By O.E.M.", uefi=False, tpm_major=None)
    root = Root(build(tmp_path, laptop))
    assert sysinfo.identity(root)["serial"] is None
    assert sysinfo.firmware(root)["secure_boot"] is False
    assert sysinfo.tpm(root) == {"present": False, "version": None}


def test_collect_runs_the_tools_and_reports_health(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop = Laptop(
        serial="SN1",
        disks=[
            Disk(
                "nvme0n1",
                512110190592,
                "Samsung SSD 970 EVO 500GB",
                "S1",
                nvme="smart-log-nvme-cli-2.3.json",
            ),
            Disk(
                "sda",
                500107862016,
                "Hitachi HDS721050DLE630",
                "H1",
                smartctl="hitachi-hds721050-failing.json",
            ),
            Disk("sdb", 31004295168, "SanDisk Cruzer", "U1", usb=True),
        ],
    )
    root = Root(build(tmp_path / "root", laptop))
    monkeypatch.setenv("PATH", f"{shims(tmp_path / 'bin', laptop)}:/usr/bin:/bin")
    inv = inventory.collect(root, budget=20)
    by_name = {d["name"]: d for d in inv["disks"]}
    assert set(by_name) == {"nvme0n1", "sda", "sdb"}  # loop0 (size 0) skipped
    # smartctl has no entry for nvme0n1 here: the agent falls back to nvme-cli.
    assert by_name["nvme0n1"]["health"] == "ok" and by_name["nvme0n1"]["source"] == "nvme"
    assert by_name["sda"]["health"] == "failing"
    assert by_name["sdb"]["removable"] and by_name["sdb"]["health"] == "unknown"
    assert inv["memory"]["installed_bytes"] == 8 * 1024**3
    assert inv["memory"]["usable_bytes"] == 7874560 * 1024
    assert inv["collect_seconds"] < 20
    json.dumps(inv)  # what the agent sends


def test_collect_never_waits_past_its_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    laptop = Laptop(serial="SN2")
    root = Root(build(tmp_path / "root", laptop))
    slow = tmp_path / "bin"
    slow.mkdir()
    # A smartctl that hangs (a disk that stops answering): the agent goes on without it.
    (slow / "smartctl").write_text("#!/bin/sh\nexec sleep 600\n")
    (slow / "smartctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{slow}:/usr/bin:/bin")
    seen: list[float] = []

    def runner(argv: list[str], timeout: float) -> str | None:
        seen.append(timeout)
        return inventory.run_command(argv, timeout)

    inv = inventory.collect(root, run=runner, budget=0.5)
    (disk,) = inv["disks"]
    assert disk["health"] == "unknown"
    # Every tool was given at most what was left of the budget.
    assert seen and max(seen) <= 0.5


def test_cmdline_parameters() -> None:
    p = cmdline.parse(
        "BOOT_IMAGE=/vmlinuz console=ttyS0 masterline.api=http://10.0.0.1:8000/ "
        "masterline.enroll=mle_secret masterline.bench=B1 masterline.site=PAR"
    )
    assert (p.api, p.enroll, p.bench, p.site, p.ca_sha256) == (
        "http://10.0.0.1:8000",
        "mle_secret",
        "B1",
        "PAR",
        None,
    )
    assert "mle_secret" not in repr(p)
    with pytest.raises(cmdline.ConfigError, match="enroll"):
        cmdline.parse("masterline.api=http://x")
    with pytest.raises(cmdline.ConfigError, match="api"):
        cmdline.parse("masterline.enroll=x")
    with pytest.raises(cmdline.ConfigError, match="SHA-256"):
        cmdline.parse("masterline.api=https://x masterline.enroll=y masterline.ca=abc")


def test_the_pe_sshd_port_is_22_unless_the_command_line_says() -> None:
    base = "masterline.api=http://10.0.0.1 masterline.enroll=y"
    assert cmdline.parse(base).ssh_port == 22
    assert cmdline.parse(f"{base} masterline.ssh_port=2222").ssh_port == 2222
    for bad in ("0", "65536", "22a", "-1"):
        with pytest.raises(cmdline.ConfigError, match="ssh_port"):
            cmdline.parse(f"{base} masterline.ssh_port={bad}")
