"""``masterline pe usb``: a bootable USB stick image for laptops whose firmware cannot
network-boot, that boots with Secure Boot on: Microsoft-signed shim (Debian's
shim-signed) → Debian-signed GRUB (grub-efi-amd64-signed) → the PE's Debian-signed
kernel, on a GPT disk with one EFI system partition. The FAT file system is written by
mtools into a file and the GPT around it by ``gpt``: nothing is mounted.

The stick carries the API address and an enrollment credential in its grub.cfg, so it
is written with mode 0600: create that credential with ``--no-netboot`` (only its hash
is kept server-side) and one per batch of sticks, to revoke a lost one alone."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from boot.pe import gpt, repository, signed
from boot.pe.errors import PeBuildError
from core.errors import InvalidInput

# One token each on the kernel command line, as network boot requires.
VALUE = re.compile(r"^[A-Za-z0-9._:/+=@%,~-]{1,512}$")
# FAT cannot date anything before 1980-01-01.
FAT_EPOCH = 315532800
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def grub_cfg(*, api_url: str, credential: str, site: str | None, bench: str | None) -> str:
    args = {"masterline.api": api_url.rstrip("/"), "masterline.enroll": credential}
    if site:
        args["masterline.site"] = site
    if bench:
        args["masterline.bench"] = bench
    for key, value in args.items():
        if not VALUE.match(value):
            raise InvalidInput(f"{key.removeprefix('masterline.')}: not a single safe token")
    cmdline = " ".join(f"{k}={v}" for k, v in args.items())
    return signed.grub_cfg(
        title="Masterline PE (USB stick)",
        kernel="/masterline/vmlinuz",
        initrd="/masterline/initrd.img",
        cmdline=f"console=tty0 console=ttyS0,115200 quiet {cmdline}",
    )


def _mtools(*cmd: str, epoch: int) -> None:
    if shutil.which(cmd[0]) is None:
        raise PeBuildError(f"{cmd[0]} is missing on the build host (Debian package mtools)")
    # mtools stamps every directory entry with "now" unless SOURCE_DATE_EPOCH says
    # otherwise: the PE's own epoch makes two sticks of one PE and config the same bytes.
    env = {
        **os.environ,
        "MTOOLS_SKIP_CHECK": "1",
        "LC_ALL": "C.UTF-8",
        "SOURCE_DATE_EPOCH": str(epoch),
    }
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeBuildError(f"{cmd[0]} failed: {last}")


def build_image(
    out: Path,
    *,
    api_url: str,
    credential: str,
    site: str | None = None,
    bench: str | None = None,
    version: str | None = None,
    cache_dir: Path,
    kernel: Path | None = None,
) -> dict[str, Any]:
    """Write the stick image to ``out`` (mode 0600); ``kernel`` replaces the PE's (a test
    shows that Secure Boot refuses an unsigned one)."""
    if not URL.match(api_url):
        raise InvalidInput(f"--api-url must be an http:// or https:// URL, got {api_url!r}")
    chosen = version or repository.current_version()
    if chosen is None:
        raise PeBuildError("no PE is built: run `masterline pe build` first")
    manifest = repository.get(chosen)
    config = grub_cfg(api_url=api_url, credential=credential, site=site, bench=bench)
    with tempfile.TemporaryDirectory(prefix="masterline-usb-") as tmp_name:
        tmp = Path(tmp_name)
        chain = signed.fetch(cache_dir, tmp / "pkgs")
        payload = {
            "::/EFI/BOOT/BOOTX64.EFI": chain.shim,
            "::/EFI/BOOT/grubx64.efi": chain.grub,
            "::/masterline/vmlinuz": kernel or repository.file_path(chosen, repository.KERNEL),
            "::/masterline/initrd.img": repository.file_path(chosen, repository.INITRD),
        }
        cfg = tmp / "grub.cfg"
        fd = os.open(cfg, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(config)
        # Debian's signed GRUB reads $prefix/grub.cfg (/EFI/debian), else its own dir's.
        payload["::/EFI/debian/grub.cfg"] = cfg
        payload["::/EFI/BOOT/grub.cfg"] = cfg
        needed = sum(p.stat().st_size for p in payload.values())
        mib = (needed + 8 * 2**20) // 2**20 + 1  # room for the FAT itself
        esp = tmp / "esp.img"
        with esp.open("wb") as f:
            f.truncate(mib * 2**20)
        serial = hashlib.sha256(chosen.encode()).hexdigest()[:8]
        epoch = max(int(manifest.get("source_date_epoch") or 0), FAT_EPOCH)
        # The GUIDs come from what the stick holds, not from chance: a rebuild of the same
        # stick is byte-identical (and so checkable by its sha256), while sticks of other
        # credentials or PEs still differ.
        seed = hashlib.sha256(f"{chosen}\n{config}".encode()).hexdigest()
        disk_guid = uuid.uuid5(uuid.NAMESPACE_OID, f"masterline-usb-disk:{seed}")
        part_guid = uuid.uuid5(uuid.NAMESPACE_OID, f"masterline-usb-esp:{seed}")
        fat32 = ["-F"] if mib >= 64 else []  # else FAT16, which mformat picks for its size
        _mtools("mformat", "-i", str(esp), *fat32, "-v", "MLPE", "-N", serial, "::", epoch=epoch)
        for d in ("::/EFI", "::/EFI/BOOT", "::/EFI/debian", "::/masterline"):
            _mtools("mmd", "-i", str(esp), d, epoch=epoch)
        for dest, src in sorted(payload.items()):
            _mtools("mcopy", "-i", str(esp), str(src), dest, epoch=epoch)
        partial = out.with_name(f".{out.name}.partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        try:
            gpt.write_disk(
                esp,
                partial,
                disk_guid=disk_guid,
                part_guid=part_guid,
                name="Masterline PE",
            )
            partial.replace(out)
        finally:
            partial.unlink(missing_ok=True)
    return {
        "image": str(out),
        "size": out.stat().st_size,
        "pe_version": chosen,
        "kernel_sha256": manifest["files"][repository.KERNEL]["sha256"] if kernel is None else None,
    }
