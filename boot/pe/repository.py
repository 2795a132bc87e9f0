"""The PE catalogue: one directory per version under ``<data_dir>/pe/`` holding the
kernel, the initramfs and ``pe.json`` (sha256 and size of each file, the Debian package
versions it was built from), and ``current``, the version network boot serves. A version
is named after its kernel and the sha256 of its two files, so the same build is the same
version. Files, not a table: the API serves them as files, and an operator can copy a
version to another site's server as it is."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from boot.pe.errors import PeNotFound
from core.settings import get_settings

KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST = "pe.json"
CURRENT = "current"


def catalogue_dir() -> Path:
    return get_settings().data_dir / "pe"


def store(build_dir: Path, manifest: dict[str, Any], *, make_current: bool) -> dict[str, Any]:
    """Move a finished build (``build_dir`` holding the kernel and initramfs) into the
    catalogue under its version; an identical version already there is kept."""
    root = catalogue_dir()
    root.mkdir(parents=True, exist_ok=True)
    (build_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    target = root / manifest["version"]
    if target.exists():
        shutil.rmtree(build_dir)
    else:
        build_dir.replace(target)
    if make_current:
        set_current(manifest["version"])
    return get(manifest["version"])


def versions() -> list[dict[str, Any]]:
    """Every stored version's manifest, newest build first."""
    root = catalogue_dir()
    if not root.is_dir():
        return []
    found = []
    for manifest in root.glob(f"*/{MANIFEST}"):
        try:
            found.append(json.loads(manifest.read_text()))
        except (OSError, ValueError):
            continue  # a half-copied version is not offered
    return sorted(found, key=lambda m: (m.get("built_at", ""), m["version"]), reverse=True)


def get(version: str) -> dict[str, Any]:
    if "/" in version or version.startswith(".") or not version:
        raise PeNotFound(repr(version))
    path = catalogue_dir() / version / MANIFEST
    try:
        manifest: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise PeNotFound(version) from e
    return manifest


def current_version() -> str | None:
    try:
        return (catalogue_dir() / CURRENT).read_text().strip() or None
    except OSError:
        return None


def set_current(version: str) -> None:
    get(version)
    tmp = catalogue_dir() / f".{CURRENT}.tmp"
    tmp.write_text(version + "\n")
    os.replace(tmp, catalogue_dir() / CURRENT)


def file_path(version: str, name: str) -> Path:
    """The kernel or initramfs of a stored version."""
    if name not in (KERNEL, INITRD):
        raise PeNotFound(f"{version}/{name}")
    get(version)
    return catalogue_dir() / version / name
