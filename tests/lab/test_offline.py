"""What the PE writes into the mounted installed system (``$MASTERLINE_PE_ROOT/mnt/target``,
the pipeline's offline root) is in that system after the reboot: Linux under ``os_root``,
Windows on its C: drive as the WinRM server sees it."""

from __future__ import annotations

import base64

from lab.lab import Lab
from lab.offline import offline_root
from tests.support.lab import ssh_run

OFFLINE = '"$MASTERLINE_PE_ROOT/mnt/target"'


def test_a_linux_pe_write_lands_in_the_installed_system_after_a_fresh_install(
    lab: Lab,
) -> None:
    (laptop,) = lab.up_n(1, disk_bytes=1024 * 1024)
    booted = lab.reboot_into_os(laptop.name)
    assert ssh_run(booted, 'echo old > "$MASTERLINE_TARGET_ROOT/etc/motd"')[0] == 0
    pe = lab.boot_pe(laptop.name)
    write = 'dd of="$MASTERLINE_PE_ROOT/dev/nvme0n1" conv=notrunc status=none'
    assert ssh_run(pe, write, b"new image")[0] == 0  # a re-image: a fresh install boots
    folder = f"{OFFLINE}/var/cache/masterline/installers"
    put = f"mkdir -p {folder} && cat > {folder}/Zoom.deb"
    assert ssh_run(pe, put, b"deb bytes")[0] == 0
    os_booted = lab.reboot_into_os(laptop.name)
    deb = os_booted.os_root / "var/cache/masterline/installers/Zoom.deb"
    assert deb.read_bytes() == b"deb bytes"
    assert not (os_booted.os_root / "etc/motd").exists()  # the old install is gone
    assert (os_booted.os_root / "etc/hostname").read_text() == "localhost\n"
    assert not offline_root(os_booted).exists()  # the PE's mount went with the PE
    # What Ansible's SSH session sees as /var/cache/... under its target root.
    _, out, _ = ssh_run(
        os_booted, 'cat "$MASTERLINE_TARGET_ROOT/var/cache/masterline/installers/Zoom.deb"'
    )
    assert out == b"deb bytes"


def test_a_windows_pe_write_is_on_the_c_drive_after_the_reboot(lab: Lab) -> None:
    (laptop,) = lab.up_n(0, windows=1, disk_bytes=1024 * 1024)
    put = (
        f"mkdir -p {OFFLINE}/ProgramData/Masterline/Installers && "
        f"cat > {OFFLINE}/ProgramData/Masterline/Installers/Zoom.msi"
    )
    assert ssh_run(laptop, put, b"MSI bytes")[0] == 0
    lab.reboot_into_os(laptop.name)
    state = lab.windows_state(laptop.name)
    placed = state["files"]["c:\\programdata\\masterline\\installers\\zoom.msi"]
    assert placed["path"] == "C:\\ProgramData\\Masterline\\Installers\\Zoom.msi"
    assert base64.b64decode(placed["b64"]) == b"MSI bytes"
    assert state["computer_name"].startswith("DESKTOP-")  # still a fresh-from-image state


def test_a_windows_answer_file_names_the_computer_at_first_boot(lab: Lab) -> None:
    from provisioning.configure.offline import unattend_xml

    (laptop,) = lab.up_n(0, windows=1, disk_bytes=1024 * 1024)
    put = f"mkdir -p {OFFLINE}/Windows/Panther && cat > {OFFLINE}/Windows/Panther/unattend.xml"
    assert ssh_run(laptop, put, unattend_xml("ACME-PC-0042").encode())[0] == 0
    lab.reboot_into_os(laptop.name)
    assert lab.windows_state(laptop.name)["computer_name"] == "ACME-PC-0042"


def test_a_windows_answer_file_with_a_dtd_is_ignored(lab: Lab) -> None:
    (laptop,) = lab.up_n(0, windows=1, disk_bytes=1024 * 1024)
    hostile = (
        '<?xml version="1.0"?><!DOCTYPE u [<!ENTITY x "EVIL">]>'
        '<unattend xmlns="urn:schemas-microsoft-com:unattend"><settings pass="specialize">'
        "<ComputerName>&x;</ComputerName></settings></unattend>"
    )
    put = f"mkdir -p {OFFLINE}/Windows/Panther && cat > {OFFLINE}/Windows/Panther/unattend.xml"
    assert ssh_run(laptop, put, hostile.encode())[0] == 0
    lab.reboot_into_os(laptop.name)
    assert lab.windows_state(laptop.name)["computer_name"].startswith("DESKTOP-")


def test_laptops_rebooted_at_once_from_several_threads_all_come_up(lab: Lab) -> None:
    """A worker reboots the laptops whose imaging ended together at the same moment: the
    lab's shared CA files and the daemon's port binding must not race (each reboot
    takes the lab's boot lock)."""
    import socket
    import threading

    laptops = lab.up_n(2, windows=4, disk_bytes=1024 * 1024)
    errors: list[BaseException] = []

    def reboot(name: str) -> None:
        try:
            lab.reboot_into_os(name)
        except BaseException as e:  # the assertion below reports it
            errors.append(e)

    threads = [threading.Thread(target=reboot, args=(lp.name,)) for lp in laptops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == [] and not any(t.is_alive() for t in threads)
    booted = [lab.get(lp.name) for lp in laptops]
    assert {lp.boot for lp in booted} == {"os"}
    for lp in booted:
        if lp.os_family == "linux":
            assert ssh_run(lp, "true")[0] == 0
        else:
            assert lp.winrm_port is not None
            with socket.create_connection((lp.host, lp.winrm_port), timeout=10):
                pass  # the laptop's WinRM listener answers
    ports = [lp.winrm_port for lp in booted if lp.os_family == "windows"]
    assert len(set(ports)) == len(ports)
