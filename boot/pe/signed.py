"""Debian's signed boot chain for Secure Boot: Microsoft-signed shim (shim-signed), then
Debian-signed GRUB (grub-efi-amd64-signed), then the PE's Debian-signed kernel. Shared by
the USB stick (``usb``) and Secure Boot network boot (``boot.netboot.tftp``): fetched with
the PE builder's cache (a package version is downloaded once), unpacked, never installed.

The GRUB package holds two images: ``grubx64.efi`` (disks: reads ``/EFI/debian/grub.cfg``)
and ``grubnetx64.efi``, the netboot one (measured, Debian 12's 2.06-13+deb12u2): its
embedded prefix is ``/grub`` on the TFTP server it was loaded from, its memdisk config
sources ``$prefix/x86_64-efi/grub.cfg`` if present, else ``$prefix/grub.cfg``; it carries
``efinet`` and ``tftp`` but **no** ``http`` module, and Secure Boot forbids loading one,
so its kernel and initramfs come over TFTP."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from boot.pe import debian
from boot.pe.errors import PeBuildError

PACKAGES = ("shim-signed", "grub-efi-amd64-signed")
SHIM = "usr/lib/shim/shimx64.efi.signed"
GRUB = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
GRUBNET = "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"


@dataclass(frozen=True)
class SignedBootFiles:
    shim: Path
    grub: Path
    """GRUB for disks (the USB stick)."""
    grubnet: Path
    """GRUB for network boot (module docstring: where it reads its grub.cfg)."""


def fetch(cache_dir: Path, into: Path) -> SignedBootFiles:
    """Debian's signed shim and GRUB images, fetched (cached) and unpacked into ``into``.

    :raises PeBuildError: a package cannot be fetched or lacks one of the images.
    """
    packages = debian.candidates(PACKAGES)
    debian.unpack(debian.download(packages, cache_dir).values(), into)
    files = SignedBootFiles(shim=into / SHIM, grub=into / GRUB, grubnet=into / GRUBNET)
    for what, path in vars(files).items():
        if not path.is_file():
            raise PeBuildError(f"the {what} package has no {path.relative_to(into)}")
    return files


def grub_cfg(*, title: str, kernel: str, initrd: str, cmdline: str) -> str:
    """A GRUB menu with one entry that boots ``kernel`` with ``initrd``. GRUB's ``linux``
    asks shim to verify the kernel: an unsigned one is refused (``bad shim signature``).
    ``cmdline`` is one line of safe tokens (the callers check them)."""
    return (
        f"# {title}. Secure Boot: shim verifies this GRUB, GRUB the kernel.\n"
        "set timeout=1\nset default=0\nterminal_output console\n"
        'menuentry "Masterline preboot environment" {\n'
        f"  linux {kernel} {cmdline}\n"
        f"  initrd {initrd}\n"
        "}\n"
    )
