"""Store installers: copying the client's installer files onto the laptop's disk.

A client configuration may name an app whose source is a file in the client's image
store (an MSI for Windows, a .deb for Linux) instead of a package-manager id. The plan
(``configure/build.py``) gives it a fixed place on the installed system
(``C:\\ProgramData\\Masterline\\Installers\\<key>.msi``,
``/var/cache/masterline/installers/<key>.deb``); the offline step, while the laptop is
still in its provisioning environment, writes it there through the mounted installed
system (``<offline root>/ProgramData/Masterline/Installers/<key>.msi`` for Windows, whose
offline root is its C: drive; ``<offline root>/var/cache/…`` for Linux). The configure
step then installs from the laptop's own disk: nothing large crosses WinRM.

Like the image, each installer is read from the central store once per site into
``<site cache>/installers/<sha256>`` (file-locked, verified, written atomically), and
the bytes fed to the laptop are hashed while sending and checked again on the laptop
before the file is moved into place, so a half-written or corrupted copy never has the
final name. A re-run (after a retry or a killed worker) skips files already there with
the right sha256 and overwrites the others.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioning.configure.plan import (
    LINUX_INSTALLER_DIR,
    WINDOWS_INSTALLER_DIR,
    AppPlan,
    AppSource,
    ConfigPlan,
    OsFamily,
)
from provisioning.errors import ChecksumMismatch, CommandFailed
from provisioning.imaging.pacing import CHUNK, TokenBucket
from provisioning.transports.base import FileChunks, Transport

_SHA = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Placement:
    """One installer to put on the laptop."""

    app: str
    label: str
    """What the store calls it, for messages (``image 12``)."""
    source: Path
    """The site-cached copy."""
    sha256: str
    size: int
    relative: str
    """Its path under the offline root (``ProgramData/Masterline/Installers/x.msi``)."""


def offline_relative_path(app: AppPlan, family: OsFamily) -> str:
    """Where ``app``'s installer goes, relative to the mounted installed system.

    :raises CommandFailed: a path outside the installers' directory (the plan only
        makes these, so this guards against a hand-edited plan).
    """
    windows = family is OsFamily.WINDOWS
    base = WINDOWS_INSTALLER_DIR if windows else LINUX_INSTALLER_DIR
    if not app.package.startswith(base + ("\\" if windows else "/")):
        raise CommandFailed(f"app {app.name}: installer path {app.package!r} is not under {base}")
    rel = app.package[len("C:\\") :].replace("\\", "/") if windows else app.package.lstrip("/")
    if ".." in rel.split("/") or not re.fullmatch(r"[A-Za-z0-9_.+/-]+", rel):
        raise CommandFailed(f"app {app.name}: odd installer path {app.package!r}")
    return rel


def store_apps(plan: ConfigPlan) -> list[AppPlan]:
    """The apps (VPN client included) whose installer comes from the image store."""
    return [
        a
        for a in plan.all_apps()
        if a.installer is not None and a.source in (AppSource.MSI, AppSource.DEB)
    ]


def prepare(plan: ConfigPlan, cache_dir: Path) -> list[Placement]:
    """Resolve and site-cache every store installer of ``plan``.

    :raises CommandFailed: an installer is not in the store (one line naming the app).
    :raises ChecksumMismatch: the stored bytes are not the ones catalogued.
    """
    out: list[Placement] = []
    for app in store_apps(plan):
        ref = app.installer
        assert ref is not None
        if ref.problem or not ref.path:
            raise CommandFailed(f"installer of app {app.name}: {ref.problem or 'not in the store'}")
        cached = ensure_cached_file(Path(ref.path), ref.sha256, cache_dir, label=ref.label)
        rel = offline_relative_path(app, plan.os_family)
        out.append(
            Placement(
                app=app.name,
                label=ref.label,
                source=cached,
                sha256=ref.sha256,
                size=ref.size,
                relative=rel,
            )
        )
    return out


def ensure_cached_file(source: Path, sha256: str, cache_dir: Path, *, label: str) -> Path:
    """The site's copy of a store file, read from the central store only once per site.

    :raises CommandFailed: the central file is missing.
    :raises ChecksumMismatch: the central file is not the one catalogued.
    """
    if not _SHA.match(sha256):
        raise ChecksumMismatch(f"installer {label} has no valid sha256 in the catalogue")
    folder = cache_dir / "installers"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / sha256
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if final.is_file():
                return final
            tmp = folder / f"{sha256}.partial"
            digest = hashlib.sha256()
            try:
                with open(source, "rb") as src, open(tmp, "wb") as dst:
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        digest.update(chunk)
                        dst.write(chunk)
                    dst.flush()
                    os.fsync(dst.fileno())
            except FileNotFoundError:
                tmp.unlink(missing_ok=True)
                raise CommandFailed(f"installer {label} is missing from the image store") from None
            if digest.hexdigest() != sha256:
                tmp.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"installer {label} in the image store does not match its sha256"
                )
            os.replace(tmp, final)
            return final
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def place(
    transport: Transport,
    root: str,
    placements: list[Placement],
    *,
    timeout: float,
    check: Callable[[], None] = lambda: None,
    bucket: TokenBucket | None = None,
) -> list[str]:
    """Write each installer under ``root`` (a shell expression: the offline root) unless
    a file with its sha256 is already there. Returns the relative paths written.

    ``bucket`` paces the bytes (the run's share of the site's rate, as for the stream).

    :raises ChecksumMismatch: what arrived on the laptop is not the installer.
    :raises CommandFailed: the laptop-side write failed; transport errors as ``run``.
    """
    if not placements:
        return []
    present = _present(transport, root, placements, timeout=timeout)
    written: list[str] = []
    for p in placements:
        if present.get(p.relative) == p.sha256:
            continue
        check()
        dest = f"{root}/{shlex.quote(p.relative)}"
        folder = f"{root}/{shlex.quote(os.path.dirname(p.relative))}"
        tmp = f"{root}/{shlex.quote(p.relative + '.partial')}"
        script = (
            f"mkdir -p {folder} && cat > {tmp} && "
            f"[ \"$(sha256sum < {tmp} | cut -d' ' -f1)\" = {p.sha256} ] && mv -f {tmp} {dest} "
            f"|| {{ rm -f {tmp}; echo INSTALLER_WRITE_FAILED >&2; exit 1; }}"
        )
        res = transport.put_stream(
            f"sh -c {shlex.quote(script)}",
            FileChunks(p.source, chunk=CHUNK, before=bucket.take if bucket else None),
            timeout=timeout,
        )
        if res.sha256 != p.sha256 or res.bytes_sent != p.size:
            raise ChecksumMismatch(
                f"installer {p.label} of app {p.app}: the bytes sent differ from the site cache"
            )
        if not res.result.ok:
            err = res.result.stderr.strip().splitlines()
            cause = next((ln for ln in err if "INSTALLER_WRITE_FAILED" not in ln), "")
            if "no space left" in res.result.stderr.lower():
                cause = "no space left on the installed system"
            raise CommandFailed(
                f"writing installer {p.label} of app {p.app} failed"
                + (f": {cause[:200]}" if cause else "")
            )
        written.append(p.relative)
    return written


def _present(
    transport: Transport, root: str, placements: list[Placement], *, timeout: float
) -> dict[str, str]:
    """sha256 of each destination already on the laptop (missing ones left out)."""
    lines = [
        f"[ -f {root}/{shlex.quote(p.relative)} ] && "
        f"echo \"$(sha256sum < {root}/{shlex.quote(p.relative)} | cut -d' ' -f1) "
        f'{p.relative}"'
        for p in placements
    ]
    res = transport.run("; ".join(lines) + "; true", timeout=timeout)
    out: dict[str, str] = {}
    for line in res.stdout.splitlines():
        digest, _, rel = line.strip().partition(" ")
        if _SHA.match(digest):
            out[rel] = digest
    return out
