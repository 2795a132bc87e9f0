"""Receiving image bytes: a plain single-request ``PUT`` and the tus 1.0.0 core protocol
(creation, HEAD offset, PATCH at ``Upload-Offset``, termination), implemented here.

Why not ``tuspyserver`` (pinned, evaluated against its 4.4.3 source): it writes each
chunk with a blocking ``write``/``flush`` on the event loop and never fsyncs before it
advertises an offset; it cannot hash on the fly, so verifying a 40 GB image would mean
re-reading it inside the final PATCH (its ``on_upload_complete`` runs inline); its
``auth`` hook knows nothing of which upload is being touched, so tying an upload to a
declared image of the caller's company needs a second lookup around every route; it
keeps its own ``.info`` sidecar state beside ours; HEAD answers 400 unless the metadata
carries ``filetype``; and PATCH requires ``Content-Length``. The core protocol is small;
owning it lets every route go through ``Allow`` and the catalogue row, hash while
writing, and fsync before an offset is recorded.

Bytes flow through ``images.stream`` (constant memory, hashed while written). An
offset is recorded in the catalogue only after an fsync, so a resumed upload never
continues from bytes the disk does not hold. The last byte triggers verification
against the declaration from the running hashes (no second read), then an fsync and an
atomic rename into the content-addressed store (``images.store``); a mismatch deletes
the file and publishes nothing.

Nothing here knows the web framework: the router hands over the request's headers (a
case-insensitive mapping, read with lower-case names) and its body as an async iterator
of chunks that raises ``images.stream.ClientGone`` when the client goes away.
"""

from __future__ import annotations

import base64
import dataclasses
import fcntl
import logging
import os
from collections.abc import AsyncIterable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from core.db import Database
from core.errors import InvalidInput, MasterlineError
from core.principal import Principal
from core.timeutil import utcnow
from core.values import ascii_int
from images import repository
from images.errors import (
    ImageConflict,
    ImageNotFound,
    OffsetMismatch,
    StorageFull,
    UploadLocked,
    UploadMismatch,
    UploadNotFound,
)
from images.models import Image, ImageStatus
from images.publish import Target, publish, recover_interrupted, reset_upload
from images.store import Store, get_store, is_disk_full
from images.stream import Digests, PartWriter, live_drop, live_get, live_put, receive
from images.tus import Headers, TusHeaderInvalid, check_tus_version, int_header, parse_metadata

log = logging.getLogger("masterline.images.upload")


T = TypeVar("T")

Body = AsyncIterable[bytes]


class WrongContentType(MasterlineError):
    status_code = 415
    title = "Unsupported media type"


async def _thread(fn: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(fn)


# Looking up.
def _uploading_image(db: Database, image_id: int, principal: Principal) -> Target:
    for first in (True, False):
        with db.session(write=False) as s:
            row = principal.visible(repository.get_image(s, image_id), ImageNotFound(image_id))
            status, target = row.status, Target.of(row)
        if first and _settled(db, status, image_id):
            continue  # its publisher had died: look again
        if status != ImageStatus.UPLOADING:
            raise ImageConflict(f"image {image_id} is {status}; its bytes can no longer be sent")
        break
    return target


def _upload_target(db: Database, upload_id: str, principal: Principal) -> Target:
    for first in (True, False):
        with db.session(write=False) as s:
            row = principal.visible(repository.get_image_by_upload(s, upload_id), UploadNotFound())
            status, target = row.status, Target.of(row)
        if first and _settled(db, status, target.image_id):
            continue
        if status != ImageStatus.UPLOADING:
            raise UploadNotFound()
        break
    return target


def _settled(db: Database, status: str, image_id: int) -> bool:
    """An image found ``verifying``: settle it if its publisher is dead (see
    ``images.publish``); True if that changed it."""
    return status == ImageStatus.VERIFYING and bool(
        recover_interrupted(db, get_store(), image_id=image_id)
    )


# Plain single-request upload.
async def put_content(
    headers: Headers, body: Body, db: Database, image_id: int, principal: Principal
) -> Image:
    """Receive the whole file in one request body and publish it.

    Not resumable: an interrupted or mismatched upload leaves nothing behind, and the
    image stays ``uploading`` for another attempt.

    :raises ImageNotFound: unknown or another company's image.
    :raises ImageConflict: already published.
    :raises UploadMismatch: length or hash differ from the declaration; disconnected.
    :raises UploadTooLarge: more bytes than declared.
    :raises StorageFull: the store's disk is full.
    """
    found = await _thread(lambda: _uploading_image(db, image_id, principal))
    # This upload is not the image's tus upload (if it has one): leave that one alone
    # unless this one publishes the image.
    target = dataclasses.replace(found, upload_id=None)
    raw_length = headers.get("content-length")
    declared = ascii_int(raw_length.strip()) if raw_length is not None else None
    if raw_length is not None and declared is None:
        raise InvalidInput("Content-Length must be a non-negative integer below 2^63")
    if declared is not None and declared != target.stored_size:
        raise UploadMismatch(
            f"Content-Length is {declared}, the image was declared with {target.stored_size} bytes"
        )
    store = get_store()
    temp = store.temp_path("put")
    writer = await _thread(lambda: PartWriter(temp, Digests(target.format), create=True))
    try:
        try:
            got = await receive(body, writer, limit=target.stored_size)
            await _thread(writer.sync)
        except OSError as e:
            if is_disk_full(e):
                raise StorageFull("the image store's disk is full; nothing was stored") from e
            raise
        finally:
            await _thread(writer.close)
        if not got.complete:
            raise UploadMismatch(
                f"connection closed after {got.size} of {target.stored_size} bytes; nothing "
                "was stored (use the resumable upload for large files)"
            )
        row = await _thread(lambda: publish(db, store, target, temp, writer.digests))
        await _thread(lambda: discard_partial(store, found.upload_id))
        return row
    finally:
        temp.unlink(missing_ok=True)


class _PartLock:
    """An exclusive ``flock`` on a partial file: one writer per upload, across threads
    and processes (released by the OS if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def acquire(self) -> None:
        """:raises UploadNotFound: no partial file. :raises UploadLocked: held."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError as e:
            raise UploadNotFound() from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise UploadLocked("another request is writing this upload; retry in a moment") from e
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _create_upload(db: Database, store: Store, target: Target, length: int) -> str:
    if length != target.stored_size:
        raise UploadMismatch(
            f"Upload-Length is {length}, the image was declared with {target.stored_size} bytes"
        )
    if target.upload_id:
        # One upload per image: a new one replaces an abandoned one (not a busy one).
        old = store.temp_path("tus", target.upload_id)
        lock = _PartLock(old)
        try:
            lock.acquire()
            old.unlink(missing_ok=True)
        except UploadNotFound:
            pass
        finally:
            lock.release()
        live_drop(target.upload_id)
    upload_id = base64.b32encode(os.urandom(20)).decode().lower()
    path = store.temp_path("tus", upload_id)
    path.touch(exist_ok=False)
    try:
        with db.session() as s:
            row = repository.get_image_for_update(s, target.image_id)
            if row is None or row.status != ImageStatus.UPLOADING:
                raise ImageConflict(f"image {target.image_id} is no longer uploading")
            row.upload_id = upload_id
            row.upload_offset = 0
            row.upload_touched_at = utcnow()
            s.add(row)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    live_put(upload_id, Digests(target.format))
    return upload_id


async def tus_create(headers: Headers, db: Database, principal: Principal) -> tuple[str, Image]:
    """tus creation: ``Upload-Length`` and ``Upload-Metadata`` naming ``image_id``.

    :raises TusVersionUnsupported, TusHeaderInvalid: protocol errors.
    :raises InvalidInput: the metadata names no image.
    :raises ImageNotFound: the image is not the caller's to upload.
    :raises UploadMismatch: Upload-Length differs from the declared size.
    """
    check_tus_version(headers)
    if "upload-defer-length" in headers:
        raise TusHeaderInvalid("Upload-Defer-Length is not supported: declare the size")
    length = int_header(headers, "Upload-Length")
    meta = parse_metadata(headers.get("upload-metadata", ""))
    image_id = ascii_int(meta.get("image_id", ""))
    if image_id is None:
        raise InvalidInput("Upload-Metadata must carry image_id (declare the image first)")
    target = await _thread(lambda: _uploading_image(db, image_id, principal))
    store = get_store()
    upload_id = await _thread(lambda: _create_upload(db, store, target, length))
    row = await _thread(lambda: _load(db, target.image_id))
    return upload_id, row


def _load(db: Database, image_id: int) -> Image:
    with db.session(write=False) as s:
        row = repository.get_image(s, image_id)
        if row is None:
            raise ImageNotFound(image_id)
        return row


async def tus_head(db: Database, upload_id: str, principal: Principal) -> Target:
    """:raises UploadNotFound: unknown, finished, cancelled, or not the caller's."""
    return await _thread(lambda: _upload_target(db, upload_id, principal))


def _open_part(db: Database, store: Store, target: Target) -> tuple[_PartLock, PartWriter]:
    """Lock the partial file, then read the recorded offset (a request that held the lock
    before us may have moved it) and open the file there.

    :raises UploadLocked: another request is writing it. :raises UploadNotFound: gone.
    """
    assert target.upload_id is not None
    path = store.temp_path("tus", target.upload_id)
    lock = _PartLock(path)
    lock.acquire()
    try:
        with db.session(write=False) as s:
            row = repository.get_image_by_upload(s, target.upload_id)
            if row is None or row.status != ImageStatus.UPLOADING:
                raise UploadNotFound()
            offset = row.upload_offset
        digests = live_get(target.upload_id)
        if digests is None or digests.offset != offset:
            digests = Digests.rebuild(path, target.format, offset)
            live_put(target.upload_id, digests)
        return lock, PartWriter(path, digests, create=False)
    except BaseException:
        lock.release()
        raise


def _record(db: Database, target: Target, writer: PartWriter) -> None:
    """fsync, then record the offset: the catalogue never advertises unsynced bytes."""
    writer.sync()
    assert target.upload_id is not None
    with db.session() as s:
        repository.record_offset(
            s, target.image_id, target.upload_id, writer.digests.offset, utcnow()
        )


def _record_quietly(db: Database, target: Target, writer: PartWriter) -> None:
    """``_record`` after a failed or cut request; if even the fsync fails (disk full),
    the offset stays where it was and the next PATCH cuts the file back to it."""
    try:
        _record(db, target, writer)
    except OSError as e:
        log.warning(
            "upload of image %s: offset not recorded (%s)", target.image_id, type(e).__name__
        )


async def tus_patch(
    headers: Headers, body: Body, db: Database, upload_id: str, principal: Principal
) -> tuple[int, Image | None]:
    """Append the body at ``Upload-Offset``; returns the new offset, and the published
    image when this PATCH completed the upload.

    :raises UploadNotFound: unknown, finished, cancelled, or not the caller's.
    :raises TusVersionUnsupported, WrongContentType, TusHeaderInvalid: protocol errors.
    :raises UploadLocked: another request is writing it.
    :raises OffsetMismatch: ``Upload-Offset`` is not the server's offset.
    :raises UploadTooLarge: past the declared length (what came before is kept).
    :raises StorageFull: disk full (what came before is kept: resume later).
    :raises UploadMismatch: complete, but not what was declared (upload discarded).
    """
    target = await _thread(lambda: _upload_target(db, upload_id, principal))
    check_tus_version(headers)
    ctype = headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/offset+octet-stream":
        raise WrongContentType("Content-Type must be application/offset+octet-stream")
    offset = int_header(headers, "Upload-Offset")
    store = get_store()
    lock, writer = await _thread(lambda: _open_part(db, store, target))
    try:
        if offset != writer.digests.offset:
            raise OffsetMismatch(
                f"Upload-Offset is {offset}, the server holds {writer.digests.offset} "
                "bytes (HEAD tells the offset)",
                upload_offset=writer.digests.offset,
            )
        limit = target.stored_size - offset
        try:
            await receive(body, writer, limit=limit, checkpoint=lambda: _record(db, target, writer))
        except OSError as e:
            if is_disk_full(e):
                raise StorageFull(
                    f"the image store's disk is full; the upload keeps its first "
                    f"{writer.digests.offset} bytes: resume once space is freed"
                ) from e
            raise
        finally:
            await _thread(lambda: _record_quietly(db, target, writer))
            await _thread(writer.close)
        new_offset = writer.digests.offset
        if new_offset < target.stored_size:
            return new_offset, None
        temp = store.temp_path("tus", upload_id)
        row = await _thread(lambda: publish(db, store, target, temp, writer.digests))
        return new_offset, row
    finally:
        lock.release()


def _terminate(db: Database, store: Store, target: Target) -> None:
    assert target.upload_id is not None
    path = store.temp_path("tus", target.upload_id)
    lock = _PartLock(path)
    try:
        lock.acquire()
        path.unlink(missing_ok=True)
    except UploadNotFound:
        pass
    finally:
        lock.release()
    live_drop(target.upload_id)
    reset_upload(db, target)


async def tus_terminate(db: Database, upload_id: str, principal: Principal) -> None:
    """tus termination: discard the partial upload (the image stays declared).

    :raises UploadNotFound: see ``tus_head``. :raises UploadLocked: being written.
    """
    target = await _thread(lambda: _upload_target(db, upload_id, principal))
    await _thread(lambda: _terminate(db, get_store(), target))


def discard_partial(store: Store, upload_id: str | None) -> None:
    """Remove a partial upload file after its image was cancelled or expired."""
    if upload_id:
        live_drop(upload_id)
        store.temp_path("tus", upload_id).unlink(missing_ok=True)
