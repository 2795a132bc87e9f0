"""Writing the image on the laptop: the stream, the flush and the readback.

Stream design. The site cache always holds the image zstd-compressed (a ``raw`` upload
is compressed once, when the site first caches it), and the laptop decompresses:
``zstd -dc --no-sparse 1<>disk``. zstd encodes a run of zero blocks as RLE blocks of a
few bytes, so zero blocks are not sent — bytes on the wire are the compressed size, which
the benchmark compares to the zstd size of the non-zero blocks. Every byte of the disk
range is still written (zeros included), so the readback hash of ``raw_size`` bytes is
exactly the image's raw sha256 whatever the disk held before; a sparse write would
leave the old contents under the holes.

The sha256 computed while sending is that of the bytes fed to ``ssh``; it must equal the
cached file's hash, and the readback must equal the raw hash. It is computed once per
cached image and worker process, by the first stream that sends that file, not once per
laptop (``SentHashes``): ``ssh`` reads the file itself (or, paced, gets it spliced into
its pipe), so every stream of one unchanged file sends the same bytes, and hashing them again per
laptop would cost each stream a quarter of its ``ssh`` client's CPU (hashlib sha256 runs
at ~1.5 GB/s, ``ssh`` at ~0.4 GB/s per core: do it once per image, never once per
device). What each laptop holds is still checked,
for every laptop, by the readback.

Durability belongs to the verify step, which first flushes the disk (``sync <disk>``:
fsync, where a block device reports a write that did not reach the media) and only then
reads the range back. The stream itself ends when the bytes are written, as ``cat >
disk`` does; flushing there too would pay the same write-back twice.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from provisioning.errors import ChecksumMismatch, CommandFailed, DiskFull
from provisioning.imaging.cache import SENT_HASHES, CachedImage, IdleHash, file_key
from provisioning.imaging.identity import Disk, disk_path, last_line
from provisioning.imaging.pacing import CHUNK, TokenBucket
from provisioning.transports.base import FileChunks, Transport


def read_chunks(path: Path, *, bucket: TokenBucket | None = None) -> FileChunks:
    """The file in ``CHUNK`` ranges paced by ``bucket``: mapped slices, never ``read()``
    copies, which the SSH transport splices into ``ssh``'s pipe (eight lab streams at
    once are CPU-bound, so every copy of every byte sent shows in their time). Unpaced,
    the transport gives ``ssh`` the file itself instead."""
    return FileChunks(path, chunk=CHUNK, before=bucket.take if bucket is not None else None)


# Stream and readback.
@dataclass(frozen=True)
class Written:
    disk: str
    bytes_sent: int
    sent_sha256: str


def stream_image(
    transport: Transport,
    image: CachedImage,
    disk: Disk,
    *,
    timeout: float,
    progress: Callable[[int], None] | None = None,
    bucket: TokenBucket | None = None,
) -> Written:
    """Write ``image`` onto ``disk``.

    :raises DiskFull: the disk is smaller than the image, or the write ran out of space.
    :raises CommandFailed: the laptop-side pipeline failed.
    :raises ChecksumMismatch: what was sent is not the cached file.
    """
    if image.raw_size > disk.size_bytes:
        raise DiskFull(
            f"image needs {image.raw_size} bytes, disk {disk.name} has {disk.size_bytes}"
        )
    target = disk_path(disk.name)
    cmd = (
        # zstd writes the disk itself: a `| dd` behind it costs a pipe copy and a process
        # per stream, measured 25 % of eight lab streams' time. `1<>` opens the disk for
        # writing without truncating it (a disk file in the lab; a device on a laptop);
        # --no-sparse writes the zero blocks too, so nothing old survives under them.
        # --no-asyncio (zstd >= 1.5.3, hence the probe): its writer thread's hand-overs
        # cost a third of zstd's CPU here, for no gain on one sequential output.
        # --no-check: a frame's XXH64 would only repeat, weaker, what verify's sha256
        # readback of the disk proves.
        "a=; zstd -H 2>&1 | grep -q 'no-]asyncio' && a=--no-asyncio; "
        f"{{ zstd -dcq --no-sparse --no-check $a || echo ZSTD_FAILED >&2; }} 1<>{target}"
    )
    key = file_key(image.path)
    hasher = IdleHash(image.path) if SENT_HASHES.claim(key) else None
    published: str | None = None
    try:
        res = transport.put_stream(
            f"sh -c {shlex.quote(cmd)}",
            read_chunks(image.path, bucket=bucket),
            timeout=timeout,
            progress=progress,
            hash_sent=False,
        )
        if hasher is not None and res.bytes_sent == image.size:
            published = hasher.result(timeout=timeout)
    finally:
        if hasher is not None:
            hasher.cancel()
            SENT_HASHES.done(key, published)
    sent_sha256 = (
        published if hasher is not None else SENT_HASHES.result(key, image.path, timeout=timeout)
    )
    err = res.result.stderr
    if "no space left" in err.lower():
        raise DiskFull(f"disk {disk.name} ran out of space while writing")
    if "ZSTD_FAILED" in err or not res.result.ok:
        raise CommandFailed(f"write to {disk.name} failed: {last_line(err) or res.result.rc}")
    if sent_sha256 != image.sha256 or res.bytes_sent != image.size:
        raise ChecksumMismatch("bytes sent differ from the cached image")
    return Written(disk=disk.name, bytes_sent=res.bytes_sent, sent_sha256=image.sha256)


def readback_sha256(transport: Transport, disk: str, size: int, *, timeout: float) -> str:
    """SHA-256 of the first ``size`` bytes of ``disk``, computed on the laptop.

    :raises CommandFailed: the read failed.
    """
    cmd = f"head -c {int(size)} {disk_path(disk)} | sha256sum"
    res = transport.run(cmd, timeout=timeout)
    digest = res.stdout.strip().split(" ")[0] if res.stdout.strip() else ""
    if not res.ok or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise CommandFailed(f"readback of {disk} failed: {last_line(res.stderr) or res.rc}")
    return digest


def flush(transport: Transport, disk: str, *, timeout: float) -> None:
    """Make what the stream wrote durable (fsync of the disk).

    :raises CommandFailed: the flush failed: the device could not write it (fatal).
    """
    res = transport.run(f"sync {disk_path(disk)}", timeout=timeout)
    if not res.ok:
        raise CommandFailed(
            f"flush of {disk} failed: {last_line(res.stderr) or res.rc}; the disk did not "
            "take the image"
        )


def verify(transport: Transport, image: CachedImage, disk: str, *, timeout: float) -> str:
    """Flush the disk, then read the image's range back and compare.

    :raises CommandFailed: the flush or the read failed (fatal).
    :raises ChecksumMismatch: the disk does not hold the image (fatal).
    """
    flush(transport, disk, timeout=timeout)
    digest = readback_sha256(transport, disk, image.raw_size, timeout=timeout)
    if digest != image.raw_sha256:
        raise ChecksumMismatch(f"readback of {disk} does not match the image sha256")
    return digest
