"""The site's raw copy of an image, for relays: what a wave's source serves.

A relay writes the stream's bytes at their offsets (so that any member can serve any
chunk it verified from its own disk), so the wave carries the image's **raw** bytes,
checked chunk by chunk against a manifest of the raw file; the site cache holds the
image zstd-compressed (``imaging/cache.py``). The raw copy is decompressed once per
site and image version, beside the compressed one (``<raw sha256>.raw``), **sparse**:
a chunk of zeros (a disk image's free space) is a hole, not bytes on the worker's disk,
and it travels as a 9-byte header. Its manifest (``<raw sha256>.<chunk size>.manifest``)
is written after the whole file matched the image's raw sha256, so a manifest on disk
always describes a complete, verified copy.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from pathlib import Path

import zstandard

from images.manifest import Manifest
from provisioning.errors import ChecksumMismatch
from provisioning.imaging.cache import CachedImage


def raw_copy(cached: CachedImage, cache_dir: Path, *, chunk_size: int) -> tuple[Path, Manifest]:
    """The raw file of ``cached`` and its manifest, made once per site (file-locked).

    :raises ChecksumMismatch: the decompressed bytes are not the image's raw sha256.
    """
    raw = cache_dir / f"{cached.raw_sha256}.raw"
    meta = cache_dir / f"{cached.raw_sha256}.{chunk_size}.manifest"
    with open(cache_dir / ".relay-lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            found = _load(meta, raw, cached.raw_size)
            if found is not None:
                return raw, found
            manifest = _decompress(cached, raw, chunk_size)
            temp = meta.with_suffix(".partial")
            temp.write_text(json.dumps(manifest.to_json(), separators=(",", ":")))
            os.replace(temp, meta)
            return raw, manifest
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _load(meta: Path, raw: Path, size: int) -> Manifest | None:
    try:
        manifest = Manifest.from_json(json.loads(meta.read_text()))
    except (OSError, ValueError):
        return None
    if manifest.size != size or not raw.is_file() or raw.stat().st_size != size:
        return None
    return manifest


def _decompress(cached: CachedImage, raw: Path, chunk_size: int) -> Manifest:
    temp = raw.with_suffix(".partial")
    whole = hashlib.sha256()
    chunks: list[str] = []
    size = 0
    zero = bytes(chunk_size)
    with open(cached.path, "rb") as src, open(temp, "wb") as dst:
        reader = zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)
        while True:
            block = _read_full(reader, chunk_size)
            if not block:
                break
            whole.update(block)
            chunks.append(hashlib.sha256(block).hexdigest())
            if block == zero[: len(block)]:
                dst.seek(len(block), os.SEEK_CUR)  # a hole: free space costs no disk
            else:
                dst.write(block)
            size += len(block)
        dst.truncate(size)
        dst.flush()
        os.fsync(dst.fileno())
    if size != cached.raw_size or whole.hexdigest() != cached.raw_sha256:
        temp.unlink(missing_ok=True)
        raise ChecksumMismatch("the site cache's image does not decompress to its raw sha256")
    os.replace(temp, raw)
    return Manifest(chunk_size, size, whole.hexdigest(), tuple(chunks))


def _read_full(reader: zstandard.ZstdDecompressionReader, n: int) -> bytes:
    """``n`` bytes (fewer only at the end): a decompressor's read may return less."""
    parts: list[bytes] = []
    got = 0
    while got < n:
        part = reader.read(n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)
