"""Small generated disk images for provisioning tests (a few MiB, with zero runs)."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path

import zstandard

MiB = 1024 * 1024


@dataclass(frozen=True)
class GeneratedImage:
    raw_path: Path
    zst_path: Path
    raw_size: int
    raw_sha256: str
    zst_size: int
    zst_sha256: str


def make_image(
    directory: Path, *, mib: int = 4, seed: int = 1, name: str = "img"
) -> GeneratedImage:
    """Alternating 256 KiB of (incompressible) pseudo-random data and 256 KiB of zeros."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{name}.raw"
    block = 256 * 1024
    rng = random.Random(seed)
    with open(raw, "wb") as f:
        for i in range(mib * MiB // block):
            f.write(rng.randbytes(block) if i % 2 == 0 else b"\0" * block)
    data = raw.read_bytes()
    zst = directory / f"{name}.raw.zst"
    zst.write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    zdata = zst.read_bytes()
    return GeneratedImage(
        raw_path=raw,
        zst_path=zst,
        raw_size=len(data),
        raw_sha256=hashlib.sha256(data).hexdigest(),
        zst_size=len(zdata),
        zst_sha256=hashlib.sha256(zdata).hexdigest(),
    )
