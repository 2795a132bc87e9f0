"""Per-chunk hashes of a stored image: what a relay checks each chunk against.

A manifest covers the **stored file** of an image (the bytes a stream or a relay
sends): a fixed chunk size, the sha256 of every chunk in order, and the sha256 and size
of the whole file. It is written at publish time for a new image and lazily, on first
request, for an image published before manifests existed (or whose manifest was lost).

Manifests live beside the content-addressed files, keyed the same way::

    manifests/ab/abcdef….<chunk size>.json

Like the stored file itself they are immutable: the same bytes always give the same
manifest, so two processes computing one at once write the same content, and the last
atomic rename wins harmlessly. A manifest that does not match the stored file's size is
recomputed rather than trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from core.files import PRIVATE_FILE, private_dir
from images.errors import StoredFileMissing
from images.models import Image
from images.store import Store, fsync_dir, get_store, path_of

log = logging.getLogger("masterline.images.manifest")

CHUNK_SIZE = 4 * 1024 * 1024
"""Large enough that a hash per chunk costs nothing next to the bytes (a 20 GB image
has 5,000 chunks), small enough that a relay holds one in memory and that a resume
repeats at most this much."""
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """The chunk hashes of one stored file (see the module docstring)."""

    chunk_size: int
    size: int
    sha256: str
    chunks: tuple[str, ...]

    def chunk_length(self, index: int) -> int:
        """Bytes in chunk ``index`` (the last one may be short)."""
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def to_json(self) -> dict[str, object]:
        return {
            "version": MANIFEST_VERSION,
            "chunk_size": self.chunk_size,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": list(self.chunks),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Manifest:
        """:raises ValueError: not a manifest this code wrote, or inconsistent."""
        if data.get("version") != MANIFEST_VERSION:
            raise ValueError("unknown manifest version")
        chunk_size, size, sha, chunks = (
            data.get("chunk_size"),
            data.get("size"),
            data.get("sha256"),
            data.get("chunks"),
        )
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError("bad chunk size")
        if not isinstance(size, int) or size < 0 or not isinstance(sha, str):
            raise ValueError("bad size or sha256")
        if not isinstance(chunks, list) or not all(isinstance(c, str) for c in chunks):
            raise ValueError("bad chunk list")
        if len(chunks) != -(-size // chunk_size):
            raise ValueError("chunk count does not match the size")
        return cls(chunk_size, size, sha, tuple(chunks))


def compute(path: Path, *, chunk_size: int = CHUNK_SIZE) -> Manifest:
    """Read ``path`` once and hash every chunk and the whole file."""
    whole = hashlib.sha256()
    chunks: list[str] = []
    size = 0
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            whole.update(block)
            chunks.append(hashlib.sha256(block).hexdigest())
            size += len(block)
    return Manifest(chunk_size, size, whole.hexdigest(), tuple(chunks))


def manifest_path(store: Store, sha256: str, chunk_size: int = CHUNK_SIZE) -> Path:
    stored = store.path_for(sha256)  # validates the hash
    return store.root / "manifests" / sha256[:2] / f"{stored.name}.{chunk_size}.json"


def _load(path: Path, size: int) -> Manifest | None:
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        log.warning("manifest %s unreadable (%s): computing it again", path.name, e)
        return None
    return manifest if manifest.size == size else None


def write(store: Store, sha256: str, *, chunk_size: int = CHUNK_SIZE) -> Manifest:
    """Compute the manifest of the stored file ``sha256`` and write it atomically.

    :raises StoredFileMissing: the stored file is not in the store.
    :raises ValueError: the stored file's bytes do not hash to ``sha256``: the store is
        damaged, and no manifest is written for it.
    """
    stored = store.path_for(sha256)
    if not stored.is_file():
        raise StoredFileMissing(f"stored file {sha256[:12]}… missing from the image store")
    manifest = compute(stored, chunk_size=chunk_size)
    if manifest.sha256 != sha256:
        raise ValueError(f"stored file {sha256[:12]}… does not match its own sha256")
    path = manifest_path(store, sha256, chunk_size)
    private_dir(path.parent.parent)
    private_dir(path.parent)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as f:
        json.dump(manifest.to_json(), f, separators=(",", ":"))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
    fsync_dir(path.parent)
    return manifest


def for_sha(store: Store, sha256: str, size: int, *, chunk_size: int = CHUNK_SIZE) -> Manifest:
    """The manifest of a stored file, read from disk, or computed and written now."""
    found = _load(manifest_path(store, sha256, chunk_size), size)
    return found if found is not None else write(store, sha256, chunk_size=chunk_size)


def manifest_of(image: Image) -> Manifest:
    """The manifest of a published image's stored file (lazily computed).

    :raises StoredFileMissing: the image is not published, was reclaimed, or its file is
        gone (as ``images.store.path_of``).
    """
    path_of(image)  # the same refusals as streaming it
    return for_sha(get_store(), image.stored_sha256, image.stored_size)


def remove(store: Store, sha256: str) -> None:
    """Drop every manifest of a stored file (gc reclaimed it)."""
    folder = store.root / "manifests" / sha256[:2]
    if folder.is_dir():
        for p in folder.glob(f"{sha256}.*.json"):
            p.unlink(missing_ok=True)
