"""Debian packages for the PE, at build time only: resolved with ``apt-cache``, fetched
with ``apt-get download`` into a cache (a package version is fetched once, whatever
builds it), unpacked with ``dpkg-deb -x``. Nothing is installed on the build host and
nothing is fetched when the product runs: the PE's files are all in its initramfs."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from boot.pe.errors import PeBuildError

APT_TIMEOUT = 600


@dataclass(frozen=True, order=True)
class Package:
    name: str
    version: str
    arch: str

    @property
    def filename(self) -> str:
        # apt-get download's own naming: the epoch's colon is URL-quoted.
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


def _run(cmd: list[str], *, cwd: Path | None = None) -> str:
    if shutil.which(cmd[0]) is None:
        raise PeBuildError(f"{cmd[0]} is missing on the build host: a Debian host is needed")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(
            cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT, check=False
        )
    except subprocess.TimeoutExpired as e:
        raise PeBuildError(f"{cmd[0]} did not finish within {APT_TIMEOUT} s") from e
    if done.returncode != 0:
        errors = [ln for ln in done.stderr.splitlines() if ln.startswith("E:")]
        last = (errors or done.stderr.strip().splitlines() or ["no output"])[-1]
        raise PeBuildError(f"{' '.join(cmd[:2])} failed: {last}")
    return done.stdout


def direct_depends(names: Iterable[str]) -> dict[str, list[str]]:
    """Each package's Depends and Pre-Depends (the first of each alternative group;
    virtual packages left out)."""
    out = _run(["apt-cache", "depends", "--important", *sorted(set(names))])
    deps: dict[str, list[str]] = {}
    current: list[str] = []
    skip_next = False
    for line in out.splitlines():
        if not line.startswith(" "):
            current = deps.setdefault(line.strip(), [])
            skip_next = False
            continue
        m = re.match(r"^ (\|| )(?:Pre)?Depends: (\S+)", line)
        if not m:
            continue
        alternative_follows = m.group(1) == "|"
        name = m.group(2).split(":")[0]
        if not skip_next and not name.startswith("<"):
            current.append(name)
        skip_next = alternative_follows
    return deps


def closure(roots: Iterable[str], *, follow: Callable[[str], bool]) -> set[str]:
    """``roots`` and, recursively, the dependencies ``follow`` accepts (the shared
    libraries; not debconf, perl or the init system a package's scripts need)."""
    seen: set[str] = set(roots)
    frontier = set(seen)
    while frontier:
        found = direct_depends(frontier)
        frontier = {d for ds in found.values() for d in ds if follow(d)} - seen
        seen |= frontier
    return seen


def candidates(names: Iterable[str]) -> list[Package]:
    """The version apt would install of each package, as it stands in the apt lists."""
    out = _run(["apt-cache", "show", "--no-all-versions", *sorted(set(names))])
    packages: list[Package] = []
    fields: dict[str, str] = {}
    for line in [*out.splitlines(), ""]:
        if not line.strip():
            if {"Package", "Version", "Architecture"} <= fields.keys():
                packages.append(
                    Package(fields["Package"], fields["Version"], fields["Architecture"])
                )
            fields = {}
        elif not line.startswith(" ") and ": " in line:
            key, value = line.split(": ", 1)
            fields[key] = value.strip()
    missing = set(names) - {p.name for p in packages}
    if missing:
        raise PeBuildError(f"no such Debian package: {', '.join(sorted(missing))}")
    return sorted(packages)


@contextmanager
def _locked(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two builds at once share the downloads
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def download(packages: Iterable[Package], cache: Path) -> dict[Package, Path]:
    """The .deb of each package, fetched into ``cache`` unless it is there already."""
    wanted = sorted(set(packages))
    with _locked(cache):
        missing = [p for p in wanted if not (cache / p.filename).is_file()]
        if missing:
            with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
                _run(
                    ["apt-get", "download", *(f"{p.name}={p.version}" for p in missing)],
                    cwd=Path(tmp),
                )
                for p in missing:
                    got = Path(tmp) / p.filename
                    if not got.is_file():
                        raise PeBuildError(f"apt-get download gave no {p.filename}")
                    got.replace(cache / p.filename)
    return {p: cache / p.filename for p in wanted}


def unpack(debs: Iterable[Path], into: Path) -> None:
    """Every package's files under ``into`` (no maintainer scripts run)."""
    into.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs):
        _run(["dpkg-deb", "-x", str(deb), str(into)])
