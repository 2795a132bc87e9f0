"""``masterline pe build``: resolve and fetch the Debian packages (cached), unpack them,
assemble the PE's tree, write the kernel and a reproducible initramfs, store them in the
catalogue with their sha256."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

import boot.agent
from boot.pe import cpio, debian, repository, rootfs
from boot.pe.errors import PeBuildError

KERNEL_PACKAGE = "linux-image-amd64"  # Debian's signed kernel, through its meta package
PE_PACKAGES = (
    "busybox-static",
    "dropbear-bin",
    "python3-minimal",
    "libpython3-stdlib",
    "zstd",
    "util-linux",
    "fdisk",
    "nvme-cli",
    "smartmontools",
    "dmidecode",
)


class PeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MASTERLINE_PE_", extra="ignore")

    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "masterline" / "pe",
        description="Where fetched Debian packages are kept between builds.",
    )


def follow(name: str) -> bool:
    """Which dependencies the PE takes along: shared libraries, the versioned Python
    and kernel behind their meta packages; not the maintainer scripts' tools."""
    return bool(
        (name.startswith("lib") and not name.endswith(("-perl", "-bin", "-dev")))
        or name == "zlib1g"  # a library package not named lib*
        or re.fullmatch(r"python3\.\d+-minimal", name)
        or re.fullmatch(r"linux-image-\d.*-amd64", name)
    )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def builder_sources() -> list[Path]:
    """The files whose content decides the PE besides the packages: the agent and this
    builder (its /init, its lists)."""
    here = Path(__file__).parent
    agent = Path(boot.agent.__file__).parent
    return sorted([*here.glob("*.py"), *(here / "files").iterdir(), *agent.glob("*.py")])


def resolve_packages() -> list[debian.Package]:
    names = debian.closure([KERNEL_PACKAGE, *PE_PACKAGES], follow=follow)
    return debian.candidates(names)


def inputs_key(packages: list[debian.Package], epoch: int) -> str:
    """The sha256 of everything a build depends on: same key, same bytes."""
    digest = hashlib.sha256(f"epoch={epoch}\n".encode())
    for p in packages:
        digest.update(f"{p.filename}\n".encode())
    for src in builder_sources():
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    return digest.hexdigest()


def source_date_epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    if not value.isdigit():
        raise PeBuildError("SOURCE_DATE_EPOCH must be a number of seconds")
    return int(value)


def build_files(out_dir: Path, *, cache_dir: Path | None = None) -> dict[str, Any]:
    """Build ``vmlinuz`` and ``initrd.img`` into ``out_dir``; returns the manifest
    (without storing anything)."""
    cache = cache_dir or PeSettings().cache_dir
    epoch = source_date_epoch()
    packages = resolve_packages()
    kernels = [p for p in packages if re.fullmatch(r"linux-image-\d.*-amd64", p.name)]
    if len(kernels) != 1:
        raise PeBuildError(f"expected one kernel package, apt resolved {len(kernels)}")
    kernel_version = kernels[0].name.removeprefix("linux-image-")
    debs = debian.download(packages, cache)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".staging-") as tmp:
        staging = Path(tmp)
        debian.unpack(debs.values(), staging)
        vmlinuz = staging / "boot" / f"vmlinuz-{kernel_version}"
        if not vmlinuz.is_file():
            raise PeBuildError(f"{kernels[0].name} has no boot/vmlinuz-{kernel_version}")
        python = next((p for p in packages if re.fullmatch(r"python3\.\d+-minimal", p.name)), None)
        if python is None:
            raise PeBuildError("apt resolved no python3.X-minimal package")
        release = f"masterline-pe kernel {kernel_version} {python.name} {python.version}"
        tree = rootfs.assemble(
            staging,
            kernel_version=kernel_version,
            release=release,
            agent_dir=Path(boot.agent.__file__).parent,
        )
        shutil.copyfile(vmlinuz, out_dir / repository.KERNEL)
        cpio.write_gzip(tree.nodes, out_dir / repository.INITRD, mtime=epoch)
    digests = {name: sha256_file(out_dir / name) for name in (repository.KERNEL, repository.INITRD)}
    files = {
        name: {"sha256": digest, "size": (out_dir / name).stat().st_size}
        for name, digest in digests.items()
    }
    combined = hashlib.sha256("".join(digests.values()).encode()).hexdigest()
    return {
        "version": f"{kernel_version}-{combined[:12]}",
        "kernel_version": kernel_version,
        "release": release,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "source_date_epoch": epoch,
        "inputs_sha256": inputs_key(packages, epoch),
        "packages": [{"name": p.name, "version": p.version} for p in packages],
        "files": files,
    }


def build(*, cache_dir: Path | None = None, make_current: bool = True) -> dict[str, Any]:
    """Build a PE and store it in the catalogue; returns its manifest."""
    root = repository.catalogue_dir()
    root.mkdir(parents=True, exist_ok=True)
    build_dir = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    try:
        manifest = build_files(build_dir, cache_dir=cache_dir)
        return repository.store(build_dir, manifest, make_current=make_current)
    finally:
        if build_dir.exists():
            shutil.rmtree(build_dir)
