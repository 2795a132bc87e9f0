"""The demo OS image the VM tests image laptops with, built once per inputs (packages and
builder) by ``lab.demo_os`` and kept in ~/.cache/masterline/demo-os/<inputs sha256>/,
with its zstd stream as the image store keeps it."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import tempfile
from pathlib import Path

import zstandard

from lab import demo_os
from tests.support.images import GeneratedImage
from tests.support.pe import resolved

BUILDS = Path.home() / ".cache" / "masterline" / "demo-os"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cached_demo_image() -> GeneratedImage:
    key = demo_os.inputs_key(resolved("demo-os", demo_os.resolve))
    target = BUILDS / key
    BUILDS.mkdir(parents=True, exist_ok=True)
    with (BUILDS / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / "demo-os.json").is_file():
            tmp = Path(tempfile.mkdtemp(dir=BUILDS, prefix=".build-"))
            try:
                manifest = demo_os.build(tmp)
                raw = tmp / demo_os.RAW
                with raw.open("rb") as src, (tmp / f"{demo_os.RAW}.zst").open("wb") as dst:
                    zstandard.ZstdCompressor(level=3).copy_stream(src, dst)
                (tmp / "demo-os.json").write_text(json.dumps(manifest, indent=2))
                if target.exists():
                    shutil.rmtree(target)
                tmp.replace(target)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    raw, zst = target / demo_os.RAW, target / f"{demo_os.RAW}.zst"
    manifest = json.loads((target / "demo-os.json").read_text())
    return GeneratedImage(
        raw_path=raw,
        zst_path=zst,
        raw_size=raw.stat().st_size,
        raw_sha256=manifest["raw_sha256"],
        zst_size=zst.stat().st_size,
        zst_sha256=_sha256(zst),
    )
