"""The local content-addressed image store.

Layout under ``Settings.resolved_image_store_dir``::

    sha256/ab/abcdef…   published files, named by the sha256 of their bytes
    tmp/                uploads in progress (``put-*`` and ``tus-*`` partial files)
    .lock               shared by publishers, exclusive for gc (see below)

A file reaches ``sha256/`` only through ``publish``: written in ``tmp/`` on the same
filesystem, fsynced, verified, then renamed (atomic), and the directory fsynced; so a
reader never sees half a file. The same bytes uploaded twice are stored once: the second
publish finds the name taken and drops its temporary copy.

``publish`` and ``gc`` coordinate through an ``flock`` on ``.lock``: publishers hold it
shared until their catalogue row is committed, gc holds it exclusive while it decides
which files no row needs; otherwise gc could delete a file that an upload finishing at
the same moment had just found already present.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from core.files import PRIVATE_FILE, private_dir
from core.settings import get_settings
from images.errors import StorageFull, StoredFileMissing
from images.models import Image, ImageStatus

HEX = frozenset("0123456789abcdef")


def _check_sha(sha256: str) -> str:
    if len(sha256) != 64 or not set(sha256) <= HEX:
        raise ValueError("not a lower-case hex sha256")
    return sha256


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_disk_full(e: OSError) -> bool:
    return e.errno in (errno.ENOSPC, errno.EDQUOT)


class Store:
    """One store directory. Cheap to build; builds its directories on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sha_dir = root / "sha256"
        self.tmp_dir = root / "tmp"

    def ensure(self) -> None:
        # Clients' master images: owner-only (core.files), like the rest of data_dir.
        private_dir(self.root)
        private_dir(self.sha_dir)
        private_dir(self.tmp_dir)

    def path_for(self, sha256: str) -> Path:
        sha256 = _check_sha(sha256)
        return self.sha_dir / sha256[:2] / sha256

    def has(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def temp_path(self, kind: str, name: str | None = None) -> Path:
        """A path in ``tmp/`` for an upload (``kind`` is ``put`` or ``tus``)."""
        self.ensure()
        return self.tmp_dir / f"{kind}-{name or secrets.token_hex(16)}.part"

    def publish(self, temp: Path, sha256: str) -> Path:
        """Move a verified, fsynced temporary file to its content address; if the same
        bytes are already stored, drop the temporary copy instead.

        Call it with ``shared_lock()`` held until the catalogue row is committed.

        :raises StorageFull: the directory entry could not be created (disk full).
        """
        final = self.path_for(sha256)
        try:
            private_dir(final.parent)
            if final.exists():
                temp.unlink(missing_ok=True)
                return final
            os.chmod(temp, PRIVATE_FILE)
            os.replace(temp, final)
            fsync_dir(final.parent)
        except OSError as e:
            if is_disk_full(e):
                raise StorageFull("the image store's disk is full; free space and retry") from e
            raise
        return final

    def remove(self, sha256: str) -> int:
        """Delete a stored file; returns the bytes reclaimed (0 if it was not there)."""
        path = self.path_for(sha256)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def stored_hashes(self) -> Iterator[str]:
        """Every content address present on disk."""
        if not self.sha_dir.is_dir():
            return
        for sub in sorted(self.sha_dir.iterdir()):
            if sub.is_dir():
                for f in sorted(sub.iterdir()):
                    if f.is_file() and len(f.name) == 64 and set(f.name) <= HEX:
                        yield f.name

    @contextlib.contextmanager
    def _lock(self, mode: int) -> Iterator[None]:
        private_dir(self.root)
        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # releases the flock

    def shared_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by a publisher from ``publish`` until its row is committed."""
        return self._lock(fcntl.LOCK_SH)

    def exclusive_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held by gc while it decides and deletes."""
        return self._lock(fcntl.LOCK_EX)


def get_store() -> Store:
    """The store of this process's settings (read each time, so tests can point it at a
    temporary directory)."""
    return Store(get_settings().resolved_image_store_dir)


def path_of(image: Image) -> Path:
    """The stored file of a published image on the local store, for the pipeline to
    stream (its bytes are ``image.stored_sha256``; decompress if ``image.format`` says so).

    A retired image still has a path until ``images gc`` reclaims it, so a run that
    started with it can finish; new runs never resolve a retired image.

    :raises StoredFileMissing: not published yet, reclaimed by gc, or the file is gone.
    """
    if image.status not in (ImageStatus.AVAILABLE, ImageStatus.RETIRED):
        raise StoredFileMissing(f"image {image.id} is {image.status}, not published")
    if image.purged_at is not None:
        raise StoredFileMissing(f"image {image.id} was retired and its file reclaimed")
    path = get_store().path_for(image.stored_sha256)
    if not path.is_file():
        raise StoredFileMissing(f"image {image.id}: stored file missing from the image store")
    return path
