"""``masterline boot dnsmasq-config --secure-boot``: the bench's TFTP root (Debian's
signed shim and netboot GRUB, the bench's grub.cfg carrying the credential, mode 0600,
the PE, iPXE for BIOS) and the dnsmasq configuration that sends UEFI firmware to shim,
checked by dnsmasq itself; refreshing it; one-line errors that write nothing.
``test_vm_secureboot`` boots it."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import pytest

from boot.netboot import tftp
from boot.pe import repository, service, signed
from tests.boot.conftest import Boot
from tests.boot.netboot.test_netboot import VERSION, dnsmasq_config, fake_pe, link_of

API = "http://10.20.0.1:8000"
COMMON = (
    "--site", "PAR", "--bench", "B1", "--api-url", API, "--interface", "eth1",
    "--subnet", "10.20.0.0/24",
)  # fmt: skip
ME = pwd.getpwuid(os.getuid()).pw_name


def has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def dnsmasq_test(config: str, tmp_path: Path) -> None:
    path = tmp_path / "check.conf"
    path.write_text(config)
    checked = subprocess.run(
        ["/usr/sbin/dnsmasq", "--test", f"--conf-file={path}"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert checked.returncode == 0 and "syntax check OK" in checked.stderr, checked.stderr


@pytest.mark.slow
def test_secure_boot_writes_the_signed_chain_and_sends_uefi_to_shim(
    boot: Boot, tmp_path: Path
) -> None:
    files = fake_pe(tmp_path)
    root = tmp_path / "tftp" / "bench-B1"
    conf = tmp_path / "b1.conf"
    done = dnsmasq_config(
        boot, *COMMON, "--range", "10.20.0.100,10.20.0.199", "--secure-boot",
        "--tftp-root", str(root), "--tftp-user", ME, "-o", str(conf),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert boot.credential not in done.stdout + done.stderr
    assert f"TFTP root {root}: PE {VERSION}" in done.stdout

    config = conf.read_text()
    assert f"tftp-root={root}\n" in config and "\ntftp-secure\n" in config
    assert "dhcp-boot=tag:!ipxe,tag:!httpclient,tag:efi64,shimx64.efi" in config
    assert "dhcp-boot=tag:!ipxe,tag:!httpclient,tag:!efi64,undionly.kpxe" in config  # BIOS
    assert f"dhcp-boot=tag:ipxe,{API}/boot/ipxe/{link_of(boot)}" in config
    assert "ipxe.efi\n" not in config.replace("/ipxe.efi\n", "")  # only HTTP boot's URL
    dnsmasq_test(config, tmp_path)

    chain = signed.fetch(service.PeSettings().cache_dir, tmp_path / "pkgs")
    assert (root / tftp.SHIM).read_bytes() == chain.shim.read_bytes()
    assert b"Microsoft" in (root / tftp.SHIM).read_bytes()
    # shim's second stage is the netboot GRUB (it reads its config from the TFTP server).
    assert (root / tftp.GRUB).read_bytes() == chain.grubnet.read_bytes() != chain.grub.read_bytes()
    bios = Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
    assert (root / tftp.BIOS_LOADER).read_bytes() == bios
    for name, data in files.items():
        assert (root / "pe" / VERSION / name).read_bytes() == data

    cfg = root / tftp.GRUB_CFG
    text = cfg.read_text()
    assert f"linux /pe/{VERSION}/{repository.KERNEL} console=tty0" in text
    assert f"initrd /pe/{VERSION}/{repository.INITRD}\n" in text
    assert f"masterline.api={API} " in text
    assert f"masterline.enroll={boot.credential}" in text and "masterline.bench=B1" in text
    # The credential is in it: only dnsmasq's user reads it, and nobody else lists the root.
    assert cfg.stat().st_mode & 0o777 == 0o600
    assert root.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_uid for p in root.rglob("*")} == {os.getuid()}

    # A PE no longer in the catalogue leaves the TFTP root at the next run; the files
    # of the current one are kept as they are.
    stale = root / "pe" / "6.1.0-1-amd64-aaaaaaaaaaaa"
    stale.mkdir()
    kernel_inode = (root / "pe" / VERSION / repository.KERNEL).stat().st_ino
    again = dnsmasq_config(
        boot, *COMMON, "--secure-boot", "--tftp-root", str(root), "--tftp-user", ME,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert 'pxe-service=tag:!ipxe,X86-64_EFI,"Masterline (UEFI)",shimx64.efi' in again.stdout
    # Standard output is the configuration alone; the summary goes to standard error.
    assert f"TFTP root {root}: PE" in again.stderr and f"TFTP root {root}" not in again.stdout
    dnsmasq_test(again.stdout, tmp_path)
    assert not stale.exists()
    assert (root / "pe" / VERSION / repository.KERNEL).stat().st_ino == kernel_inode


@pytest.mark.slow
def test_secure_boot_bad_input_is_one_line_and_writes_nothing(boot: Boot, tmp_path: Path) -> None:
    fake_pe(tmp_path)
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "pxelinux.0").write_bytes(b"someone else's")
    for extra, expect in (
        ([], "give --tftp-root DIR"),
        (["--tftp-root", "/usr/lib/ipxe"], "a directory of its own"),
        (["--tftp-root", str(theirs), "--tftp-user", ME], "not written by Masterline"),
        (["--tftp-root", str(tmp_path / "new"), "--tftp-user", "no-such-user-x"], "no such user"),
        (["--tftp-root", str(tmp_path / "new"), "--subnet", "banana"], "not an IPv4 network"),
        *(
            # pytest's tmp_path is 0700: dnsmasq, once it dropped root, could not reach it.
            [(["--tftp-root", str(tmp_path / "new")], "dnsmasq's user cannot search")]
            if os.getuid() == 0 and has_user("dnsmasq")
            else []
        ),
    ):
        done = dnsmasq_config(boot, *COMMON, "--secure-boot", *extra)
        out = done.stdout + done.stderr
        assert done.returncode == 2 and expect in out, out
        assert "Traceback" not in out and boot.credential not in out
    assert sorted(p.name for p in theirs.iterdir()) == ["pxelinux.0"]
    assert not (tmp_path / "new").exists()
