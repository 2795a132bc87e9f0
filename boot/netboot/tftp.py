"""The TFTP root of a bench whose laptops boot with Secure Boot on (``masterline boot
dnsmasq-config --secure-boot``): Debian's iPXE is not signed by Microsoft, so UEFI
firmware is given Debian's signed chain instead, all from this directory:

```
shimx64.efi              Microsoft-signed shim: what the firmware's PXE client fetches
grubx64.efi              Debian-signed netboot GRUB (grubnetx64): shim fetches it from its own
                         TFTP directory under this name and verifies it
grub/grub.cfg            the bench's menu (grubnetx64's prefix is /grub on its TFTP server)
pe/<version>/vmlinuz     the PE's Debian-signed kernel (GRUB asks shim to verify it)
pe/<version>/initrd.img  over TFTP: Debian's signed GRUB has no http module
undionly.kpxe            BIOS laptops: Debian's iPXE, as without Secure Boot
```

The grub.cfg carries the bench's enrollment credential (the PE's command line, as the
iPXE script does), so it is written mode 0600 and owned by the user dnsmasq runs as
(``dnsmasq`` on Debian), the directory 0700: no other local user reads it. dnsmasq serves
it only on the bench interface, with ``tftp-secure`` (only files owned by its user). A
dnsmasq running as root would refuse it: as root it serves world-readable files only
(dnsmasq(8)). What no file mode can do: hide it from the bench network, which can fetch
it by TFTP as it can fetch the iPXE script (docs/boot.md, threat model)."""

from __future__ import annotations

import filecmp
import os
import pwd
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from boot.netboot import service
from boot.netboot.service import SAFE, BenchBoot
from boot.pe import repository as pe_catalogue
from boot.pe import signed
from boot.pe.errors import PeBuildError
from core.errors import InvalidInput

SHIM = "shimx64.efi"
GRUB = "grubx64.efi"
"""shim's default second stage, fetched from the directory shim itself came from."""
GRUB_CFG = "grub/grub.cfg"
BIOS_LOADER = "undionly.kpxe"
MARKER = ".masterline-tftp"
"""Marks a directory this module wrote: it removes stale PE versions there, so it never
writes into a directory it did not make."""


@dataclass(frozen=True)
class TftpRoot:
    root: Path
    pe_version: str
    owner: str
    files: list[str]


def _owner_ids(owner: str) -> tuple[int, int]:
    try:
        user = pwd.getpwnam(owner)
    except KeyError as e:
        raise InvalidInput(f"--tftp-user: no such user {owner!r} (the user dnsmasq runs as)") from e
    return user.pw_uid, user.pw_gid


def _write(path: Path, data: bytes, *, mode: int, ids: tuple[int, int]) -> None:
    """Write ``path`` whole or not at all: a laptop booting meanwhile gets the old file
    or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        os.fchown(fd, *ids)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy(src: Path, dest: Path, *, ids: tuple[int, int]) -> None:
    if dest.is_file() and dest.stat().st_uid == ids[0] and filecmp.cmp(src, dest, shallow=False):
        return  # unchanged: not rewritten under a laptop that may be fetching it
    _write(dest, src.read_bytes(), mode=0o644, ids=ids)


def _prepare(root: Path, ids: tuple[int, int]) -> None:
    if root.exists() and not root.is_dir():
        raise InvalidInput(f"--tftp-root {root} is not a directory")
    # dnsmasq checks its TFTP root at start and refuses to start if its user cannot
    # reach it: say so now, in one line, rather than leave a dnsmasq that will not start.
    for parent in root.absolute().parents:
        if parent.exists():
            st = parent.stat()
            if st.st_uid != ids[0] and not st.st_mode & stat.S_IXOTH:
                raise InvalidInput(f"--tftp-root: dnsmasq's user cannot search {parent}")
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).exists():
        raise InvalidInput(
            f"--tftp-root {root} is not empty and was not written by Masterline: "
            "give a directory of its own"
        )
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, *ids)
    os.chmod(root, 0o700)
    (root / MARKER).touch()


def write_root(
    root: Path,
    *,
    boot: BenchBoot,
    api_url: str,
    ipxe_dir: Path,
    cache_dir: Path,
    owner: str = "dnsmasq",
) -> TftpRoot:
    """Write (or refresh) the bench's TFTP root for Secure Boot network boot.

    :raises InvalidInput: unknown owner, a directory not Masterline's, an API address
        that is not one safe token, or files that cannot be given to ``owner``.
    :raises PeBuildError: no PE built, or the signed packages cannot be fetched.
    """
    ids = _owner_ids(owner)
    if not SAFE.match(api_url):
        raise InvalidInput("--api-url: not a single safe token for the kernel command line")
    version = pe_catalogue.current_version()
    if version is None:
        raise PeBuildError("no PE is built: run `masterline pe build` first")
    bios = ipxe_dir / BIOS_LOADER
    if not bios.is_file():
        raise PeBuildError(f"{bios} is missing (Debian package ipxe)")
    try:
        _prepare(root, ids)
        with tempfile.TemporaryDirectory(prefix="masterline-tftp-") as tmp:
            chain = signed.fetch(cache_dir, Path(tmp))
            _copy(chain.shim, root / SHIM, ids=ids)
            _copy(chain.grubnet, root / GRUB, ids=ids)
        for name in (pe_catalogue.KERNEL, pe_catalogue.INITRD):
            _copy(pe_catalogue.file_path(version, name), root / "pe" / version / name, ids=ids)
        _copy(bios, root / BIOS_LOADER, ids=ids)
        os.chown(root / "pe", *ids)
        os.chown(root / "pe" / version, *ids)
        config = signed.grub_cfg(
            title=f"Masterline network boot, bench {boot.bench.code} of site {boot.site.code}",
            kernel=f"/pe/{version}/{pe_catalogue.KERNEL}",
            initrd=f"/pe/{version}/{pe_catalogue.INITRD}",
            cmdline=service.pe_cmdline(boot, api_url=api_url),
        )
        _write(root / GRUB_CFG, config.encode(), mode=0o600, ids=ids)
        os.chown(root / "grub", *ids)
    except PermissionError as e:
        raise InvalidInput(
            f"cannot write {root} for user {owner}: run as root ({e.strerror})"
        ) from e
    # Versions no longer in the catalogue: nothing can boot them any more. The ones still
    # there stay, for a laptop that read the previous grub.cfg and is fetching its kernel.
    stored = {m["version"] for m in pe_catalogue.versions()}
    for old in (root / "pe").iterdir():
        if old.name not in stored and old.is_dir():
            shutil.rmtree(old)
    files = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != MARKER
    )
    return TftpRoot(root=root, pe_version=version, owner=owner, files=files)
