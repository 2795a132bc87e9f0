"""Receiving bytes into a partial file with running hashes, in constant memory.

The event loop reads the request body and gathers it into 4 MiB blocks; a worker thread
appends each block to the partial file and feeds it to SHA-256 (and, for ``raw+zstd``,
to a streaming zstd decompressor whose output is hashed too), while the loop gathers
the next block; at most two blocks are in memory. ``Digests`` of an upload in progress
are kept between requests (``_LIVE``) so that a resumed tus upload goes on hashing where
it stopped; after a restart they are rebuilt by reading the partial file once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import AsyncIterable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from images.errors import UploadTooLarge
from images.models import ImageFormat

log = logging.getLogger("masterline.images.upload")

BLOCK = 4 * 1024 * 1024
CHECKPOINT = 1024**3
"""During a long PATCH, fsync and record the offset every this many bytes, so a server
crash loses at most this much."""
READ_BLOCK = 8 * 1024 * 1024
MAX_LIVE = 32

_EXECUTOR = ThreadPoolExecutor(max_workers=16, thread_name_prefix="image-upload")


class _RawDigest:
    """The sink of the zstd decompressor: hashes and counts the raw disk bytes."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return len(data)


class Digests:
    """What has been received so far: its length, its SHA-256, and for ``raw+zstd`` the
    size and SHA-256 of the decompressed bytes."""

    def __init__(self, fmt: ImageFormat) -> None:
        self.format = fmt
        self.offset = 0
        self.stored = hashlib.sha256()
        self.raw: _RawDigest | None = None
        self._decompressor: zstandard.ZstdDecompressionWriter | None = None
        if fmt is ImageFormat.RAW_ZSTD:
            self.raw = _RawDigest()
            self._decompressor = zstandard.ZstdDecompressor().stream_writer(
                self.raw,  # type: ignore[arg-type]  # any object with write() will do
                write_size=1024 * 1024,
            )
        self.corrupt: str | None = None

    def update(self, block: bytes | bytearray) -> None:
        self.stored.update(block)
        self.offset += len(block)
        if self._decompressor is not None and self.corrupt is None:
            try:
                self._decompressor.write(block)
            except zstandard.ZstdError as e:
                # Reported when the upload completes: the declared hash may be of these
                # very bytes, and rejecting early would leave nothing to resume.
                self.corrupt = f"not a valid zstd stream ({e})"

    def raw_result(self) -> tuple[int, str]:
        if self.raw is None:
            return self.offset, self.stored.hexdigest()
        return self.raw.size, self.raw.hash.hexdigest()

    @classmethod
    def rebuild(cls, path: Path, fmt: ImageFormat, offset: int) -> Digests:
        """Digests of the first ``offset`` bytes of a partial file (after a restart, or
        in another worker process); shorter if the file is."""
        digests = cls(fmt)
        with open(path, "rb") as f:
            remaining = offset
            while remaining > 0:
                block = f.read(min(READ_BLOCK, remaining))
                if not block:
                    break
                digests.update(block)
                remaining -= len(block)
        return digests


_LIVE: OrderedDict[str, Digests] = OrderedDict()
_LIVE_LOCK = threading.Lock()


def live_get(upload_id: str) -> Digests | None:
    with _LIVE_LOCK:
        return _LIVE.get(upload_id)


def live_put(upload_id: str, digests: Digests) -> None:
    with _LIVE_LOCK:
        _LIVE[upload_id] = digests
        _LIVE.move_to_end(upload_id)
        while len(_LIVE) > MAX_LIVE:
            _LIVE.popitem(last=False)


def live_drop(upload_id: str) -> None:
    with _LIVE_LOCK:
        _LIVE.pop(upload_id, None)


class PartWriter:
    """Appends blocks to a partial file and to its digests, in that order, so that
    ``digests.offset`` never counts a byte the file does not hold."""

    def __init__(self, path: Path, digests: Digests, *, create: bool) -> None:
        self.path = path
        self.digests = digests
        self._file: IO[bytes] = open(path, "xb" if create else "r+b")  # noqa: SIM115
        if not create:
            # Bytes past the recorded offset were never acknowledged: drop them.
            if os.fstat(self._file.fileno()).st_size > digests.offset:
                self._file.truncate(digests.offset)
            self._file.seek(digests.offset)

    def write(self, block: bytes | bytearray) -> None:
        """:raises OSError: e.g. ENOSPC; the file is cut back to the last whole block."""
        try:
            self._file.write(block)
        except OSError:
            self._cut_back()
            raise
        self.digests.update(block)

    def _cut_back(self) -> None:
        with contextlib.suppress(OSError):
            self._file.flush()
        try:
            self._file.seek(self.digests.offset)
            self._file.truncate()
        except OSError:
            log.warning("could not cut %s back to its last whole block", self.path.name)

    def sync(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError:
            self._cut_back()
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()


class ClientGone(Exception):
    """Raised by a body iterator when the client went away before the body ended (the
    web layer translates its own disconnect signal into this)."""


@dataclass
class Received:
    complete: bool
    """False when the client went away before the body ended."""
    size: int


async def receive(
    body: AsyncIterable[bytes],
    writer: PartWriter,
    *,
    limit: int,
    checkpoint: Callable[[], None] | None = None,
) -> Received:
    """Stream ``body`` into ``writer`` (see the module docstring).

    :raises UploadTooLarge: more than ``limit`` bytes arrived; what came before stays.
    :raises OSError: from the writer (disk full…); what was written before stays.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[None] | None = None
    buf = bytearray()
    received = 0
    complete = True
    checkpointed = writer.digests.offset
    try:
        async for chunk in body:
            if not chunk:
                continue
            received += len(chunk)
            if received > limit:
                raise UploadTooLarge(
                    f"more bytes than declared: at most {limit} more were expected"
                )
            buf += chunk
            if len(buf) >= BLOCK:
                if pending is not None:
                    await pending
                    pending = None
                if checkpoint and writer.digests.offset - checkpointed >= CHECKPOINT:
                    await loop.run_in_executor(_EXECUTOR, checkpoint)
                    checkpointed = writer.digests.offset
                pending = loop.run_in_executor(_EXECUTOR, writer.write, buf)
                buf = bytearray()
    except ClientGone:
        complete = False
    finally:
        if pending is not None:
            await asyncio.shield(pending)
    if buf:
        await loop.run_in_executor(_EXECUTOR, writer.write, buf)
    return Received(complete=complete, size=received)
