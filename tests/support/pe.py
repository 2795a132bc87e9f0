"""The PE the tests boot, built once per inputs (packages, builder, agent) and kept in
~/.cache/masterline/pe-builds/<inputs sha256>/: a change to the agent or the builder
builds again, a second test run or xdist worker reuses it. The Debian packages are cached
by ``boot.pe.debian`` in ~/.cache/masterline/pe (``MASTERLINE_PE_CACHE_DIR``)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boot.pe import debian, service

BUILDS = Path.home() / ".cache" / "masterline" / "pe-builds"
APT_LISTS = Path("/var/lib/apt/lists")


def resolved(what: str, resolve: Callable[[], list[debian.Package]]) -> list[debian.Package]:
    """``resolve()``'s packages, kept while apt's lists are unchanged: resolving walks
    the dependencies with one ``apt-cache`` call per level (30-40 s on a loaded machine),
    and the answer depends only on the lists."""
    digest = hashlib.sha256(what.encode())
    for lst in sorted(APT_LISTS.glob("*_Packages*")):
        st = lst.stat()
        digest.update(f"{lst.name} {st.st_mtime_ns} {st.st_size}\n".encode())
    path = BUILDS.parent / "resolved" / f"{digest.hexdigest()}.json"
    try:
        return [debian.Package(*row) for row in json.loads(path.read_text())]
    except (FileNotFoundError, ValueError, TypeError):
        pass
    packages = resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps([[p.name, p.version, p.arch] for p in packages]))
    os.replace(tmp, path)
    return packages


def cached_pe() -> tuple[Path, dict[str, Any]]:
    """A directory holding ``vmlinuz``, ``initrd.img`` and ``pe.json``, and the manifest."""
    packages = resolved("pe", service.resolve_packages)
    key = service.inputs_key(packages, service.source_date_epoch())
    target = BUILDS / key
    BUILDS.mkdir(parents=True, exist_ok=True)
    with (BUILDS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "pe.json").is_file():
            tmp = Path(tempfile.mkdtemp(dir=BUILDS, prefix=".build-"))
            try:
                manifest = service.build_files(tmp)
                (tmp / "pe.json").write_text(json.dumps(manifest, indent=2))
                if target.exists():
                    shutil.rmtree(target)
                tmp.replace(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return target, json.loads((target / "pe.json").read_text())


def store_in_catalogue(pe_dir: Path, manifest: dict[str, Any]) -> None:
    """Copy a cached build into the catalogue of the test's data dir, as current."""
    from boot.pe import repository

    root = repository.catalogue_dir()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".build-"))
    for name in (repository.KERNEL, repository.INITRD):
        shutil.copyfile(pe_dir / name, tmp / name)
    repository.store(tmp, manifest, make_current=True)
