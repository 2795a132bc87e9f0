"""``masterline pe usb``'s image without booting it (tests/boot/pe/test_vm_usb.py boots
it): a GPT that checks out (signatures, CRCs, the backup header), an EFI system partition
mtools reads back with shim as the removable-media boot loader, GRUB and the PE, a
grub.cfg with the API and the credential, mode 0600; and one-line errors."""

from __future__ import annotations

import os
import struct
import subprocess
import uuid
import zlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from boot.pe import gpt, repository, service, usb
from cli import app
from core.errors import InvalidInput, MasterlineError

CREDENTIAL = "mle_usbTestCredential0123456789abcdefghijklm"


def fake_pe(tmp_path: Path) -> None:
    build = tmp_path / "fake-pe"
    build.mkdir()
    (build / repository.KERNEL).write_bytes(b"MZ kernel" * 1000)
    (build / repository.INITRD).write_bytes(b"initrd" * 5000)
    manifest = {
        "version": "6.1.0-99-amd64-0123456789ab",
        "built_at": "2026-12-02T00:00:00+00:00",
        "files": {repository.KERNEL: {"sha256": "1" * 64, "size": 9000}},
    }
    repository.store(build, manifest, make_current=True)


def check_gpt(image: Path) -> tuple[int, int]:
    """The ESP's first and last LBA, after checking both headers and their CRCs."""
    data = image.read_bytes()
    assert data[510:512] == b"\x55\xaa" and data[446 + 4] == 0xEE  # protective MBR
    total = len(data) // gpt.SECTOR

    def header(lba: int) -> tuple[int, int, tuple[int, int]]:
        raw = data[lba * gpt.SECTOR : lba * gpt.SECTOR + 92]
        assert raw[:8] == b"EFI PART"
        crc = struct.unpack_from("<I", raw, 16)[0]
        assert zlib.crc32(raw[:16] + b"\0\0\0\0" + raw[20:]) == crc
        current, backup = struct.unpack_from("<QQ", raw, 24)
        array_lba, entries, size, array_crc = struct.unpack_from("<QIII", raw, 72)
        array = data[array_lba * gpt.SECTOR : array_lba * gpt.SECTOR + entries * size]
        assert zlib.crc32(array) == array_crc
        type_guid = uuid.UUID(bytes_le=array[:16])
        first, last = struct.unpack_from("<QQ", array, 32)
        assert type_guid == gpt.ESP_TYPE
        return current, backup, (first, last)

    current, backup, esp = header(1)
    assert (current, backup) == (1, total - 1)
    assert header(total - 1) == (total - 1, 1, esp)  # the backup agrees
    return esp


def test_the_stick_image_has_a_valid_gpt_and_an_esp_with_the_signed_chain(tmp_path: Path) -> None:
    fake_pe(tmp_path)
    image = tmp_path / "stick.img"
    usb.build_image(
        image, api_url="http://10.20.0.1:8000", credential=CREDENTIAL, site="PAR",
        bench="B1", cache_dir=service.PeSettings().cache_dir,
    )  # fmt: skip
    assert image.stat().st_mode & 0o777 == 0o600
    first, last = check_gpt(image)
    assert first == gpt.FIRST_LBA and last > first
    esp = f"{image}@@{first * gpt.SECTOR}"
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}

    def mtype(path: str) -> bytes:
        return subprocess.run(
            ["mtype", "-i", esp, path], capture_output=True, check=True, env=env, timeout=60
        ).stdout

    shim = mtype("::/EFI/BOOT/BOOTX64.EFI")
    assert shim[:2] == b"MZ" and b"Microsoft" in shim  # signed by Microsoft's UEFI CA
    assert mtype("::/EFI/BOOT/grubx64.efi")[:2] == b"MZ"
    assert mtype("::/masterline/vmlinuz") == (b"MZ kernel" * 1000)
    cfg = mtype("::/EFI/debian/grub.cfg").decode()
    assert cfg == mtype("::/EFI/BOOT/grub.cfg").decode()
    assert (
        f"masterline.api=http://10.20.0.1:8000 masterline.enroll={CREDENTIAL} "
        "masterline.site=PAR masterline.bench=B1" in cfg
    )
    assert "initrd /masterline/initrd.img" in cfg


def test_a_rebuilt_stick_is_byte_identical_and_another_credential_differs(
    tmp_path: Path,
) -> None:
    fake_pe(tmp_path)
    cache = service.PeSettings().cache_dir

    def build(name: str, credential: str) -> bytes:
        image = tmp_path / name
        usb.build_image(image, api_url="http://10.20.0.1:8000", credential=credential,
                        site="PAR", bench="B1", cache_dir=cache)  # fmt: skip
        return image.read_bytes()

    first = build("a.img", CREDENTIAL)
    assert build("b.img", CREDENTIAL) == first
    other = build("c.img", CREDENTIAL[:-1] + "Z")
    assert other != first and len(other) == len(first)
    # The GPT's disk GUID follows the content, so the two sticks are told apart.
    assert other[gpt.SECTOR + 56 : gpt.SECTOR + 72] != first[gpt.SECTOR + 56 : gpt.SECTOR + 72]


def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    fake_pe(tmp_path)
    out = tmp_path / "stick.img"
    with pytest.raises(InvalidInput, match="not a single safe token"):
        usb.build_image(
            out, api_url="http://x", credential="a b", cache_dir=service.PeSettings().cache_dir
        )
    with pytest.raises(InvalidInput, match="api-url"):
        usb.build_image(
            out, api_url="ftp://x", credential=CREDENTIAL, cache_dir=service.PeSettings().cache_dir
        )
    result = CliRunner().invoke(app, [
        "pe", "usb", "-o", str(out), "--api-url", "http://x",
        "--credential-file", str(tmp_path / "missing"),
    ])  # fmt: skip
    assert isinstance(result.exception, MasterlineError)
    assert result.exception.exit_code == 2 and "cannot read" in result.exception.message
    assert not out.exists() and list(tmp_path.glob(".stick*")) == []
