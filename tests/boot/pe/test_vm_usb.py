"""``masterline pe usb`` with Secure Boot enforced: a q35 VM with OVMF's Secure Boot
firmware and Microsoft's keys enrolled boots the stick (shim → GRUB → the PE's signed
kernel) on a bench network in a namespace, and the PE's agent registers the scanned
laptop, reporting Secure Boot on; the same stick with the kernel's signature stripped is
refused by the boot chain. One VM at a time, registration only."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import select
from typer.testing import CliRunner

from api.app import create_app
from boot.hardware.models import HardwareReport
from boot.pe import repository, service, usb
from boot.registration import credentials
from boot.registration.models import PeBoot
from boot.registration.schemas import CredentialCreate
from cli import app
from core.principal import SYSTEM
from tests.boot.conftest import Boot
from tests.support.netns import BenchNet, bench_network, serial_log, vm_skip
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.waiting import eventually

OVMF = Path("/usr/share/OVMF")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.xdist_group("vm"),
    vm_skip(),
    pytest.mark.skipif(
        not (OVMF / "OVMF_CODE_4M.secboot.fd").exists(), reason="ovmf missing (make system-deps)"
    ),
]

SERIAL = "ACME0002"
DEADLINE = 300.0  # bounds a hang only; the signed boot takes ~50 s under TCG


def strip_signature(signed: Path, out: Path) -> None:
    """The kernel without its Authenticode signature (the PE/COFF certificate table):
    the same code, unsigned."""
    data = bytearray(signed.read_bytes())
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    assert data[pe : pe + 4] == b"PE\0\0"
    optional = pe + 24
    assert struct.unpack_from("<H", data, optional)[0] == 0x20B  # PE32+
    security = optional + 112 + 4 * 8  # data directory 4: the certificate table
    offset, size = struct.unpack_from("<II", data, security)
    assert offset and size and offset + size <= len(data)
    struct.pack_into("<II", data, security, 0, 0)
    out.write_bytes(bytes(data[:offset]))


def secure_boot_vm(
    net: BenchNet, image: Path, workdir: Path, tap: str
) -> tuple[subprocess.Popen[bytes], Path]:
    workdir.mkdir()
    variables = workdir / "OVMF_VARS.fd"
    shutil.copyfile(OVMF / "OVMF_VARS_4M.ms.fd", variables)  # Microsoft's keys enrolled
    serial = workdir / "serial.log"
    code = OVMF / "OVMF_CODE_4M.secboot.fd"
    proc = net.start(
        "qemu-system-x86_64", "-machine", "q35,smm=on", "-accel", "tcg", "-m", "1024",
        "-display", "none", "-no-reboot", "-serial", f"file:{serial}",
        "-global", "driver=cfi.pflash01,property=secure,value=on",
        "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
        "-drive", f"if=pflash,format=raw,unit=1,file={variables}",
        "-smbios", f"type=1,serial={SERIAL},manufacturer=Dell Inc.,product=Latitude 5440",
        "-device", "qemu-xhci", "-drive", f"if=none,id=stick,format=raw,file={image}",
        "-device", "usb-storage,drive=stick,bootindex=0",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
        "-device", "e1000,netdev=n0,romfile=",  # no network boot: the stick only
        log=workdir / "qemu.log",
    )  # fmt: skip
    return proc, serial


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_usb_stick_boots_with_secure_boot_and_an_unsigned_kernel_is_refused(
    boot: Boot, tmp_path: Path
) -> None:
    pe_dir, manifest = cached_pe()
    store_in_catalogue(pe_dir, manifest)
    with boot.db.session() as s:
        _, stick_credential = credentials.create_credential(
            s,
            CredentialCreate(name="sticks", site_code="PAR", bench_code="B1", netboot=False),
            SYSTEM,
        )
    with TestClient(create_app(boot.db)) as api:
        got = api.post(
            "/scan", json={"code": SERIAL, "bench_id": boot.bench.id}, headers=boot.technician
        )
        assert got.status_code == 200, got.text

    with bench_network(tmp_path / "bench", subnet="10.78.0") as net:
        base = net.serve_api(boot.db.url, free_port())
        net.dnsmasq(
            "port=0\ninterface=br0\nbind-interfaces\nlog-dhcp\n"
            f"dhcp-range={net.prefix}.100,{net.prefix}.150,255.255.255.0,1h\n"
        )

        # The stick, through the command line; the credential from a file, never argv.
        cred_file = tmp_path / "credential"
        cred_file.write_text(stick_credential + "\n")
        image = tmp_path / "stick.img"
        result = CliRunner().invoke(app, [
            "pe", "usb", "-o", str(image), "--api-url", base, "--credential-file", str(cred_file),
            "--site", "PAR", "--bench", "B1",
        ])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert image.stat().st_mode & 0o777 == 0o600
        assert stick_credential not in result.output

        # Unsigned kernel first: the boot chain refuses it (GRUB asks shim, shim says no).
        unsigned_kernel = tmp_path / "vmlinuz-unsigned"
        strip_signature(pe_dir / repository.KERNEL, unsigned_kernel)
        unsigned = tmp_path / "unsigned.img"
        usb.build_image(
            unsigned, api_url=base, credential=stick_credential,
            cache_dir=service.PeSettings().cache_dir, kernel=unsigned_kernel,
        )  # fmt: skip
        vm, serial = secure_boot_vm(net, unsigned, tmp_path / "unsigned-vm", net.add_tap("tap0"))
        eventually(
            lambda: "bad shim signature" in serial_log(serial),
            timeout=DEADLINE, every=1.0,
            message=lambda: "no refusal; console:\n" + serial_log(serial)[-3000:],
        )  # fmt: skip
        assert "MASTERLINE-PE" not in serial_log(serial)
        vm.terminate()
        vm.wait(timeout=30)

        vm, serial = secure_boot_vm(net, image, tmp_path / "signed-vm", net.add_tap("tap1"))

        def registered() -> PeBoot | None:
            if vm.poll() is not None:
                raise AssertionError(f"qemu exited: {serial_log(serial)[-3000:]}")
            with boot.db.session(write=False) as s:
                return s.exec(select(PeBoot).where(PeBoot.status == "registered")).first()

        pe = eventually(
            registered, timeout=DEADLINE, every=1.0,
            message=lambda: "never registered; console:\n" + serial_log(serial)[-3000:]
            + "\napi:\n" + serial_log(net.workdir / "api.log")[-2000:],
        )  # fmt: skip
        console = serial_log(serial)
        assert "Booting `Masterline preboot environment'" in console
        with boot.db.session(write=False) as s:
            (report,) = s.exec(select(HardwareReport).where(HardwareReport.boot_id == pe.id)).all()
        # The PE read the SecureBoot EFI variable: the firmware enforced it.
        assert report.secure_boot is True
        assert stick_credential not in console
    with boot.db.session(write=False) as s:
        assert len(s.exec(select(PeBoot)).all()) == 1  # the unsigned stick never got that far
