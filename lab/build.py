"""Building a lab laptop: its directory, identity, disk and ports from a ``LaptopSpec``, and
its sshd config for the boot it is in."""

from __future__ import annotations

import getpass
import shutil
import sys
import uuid
from pathlib import Path

from lab import keys, sshd
from lab.faults import FaultFile
from lab.identity import build_pe_root, macs_for, write_file
from lab.laptop import LabLaptop, LaptopSpec, name_for


def build_laptop(laptops_dir: Path, spec: LaptopSpec, client_key_path: Path) -> LabLaptop:
    """Make a lab laptop's directory from its spec: host key, sparse disk, hardware view
    (``pe/``), ports, no faults. Its sshd config is written by the lab, which knows the
    shared keys."""
    name = name_for(spec)
    d = laptops_dir / name
    if d.exists():
        shutil.rmtree(d)
    (d / "sshd").mkdir(parents=True)
    host_key = d / "sshd" / "ssh_host_ed25519_key"
    host_line = keys.generate_ed25519(host_key, f"lab-{name}")
    disk_path = d / "disk.img"
    with open(disk_path, "wb") as fh:
        fh.truncate(spec.disk_bytes)
    macs = spec.macs or macs_for(spec.serial)
    ifnames = ["enp0s31f6", "wlp0s20f3", "enx0050b6"][: len(macs)]
    if len(macs) > len(ifnames):
        ifnames += [f"eth{i}" for i in range(len(ifnames), len(macs))]
    ssh_port = sshd.free_port()
    sshd_port = sshd.free_port()
    while sshd_port == ssh_port:
        sshd_port = sshd.free_port()
    known_hosts = d / "known_hosts"
    known_hosts.write_text(keys.known_hosts_line("127.0.0.1", ssh_port, host_line))
    laptop = LabLaptop(
        name=name,
        serial=spec.serial,
        smbios_uuid=spec.smbios_uuid or str(uuid.uuid5(uuid.NAMESPACE_OID, spec.serial)),
        macs=[m.lower() for m in macs],
        vendor=spec.vendor,
        model=spec.model,
        os_family=spec.os_family,
        dir=d,
        pe_root=d / "pe",
        os_root=d / "os",
        disk_path=disk_path,
        disk_bytes=spec.disk_bytes,
        ssh_port=ssh_port,
        sshd_port=sshd_port,
        ssh_user=getpass.getuser(),
        client_key_path=client_key_path,
        known_hosts_path=known_hosts,
        host_key_fingerprint=keys.fingerprint(host_line),
        ifnames=ifnames,
        winrm_password=spec.winrm_password,
    )
    build_pe_root(laptop)
    FaultFile(d).clear()
    return laptop


def write_sshd_config(laptop: LabLaptop, authorized_keys: Path) -> None:
    """(Re)write the laptop's sshd config for its current boot (PE or installed OS), and
    give the boot a new boot id.

    Logins: the lab's bench key (``authorized_keys``), and the keys a PE agent running on
    the laptop's fake root installed from its registration's go answer
    (``pe/root/.ssh/authorized_keys``), in both boots, as a master image that trusts the
    site's worker key would."""
    sshd_dir = laptop.dir / "sshd"
    # Every boot (PE or installed OS) gets a boot id of its own, as the kernel's
    # /proc/sys/kernel/random/boot_id: how a worker tells that its reboot happened.
    write_file(laptop.pe_root / "proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")
    sshd.write_config(
        sshd_dir,
        port=laptop.sshd_port,
        host_key=sshd_dir / "ssh_host_ed25519_key",
        authorized_keys=[authorized_keys, laptop.pe_root / "root" / ".ssh" / "authorized_keys"],
        env=_session_env(laptop, booted_os=laptop.boot == "os"),
    )


def _session_env(laptop: LabLaptop, *, booted_os: bool) -> dict[str, str]:
    # The hardware view (MASTERLINE_PE_ROOT) stays after the reboot: an installed OS
    # reads the same /sys; the installed system's files live under MASTERLINE_TARGET_ROOT.
    env = {
        "MASTERLINE_PE_ROOT": str(laptop.pe_root),
        "MASTERLINE_LAB_LAPTOP_DIR": str(laptop.dir),
        # What the PE's `reboot` (lab/pe_bin/reboot) runs the lab with.
        "MASTERLINE_LAB_PYTHON": sys.executable,
    }
    if booted_os:
        env["MASTERLINE_TARGET_ROOT"] = str(laptop.os_root)
    return env
