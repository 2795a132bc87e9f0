"""A zstd image relays as raw bytes: the site's raw copy is decompressed once (sparse,
multi-frame zstd included), its manifest hashes the raw chunks, and a wave from it
writes the raw image on every disk, the server sending each non-zero raw chunk once."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest
import zstandard

from images.manifest import compute
from provisioning.errors import ChecksumMismatch
from provisioning.imaging.cache import CachedImage
from provisioning.relay.rawcache import raw_copy
from provisioning.relay.wave import Wave
from tests.provisioning.relay.conftest import CHUNK, relay_argv, sha
from tests.provisioning.relay.test_waves import one_copy

pytestmark = pytest.mark.slow


def _raw_image() -> bytes:
    """Compressible text, zeros (free space, some not chunk-aligned), random data and a
    short last chunk: what a disk image holds."""
    rng = random.Random(7)
    text = b"".join(b"line %d of a config file\n" % i for i in range(40_000))
    return (
        text[: 3 * CHUNK]
        + bytes(2 * CHUNK + 5000)
        + rng.randbytes(2 * CHUNK)
        + bytes(3 * CHUNK)
        + text[: CHUNK + 123]
    )


def _cached(folder: Path, raw: bytes, *, frames: int = 1) -> CachedImage:
    """``raw`` zstd-compressed in ``frames`` frames one after the other (as ``pzstd``
    or a ``cat`` of two ``.zst`` files writes them)."""
    folder.mkdir(parents=True, exist_ok=True)
    step = -(-len(raw) // frames)
    packed = b"".join(
        zstandard.ZstdCompressor(level=3).compress(raw[i : i + step])
        for i in range(0, len(raw), step)
    )
    sha_raw = hashlib.sha256(raw).hexdigest()
    path = folder / f"{sha_raw}.zst"
    path.write_bytes(packed)
    return CachedImage(
        path=path,
        size=len(packed),
        sha256=hashlib.sha256(packed).hexdigest(),
        raw_size=len(raw),
        raw_sha256=sha_raw,
    )


@pytest.mark.parametrize("frames", [1, 3])
def test_the_raw_copy_is_made_once_sparse_and_hashed_raw(tmp_path: Path, frames: int) -> None:
    raw = _raw_image()
    cached = _cached(tmp_path / "cache", raw, frames=frames)
    path, manifest = raw_copy(cached, tmp_path / "cache", chunk_size=CHUNK)
    assert path.read_bytes() == raw
    plain = tmp_path / "plain.raw"
    plain.write_bytes(raw)
    assert manifest == compute(plain, chunk_size=CHUNK)  # per-chunk hashes of raw bytes
    # Zero chunks are holes: the copy holds about its non-zero chunks only.
    nonzero = sum(
        1 for i in range(len(manifest.chunks)) if raw[i * CHUNK : (i + 1) * CHUNK].strip(b"\0")
    )
    assert path.stat().st_blocks * 512 <= (nonzero + 1) * CHUNK
    # Made once: a second wave of the site finds it and its manifest as they were.
    made = path.stat().st_mtime_ns, path.stat().st_ino
    again, manifest_again = raw_copy(cached, tmp_path / "cache", chunk_size=CHUNK)
    assert (again.stat().st_mtime_ns, again.stat().st_ino) == made
    assert manifest_again == manifest


def test_a_damaged_zstd_copy_leaves_no_raw_copy(tmp_path: Path) -> None:
    raw = _raw_image()
    cache = tmp_path / "cache"
    cached = _cached(cache, raw[:-1] + b"X")  # decompresses, but not to the image
    cached = CachedImage(
        path=cached.path,
        size=cached.size,
        sha256=cached.sha256,
        raw_size=len(raw),
        raw_sha256=hashlib.sha256(raw).hexdigest(),
    )
    with pytest.raises(ChecksumMismatch):
        raw_copy(cached, cache, chunk_size=CHUNK)
    left = sorted(p.name for p in cache.iterdir() if not p.name.startswith("."))
    assert left == [cached.path.name]


def test_a_wave_of_a_zstd_image_writes_the_raw_image(tmp_path: Path) -> None:
    raw = _raw_image()
    cached = _cached(tmp_path / "cache", raw, frames=2)
    path, manifest = raw_copy(cached, tmp_path / "cache", chunk_size=CHUNK)
    disks = tmp_path / "disks"
    disks.mkdir()
    with Wave(image=path, manifest=manifest) as wave:
        for name in ("m0", "m1", "m2"):
            wave.add(name, relay_argv(), disks / name)
        outcomes = wave.wait(deadline=time.monotonic() + 240)
        assert all(o.ok for o in outcomes.values()), {n: o.reason for n, o in outcomes.items()}
        # One copy of the raw non-zero chunks left the server, whatever the zstd size.
        assert wave.source.bytes_sent == one_copy(manifest)
    for name in ("m0", "m1", "m2"):
        assert sha(disks / name) == cached.raw_sha256
        assert os.path.getsize(disks / name) == len(raw)
