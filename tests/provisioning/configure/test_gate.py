"""The READY gate against lab laptops: every configured check reported, each failed one
listed; an unreachable laptop is an error, not a failed check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lab.faults import Fault
from lab.lab import Lab
from provisioning.configure.apply import configure_os
from provisioning.configure.gate import CheckResult, failure_reason, image_hash_check, run_gate
from provisioning.configure.plan import ConfigPlan, OsTarget
from provisioning.errors import ConnectFailed
from tests.provisioning.configure.test_linux import booted, linux_target, wireguard_plan
from tests.provisioning.configure.test_windows import boot_windows, ikev2_plan, target

SHA = "ab" * 32
OTHER = "cd" * 32


def by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_image_hash_check() -> None:
    assert image_hash_check(SHA, SHA.upper()).ok
    bad = image_hash_check(SHA, OTHER)
    assert not bad.ok and "cdcdcdcdcdcd" in bad.detail and "abababababab" in bad.detail
    assert not image_hash_check(SHA, "").ok


def test_only_the_configured_checks_run(tmp_path: Path) -> None:
    """A configuration that gates on the image hash alone never contacts the laptop."""
    plan = ConfigPlan.from_dict({"hostname": "ACME-1", "checks": ["image_hash"]}, os_family="linux")
    nowhere = OsTarget.linux(
        host="127.0.0.1",
        ssh_port=1,
        user="root",
        key_path=tmp_path / "k",
        known_hosts_path=tmp_path / "kh",
    )
    results = run_gate(nowhere, plan, image_sha256=SHA, readback_sha256=SHA)
    assert results == [CheckResult("image_hash", True, results[0].detail)]
    assert failure_reason(results) is None


def test_linux_gate_passes_then_lists_each_failed_check(lab: Lab, tmp_path: Path) -> None:
    (laptop,) = booted(lab, "GATE0001")
    t, plan = linux_target(laptop), wireguard_plan(laptop.serial)
    work = tmp_path / "work"
    configure_os(t, plan, on_event=lambda e: None, timeout=300, work_dir=work)
    events: list[dict[str, Any]] = []
    results = run_gate(
        t, plan, image_sha256=SHA, readback_sha256=SHA, on_event=events.append, work_dir=work
    )
    assert [r.name for r in results] == [
        "image_hash",
        "hostname",
        "vpn_profile",
        "app:teams",
        "app:zoom",
    ]
    assert all(r.ok for r in results), results
    assert failure_reason(results) is None
    assert events and all(e["host"] == t.label for e in events)

    root = laptop.os_root
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/wireguard/wg0.conf").unlink()
    (root / "var/lib/masterline/apps/zoom").unlink()
    results = run_gate(t, plan, image_sha256=SHA, readback_sha256=OTHER, work_dir=work)
    checks = by_name(results)
    failed = sorted(name for name, r in checks.items() if not r.ok)
    assert failed == ["app:zoom", "hostname", "image_hash", "vpn_profile"]
    assert checks["app:teams"].ok
    assert "localhost" in checks["hostname"].detail and "ACME-GATE0001" in checks["hostname"].detail
    reason = failure_reason(results)
    assert reason is not None and "\n" not in reason
    for name in failed:
        assert name in reason


def test_windows_gate_fails_before_and_passes_after_configuration(lab: Lab) -> None:
    laptop = boot_windows(lab, "GATE0002")
    plan = ikev2_plan(laptop.serial)
    before = by_name(run_gate(target(laptop), plan, image_sha256=SHA, readback_sha256=SHA))
    assert before["image_hash"].ok
    assert {n for n, r in before.items() if not r.ok} == {
        "hostname",
        "vpn_profile",
        "app:Microsoft Teams",
        "app:Zoom",
    }
    configure_os(target(laptop, "ntlm"), plan, on_event=lambda e: None, timeout=120)
    after = run_gate(target(laptop, "ntlm"), plan, image_sha256=SHA, readback_sha256=SHA)
    assert all(r.ok for r in after), after
    assert by_name(after)["hostname"].detail == "hostname is AC-GATE0002"


def test_unreachable_laptop_is_an_error_not_a_failed_check(lab: Lab, tmp_path: Path) -> None:
    (laptop,) = booted(lab, "GATE0003")
    lab.set_fault(laptop.name, Fault.SSH_REFUSED)
    with pytest.raises(ConnectFailed):
        run_gate(
            linux_target(laptop),
            wireguard_plan(laptop.serial),
            image_sha256=SHA,
            readback_sha256=SHA,
            work_dir=tmp_path / "work",
        )
