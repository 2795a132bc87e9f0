"""The site cache of images, and the hash of what a stream sends.

The site cache always holds an image zstd-compressed (a ``raw`` upload is compressed
once, when the site first caches it), read from the central store once per site and
image version, not once per laptop. The sha256 of the bytes sent is computed once per
cached file and worker process, by the first stream that sends it (``SentHashes``; see
``imaging/stream.py`` for why).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

from provisioning.errors import ChecksumMismatch
from provisioning.imaging.pacing import CHUNK
from provisioning.transports.base import FileChunks


# Site cache.
@dataclass(frozen=True)
class ImageSource:
    """What the imaging step needs to know about a stored image."""

    image_id: int
    path: Path
    format: str
    """``raw`` or ``raw+zstd``."""
    size: int
    sha256: str
    raw_size: int
    raw_sha256: str


@dataclass(frozen=True)
class CachedImage:
    path: Path
    size: int
    sha256: str
    raw_size: int
    raw_sha256: str


def ensure_cached(source: ImageSource, cache_dir: Path) -> CachedImage:
    """The site's zstd copy of ``source``, read from the central store only once per
    site (a file lock makes concurrent workers of one site wait for the first).

    :raises ChecksumMismatch: the central file is not the one catalogued.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    final = cache_dir / f"{source.raw_sha256}.zst"
    meta = cache_dir / f"{source.raw_sha256}.json"
    with open(cache_dir / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if final.exists() and meta.exists():
                info = json.loads(meta.read_text())
                return CachedImage(
                    final,
                    int(info["size"]),
                    str(info["sha256"]),
                    source.raw_size,
                    source.raw_sha256,
                )
            tmp = final.with_suffix(".partial")
            stored = hashlib.sha256()
            raw = hashlib.sha256()
            out_hash = hashlib.sha256()
            out_size = 0
            with open(source.path, "rb") as src, open(tmp, "wb") as dst:
                if source.format == "raw+zstd":
                    for chunk in iter(lambda: src.read(CHUNK), b""):
                        stored.update(chunk)
                        dst.write(chunk)
                        out_hash.update(chunk)
                        out_size += len(chunk)
                else:
                    cctx = zstandard.ZstdCompressor(level=3, threads=-1)
                    writer = _HashingWriter(dst, out_hash)
                    with cctx.stream_writer(writer, closefd=False) as comp:  # type: ignore[arg-type]
                        for chunk in iter(lambda: src.read(CHUNK), b""):
                            stored.update(chunk)
                            raw.update(chunk)
                            comp.write(chunk)
                    out_size = writer.size
                dst.flush()
                os.fsync(dst.fileno())
            if stored.hexdigest() != source.sha256:
                tmp.unlink(missing_ok=True)
                raise ChecksumMismatch(
                    f"image {source.image_id} in the central store does not match its sha256"
                )
            os.replace(tmp, final)
            meta.write_text(
                json.dumps(
                    {
                        "size": out_size,
                        "sha256": out_hash.hexdigest(),
                        "image_id": source.image_id,
                        "fetched_at": time.time(),
                    }
                )
            )
            return CachedImage(
                final, out_size, out_hash.hexdigest(), source.raw_size, source.raw_sha256
            )
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class _HashingWriter:
    def __init__(self, inner: object, digest: hashlib._Hash) -> None:
        self.inner = inner
        self.digest = digest
        self.size = 0

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        self.size += len(data)
        self.inner.write(data)  # type: ignore[attr-defined]
        return len(data)

    def flush(self) -> None:
        self.inner.flush()  # type: ignore[attr-defined]


# The hash of what is sent, once per image.
FileKey = tuple[str, int, int, int, int]


def file_key(path: Path) -> FileKey:
    """What makes a cached file the same file: a rewrite or a replacement changes it."""
    st = path.stat()
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SentHashes:
    """sha256 of each cached file as it was sent, computed by the first stream to send
    it. Streams that start while that first one runs do not hash; they take its result
    when they finish, or hash the file themselves if it failed (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[FileKey, str] = {}
        self._pending: dict[FileKey, threading.Event] = {}
        self._waiting: dict[FileKey, int] = {}

    def claim(self, key: FileKey) -> bool:
        """True: the caller hashes while it sends and must call ``done``."""
        with self._lock:
            if key in self._known or key in self._pending:
                return False
            self._pending[key] = threading.Event()
            return True

    def done(self, key: FileKey, digest: str | None) -> None:
        """Publish the claimer's hash (``None``: its stream did not send it all)."""
        with self._lock:
            if digest:
                self._known[key] = digest
            event = self._pending.pop(key, None)
        if event is not None:
            event.set()

    def result(self, key: FileKey, path: Path, *, timeout: float) -> str:
        """The file's hash: published, or waited for, or else computed here."""
        with self._lock:
            event = self._pending.get(key)
            if event is not None:
                self._waiting[key] = self._waiting.get(key, 0) + 1
        if event is not None:
            try:
                event.wait(timeout)
            finally:
                with self._lock:
                    self._waiting[key] -= 1
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        digest = file_sha256(path)
        assert digest is not None  # nothing can stop it
        return digest

    def waiting(self, key: FileKey) -> int:
        """How many streams are parked waiting for the claimer's hash of ``key``."""
        with self._lock:
            return self._waiting.get(key, 0)

    def forget(self) -> None:
        with self._lock:
            self._known.clear()


SENT_HASHES = SentHashes()


def file_sha256(path: Path, *, stop: threading.Event | None = None) -> str | None:
    """sha256 of the file read through its mapping; None if ``stop`` was set first."""
    digest = hashlib.sha256()
    for chunk in FileChunks(path, chunk=CHUNK):
        if stop is not None and stop.is_set():
            return None
        digest.update(chunk)
    return digest.hexdigest()


class IdleHash:
    """The sha256 of a file, computed while it is sent by a thread at a low CPU
    priority (nice 10, a tenth of a normal thread's weight): the hash yields the cores
    to ``ssh``, ``sshd`` and the laptop's ``zstd`` (in the lab all on the same machine)
    and catches up in their pauses instead of delaying the next chunk into the pipe, yet
    is not starved on a busy worker as nice 19 would be. The file cannot change while it
    is sent (see ``FileChunks``), so this is the hash of the bytes sent."""

    def __init__(self, path: Path) -> None:
        self._stop = threading.Event()
        self._digest: str | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path,), daemon=True, name="sent-sha256"
        )
        self._thread.start()

    def _run(self, path: Path) -> None:
        with contextlib.suppress(OSError, AttributeError):  # Linux: nice of this thread
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        self._digest = file_sha256(path, stop=self._stop)

    def result(self, *, timeout: float) -> str | None:
        self._thread.join(timeout)
        return self._digest

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
