"""``masterline lab up --vms`` and ``lab down`` for real: the namespace, the bench's
dnsmasq, the API and a worker inside it, a QEMU laptop that network-boots Masterline's PE
and tries to register. Its serial is in no delivery: it is refused (``unknown_serial``),
no run exists and its disk is never written. ``down`` leaves no process and no namespace
behind. Bad input is one line, nothing started."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

from core.errors import MasterlineError
from core.settings import get_settings
from inventory.models import Device
from lab.cli import app
from lab.vm_bench import VmBench
from provisioning.runs.models import ProvisioningRun
from tests.boot.conftest import Boot, boot, boot_settings
from tests.support.netns import serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.waiting import eventually

__all__ = ["boot", "boot_settings"]

runner = CliRunner()
DEADLINE = 600.0  # bounds a hang only (TCG on a loaded machine)


def _namespaces() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.lab
@pytest.mark.xdist_group("vm")
@vm_skip()
@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_lab_up_vms_boots_a_vm_that_registers_and_down_leaves_nothing(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pe_dir, manifest = cached_pe()
    store_in_catalogue(pe_dir, manifest)
    monkeypatch.setenv("MASTERLINE_DATABASE_URL", boot.db.url)
    get_settings.cache_clear()
    root = tmp_path / "lab"
    bench = VmBench(root)
    try:
        result = runner.invoke(
            app,
            ["up", "--vms", "1", "--serial", "ZZZ0001", "--site", "PAR", "--bench", "B1",
             "--vm-subnet", "10.78.0", "--api-port", str(free_port()), "--disk-size", "256M",
             "--vm-vendor", "Dell Inc.", "--vm-model", "Latitude 5440", "--root", str(root)],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        state = bench.state()
        assert state is not None and state["namespace"] in _namespaces()
        (vm,) = state["vms"]
        assert vm["serial"] == "ZZZ0001" and vm["mac"] == "52:54:00:4d:00:01"
        console = Path(vm["console"])

        def waits() -> bool:
            for p in state["processes"]:
                if not Path(f"/proc/{p['pid']}").exists():
                    log = serial_log(bench.dir / f"{p['role']}.log")[-2000:]
                    raise AssertionError(f"{p['role']} exited:\n{log}")
            return "refused reason=unknown_serial" in serial_log(console)

        eventually(waits, timeout=DEADLINE, every=1.0, message=lambda: serial_log(console)[-3000:])
        # The PE reached the API in the namespace through the bench's link, with its
        # SMBIOS serial: refused, so nothing runs for it and nothing touched its disk.
        assert "MASTERLINE-PE network eth0 10.78.0." in serial_log(console)
        with boot.db.session(write=False) as s:
            assert s.exec(select(ProvisioningRun)).all() == []
            assert s.exec(select(Device).where(Device.serial == "ZZZ0001")).first() is None
        with Path(vm["disk"]).open("rb") as disk:
            chunks = iter(lambda: disk.read(1 << 20), b"")
            assert all(chunk.count(0) == len(chunk) for chunk in chunks)
        again = runner.invoke(app, ["up", "--vms", "1", "--root", str(root)])
        assert isinstance(again.exception, MasterlineError)
        assert "lab down" in again.exception.message
    finally:
        down = runner.invoke(app, ["down", "--root", str(root)])
    assert down.exit_code == 0, down.output
    assert state["namespace"] not in _namespaces()
    for p in state["processes"]:
        assert not Path(f"/proc/{p['pid']}").exists() or _zombie(p["pid"])
    assert bench.state() is None


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vms", "2", "--serial", "A1"], "--serial given 1 times for 2 VMs"),
        (["--vms", "1", "--vm-subnet", "10.300.0"], "--vm-subnet"),
        (["--vms", "40"], "between 1 and 32"),
    ],
)
def test_lab_up_vms_refuses_bad_input_in_one_line(
    tmp_path: Path, args: list[str], message: str
) -> None:
    result = runner.invoke(app, ["up", *args, "--root", str(tmp_path / "lab")])
    # A MasterlineError: cli.main prints its one line and exits with its code.
    assert result.exit_code != 0
    assert isinstance(result.exception, MasterlineError)
    assert message in result.exception.message and "\n" not in result.exception.message
    assert not (tmp_path / "lab" / "vms" / "bench.json").exists()
    assert VmBench(tmp_path / "lab").namespace not in _namespaces()
