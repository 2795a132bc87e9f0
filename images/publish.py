"""The end of an upload: verify, rename into the store, mark the image published; and
settle an image whose server died in the middle of that.

Publishing moves an image ``uploading`` → ``verifying`` (committed, so nothing else
publishes or cancels it meanwhile) → rename into the content-addressed store →
``available``. A server killed between the first commit and the last left the image
``verifying``, answering 409 to everything until an hour-later gc. Now the publisher
holds an exclusive ``flock`` on ``tmp/publish-<image id>.lock`` throughout; the kernel
drops it when the process dies, however it dies. Whoever then finds the image
``verifying`` with that lock free knows its publisher is gone and settles it at once
(``recover_interrupted``: at server start, when an upload route touches the image, and
in gc): published if the rename happened (the file is in the store), otherwise back to
``uploading``; a tus upload keeps its partial file and offset, so the client's next
HEAD + PATCH (``masterline images upload`` run again) finishes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from core.db import Database
from core.timeutil import utcnow
from images import manifest, repository
from images.errors import ImageConflict, UploadMismatch
from images.models import Image, ImageFormat, ImageStatus
from images.store import Store
from images.stream import Digests, live_drop

log = logging.getLogger("masterline.images.upload")


@dataclass(frozen=True)
class Target:
    """What an upload is checked against (a snapshot of the declared image)."""

    image_id: int
    format: ImageFormat
    stored_size: int
    stored_sha256: str
    raw_size: int
    raw_sha256: str
    upload_id: str | None
    upload_offset: int

    @classmethod
    def of(cls, row: Image) -> Target:
        assert row.id is not None
        return cls(
            row.id,
            ImageFormat(row.format),
            row.stored_size,
            row.stored_sha256,
            row.raw_size,
            row.raw_sha256,
            row.upload_id,
            row.upload_offset,
        )


def _mismatch(target: Target, digests: Digests) -> str | None:
    if digests.offset != target.stored_size:
        return f"received {digests.offset} bytes, {target.stored_size} were declared"
    got = digests.stored.hexdigest()
    if got != target.stored_sha256:
        return f"sha256 of the received bytes is {got}, {target.stored_sha256} was declared"
    if digests.corrupt:
        return digests.corrupt
    raw_size, raw_sha = digests.raw_result()
    if raw_size != target.raw_size:
        return f"decompressed to {raw_size} bytes, {target.raw_size} were declared"
    if raw_sha != target.raw_sha256:
        return f"sha256 of the decompressed bytes is {raw_sha}, {target.raw_sha256} declared"
    return None


def reset_upload(db: Database, target: Target) -> None:
    with db.session() as s:
        row = repository.get_image_for_update(s, target.image_id)
        if row is not None and row.upload_id == target.upload_id:
            row.upload_id = None
            row.upload_offset = 0
            row.upload_touched_at = utcnow()
            s.add(row)


def _lock_path(store: Store, image_id: int) -> Path:
    store.ensure()
    return store.tmp_dir / f"publish-{image_id}.lock"


@contextlib.contextmanager
def _publishing(store: Store, image_id: int, *, wait: bool) -> Iterator[bool]:
    """The image's publish lock: yields True once held, False if ``wait`` is off and
    another process (or thread) holds it. The lock file is removed on the way out, so
    it is re-checked after locking that the file locked is still the one at the path
    (the usual rule for lock files that get deleted)."""
    path = _lock_path(store, image_id)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it meanwhile: lock the new one
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)  # releases the flock


def publish(db: Database, store: Store, target: Target, temp: Path, digests: Digests) -> Image:
    """Verify a complete upload against its declaration and publish it.

    The temporary file must already be fsynced. On any failure it is deleted (for a
    tus upload, the upload is reset so that a new one can start) and nothing is
    published.

    :raises UploadMismatch: size, sha256 or (raw+zstd) decompressed size/hash differ.
    :raises ImageConflict: the image was published or cancelled meanwhile.
    :raises StorageFull: the rename could not be done.
    """
    problem = _mismatch(target, digests)
    if problem:
        temp.unlink(missing_ok=True)
        if target.upload_id:
            live_drop(target.upload_id)
            reset_upload(db, target)
        raise UploadMismatch(f"{problem}; nothing was published, upload it again")
    with _publishing(store, target.image_id, wait=True):
        row = _publish_locked(db, store, target, temp)
    if target.upload_id:
        live_drop(target.upload_id)
    _write_manifest(store, target.stored_sha256)
    return row


def _write_manifest(store: Store, sha256: str) -> None:
    # The chunk hashes relays check against, while the file is still in the page cache.
    # Best effort: a manifest that could not be written now is computed on first use.
    try:
        manifest.write(store, sha256)
    except (OSError, ValueError) as e:
        log.warning("manifest %s… not written at publish (%s)", sha256[:12], e)


def _publish_locked(db: Database, store: Store, target: Target, temp: Path) -> Image:
    with db.session() as s:
        row = repository.get_image_for_update(s, target.image_id)
        if row is None or row.status != ImageStatus.UPLOADING:
            temp.unlink(missing_ok=True)
            raise ImageConflict(f"image {target.image_id} was published or cancelled meanwhile")
        row.status = ImageStatus.VERIFYING
        row.upload_touched_at = utcnow()
        s.add(row)
    try:
        with store.shared_lock():
            store.publish(temp, target.stored_sha256)
            with db.session() as s:
                row = repository.get_image_for_update(s, target.image_id)
                assert row is not None
                row.status = ImageStatus.AVAILABLE
                row.published_at = utcnow()
                row.upload_id = None
                row.upload_offset = target.stored_size
                row.upload_touched_at = row.published_at
                s.add(row)
    except BaseException:
        with db.session() as s:
            row = repository.get_image_for_update(s, target.image_id)
            if row is not None and row.status == ImageStatus.VERIFYING:
                row.status = ImageStatus.UPLOADING
                s.add(row)
        temp.unlink(missing_ok=True)
        raise
    return row


def recover_interrupted(db: Database, store: Store, *, image_id: int | None = None) -> list[int]:
    """Settle the images left ``verifying`` by a dead publisher (all of them, or one);
    an image whose publisher is alive is left alone. Returns the ids settled.

    Must not be called with the store's exclusive (gc) lock held.
    """
    with db.session(write=False) as s:
        ids = repository.verifying_ids(s, image_id)
    settled: list[int] = []
    for iid in ids:
        with _publishing(store, iid, wait=False) as held:
            if held and _settle(db, store, iid):
                settled.append(iid)
    return settled


def _settle(db: Database, store: Store, image_id: int) -> bool:
    # Shared lock: gc must not delete the file between our look and our commit.
    with store.shared_lock(), db.session() as s:
        row = repository.get_image_for_update(s, image_id)
        if row is None or row.status != ImageStatus.VERIFYING:
            return False
        now = utcnow()
        if store.has(row.stored_sha256):
            # Killed after the rename: the bytes were verified and are in place.
            row.status = ImageStatus.AVAILABLE
            row.published_at = now
            row.upload_id = None
            row.upload_offset = row.stored_size
            how = "published"
        else:
            row.status = ImageStatus.UPLOADING
            partial = store.temp_path("tus", row.upload_id) if row.upload_id else None
            if partial is None or not partial.is_file():
                # A plain PUT (or a tus file gone): nothing to resume, send it again.
                row.upload_id = None
                row.upload_offset = 0
            how = "resumable" if row.upload_id else "to be sent again"
        row.upload_touched_at = now
        s.add(row)
    log.warning("image %s: its publisher died while publishing; now %s", image_id, how)
    return True
