"""Imaging on the laptop side: identity, disk choice, the stream, the readback.

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
at ~1.5 GB/s, ``ssh`` at ~0.4 GB/s per core; ../shared/research/physical-limits.md: "do
it once per image, never once per device"). What each laptop holds is still checked,
for every laptop, by the readback.

Durability belongs to the verify step, which first flushes the disk (``sync <disk>``:
fsync, where a block device reports a write that did not reach the media) and only then
reads the range back. The stream itself ends when the bytes are written, as ``cat >
disk`` does; flushing there too would pay the same write-back twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from provisioning.errors import (
    Aborted,
    ChecksumMismatch,
    CommandFailed,
    DiskFull,
)
from provisioning.transports.base import FileChunks, Transport

CHUNK = 1024 * 1024
PE_ROOT = '"${MASTERLINE_PE_ROOT:-}"'
_DISK_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")
_SKIP_DISKS = ("loop", "ram", "zram", "sr", "fd", "dm-", "md")

IDENTIFY_SCRIPT = r"""R="${MASTERLINE_PE_ROOT:-}"
echo "serial=$(cat "$R/sys/class/dmi/id/product_serial" 2>/dev/null)"
echo "uuid=$(cat "$R/sys/class/dmi/id/product_uuid" 2>/dev/null)"
echo "model=$(cat "$R/sys/class/dmi/id/product_name" 2>/dev/null)"
for n in "$R"/sys/class/net/*; do
  [ -f "$n/address" ] && echo "mac=$(basename "$n") $(cat "$n/address")"
done
for b in "$R"/sys/block/*; do
  [ -f "$b/size" ] || continue
  rm="$(cat "$b/removable" 2>/dev/null || echo 0)"
  echo "disk=$(basename "$b") $(cat "$b/size") $rm"
done
true
"""


@dataclass(frozen=True)
class Disk:
    name: str
    size_bytes: int
    removable: bool


@dataclass(frozen=True)
class Identity:
    serial: str
    uuid: str
    model: str
    macs: dict[str, str]
    disks: list[Disk]

    def as_dict(self) -> dict[str, object]:
        return {
            "serial": self.serial,
            "uuid": self.uuid,
            "model": self.model,
            "macs": self.macs,
            "disks": [
                {"name": d.name, "size": d.size_bytes, "removable": d.removable} for d in self.disks
            ],
        }


def identify(transport: Transport, *, timeout: float) -> Identity:
    """Read serial, SMBIOS UUID, MACs and disks in the provisioning environment.

    :raises CommandFailed: the script failed; transport errors as ``Transport.run``.
    """
    res = transport.run("sh -s", timeout=timeout, stdin=IDENTIFY_SCRIPT.encode())
    if not res.ok:
        raise CommandFailed(f"identity script exited {res.rc}: {_first_line(res.stderr)}")
    serial = uuid = model = ""
    macs: dict[str, str] = {}
    disks: list[Disk] = []
    for line in res.stdout.splitlines():
        key, _, value = line.partition("=")
        value = value.strip()
        if key == "serial":
            serial = value
        elif key == "uuid":
            uuid = value
        elif key == "model":
            model = value
        elif key == "mac":
            iface, _, addr = value.partition(" ")
            if iface != "lo":
                macs[iface] = addr.strip().lower()
        elif key == "disk":
            parts = value.split()
            if len(parts) >= 2 and parts[1].isdigit():
                removable = len(parts) > 2 and parts[2] == "1"
                disks.append(Disk(parts[0], int(parts[1]) * 512, removable))
    return Identity(serial=serial, uuid=uuid, model=model, macs=macs, disks=disks)


def pick_disk(identity: Identity, *, rule: str = "largest") -> Disk:
    """The target disk: the model's named disk, or the largest non-removable one.

    :raises CommandFailed: no such disk / no candidate (fatal: a human must look).
    """
    candidates = [
        d for d in identity.disks if _DISK_NAME.match(d.name) and not d.name.startswith(_SKIP_DISKS)
    ]
    if rule and rule != "largest":
        for d in candidates:
            if d.name == rule:
                return d
        raise CommandFailed(f"disk {rule!r} required by the hardware model is not present")
    fixed = [d for d in candidates if not d.removable and d.size_bytes > 0]
    if not fixed:
        raise CommandFailed("no non-removable disk found")
    return max(fixed, key=lambda d: (d.size_bytes, d.name))


def disk_path(name: str) -> str:
    if not _DISK_NAME.match(name):
        raise CommandFailed(f"refusing odd disk name {name!r}")
    return f"{PE_ROOT}/dev/{name}"


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


# Bandwidth.
@dataclass
class TokenBucket:
    """One stream's pace: ``rate`` bytes per second, re-rated while it runs.

    The site's cap is split between its live streams by the engine (``engine.py``,
    "bandwidth shares"); each stream only ever consults its own bucket, so no chunk
    costs a database round trip. A rate of 0 holds the stream until a share is granted.
    """

    rate: float
    burst: float = 4 * CHUNK
    _tokens: float = 0.0
    _last: float | None = None
    _stopped: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def stop(self, reason: str) -> None:
        """Make the stream's next (or current, held) ``take`` raise ``Aborted``: how an
        abort reaches a stream that waits for a share and so reports no progress."""
        self._stopped = reason

    def set_rate(self, rate: float) -> None:
        """Re-rate the bucket. Tokens saved up under the old rate are capped to one
        second of the new one, so a lowered share is not overrun by an old burst."""
        with self._lock:
            self._refill(time.monotonic())
            self.rate = max(0.0, float(rate))
            self._tokens = min(self._tokens, max(self.rate, 0.0))

    def _refill(self, now: float) -> None:
        elapsed = 0.0 if self._last is None else max(0.0, now - self._last)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._last = now

    def take(self, n: int) -> None:
        while True:
            if self._stopped is not None:
                raise Aborted(self._stopped)
            with self._lock:
                self._refill(time.monotonic())
                if self.rate > 0 and (self._tokens >= n or self._tokens >= self.burst):
                    self._tokens -= n
                    return
                wait = (n - self._tokens) / self.rate if self.rate > 0 else 0.25
            time.sleep(min(max(wait, 0.001), 0.25))


def read_chunks(path: Path, *, bucket: TokenBucket | None = None) -> FileChunks:
    """The file in ``CHUNK`` ranges paced by ``bucket``: mapped slices, never ``read()``
    copies, which the SSH transport splices into ``ssh``'s pipe (eight lab streams at
    once are CPU-bound, so every copy of every byte sent shows in their time). Unpaced,
    the transport gives ``ssh`` the file itself instead."""
    return FileChunks(path, chunk=CHUNK, before=bucket.take if bucket is not None else None)


# The hash of what is sent, once per image.
_FileKey = tuple[str, int, int, int, int]


def _file_key(path: Path) -> _FileKey:
    """What makes a cached file the same file: a rewrite or a replacement changes it."""
    st = path.stat()
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SentHashes:
    """sha256 of each cached file as it was sent, computed by the first stream to send
    it. Streams that start while that first one runs do not hash; they take its result
    when they finish, or hash the file themselves if it failed (see the module doc)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[_FileKey, str] = {}
        self._pending: dict[_FileKey, threading.Event] = {}

    def claim(self, key: _FileKey) -> bool:
        """True: the caller hashes while it sends and must call ``done``."""
        with self._lock:
            if key in self._known or key in self._pending:
                return False
            self._pending[key] = threading.Event()
            return True

    def done(self, key: _FileKey, digest: str | None) -> None:
        """Publish the claimer's hash (``None``: its stream did not send it all)."""
        with self._lock:
            if digest:
                self._known[key] = digest
            event = self._pending.pop(key, None)
        if event is not None:
            event.set()

    def result(self, key: _FileKey, path: Path, *, timeout: float) -> str:
        """The file's hash: published, or waited for, or else computed here."""
        with self._lock:
            event = self._pending.get(key)
        if event is not None:
            event.wait(timeout)
        with self._lock:
            known = self._known.get(key)
        if known is not None:
            return known
        digest = _file_sha256(path)
        assert digest is not None  # nothing can stop it
        return digest

    def forget(self) -> None:
        with self._lock:
            self._known.clear()


SENT_HASHES = SentHashes()


def _file_sha256(path: Path, *, stop: threading.Event | None = None) -> str | None:
    """sha256 of the file read through its mapping; None if ``stop`` was set first."""
    digest = hashlib.sha256()
    for chunk in FileChunks(path, chunk=CHUNK):
        if stop is not None and stop.is_set():
            return None
        digest.update(chunk)
    return digest.hexdigest()


class _IdleHash:
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
        self._digest = _file_sha256(path, stop=self._stop)

    def result(self, *, timeout: float) -> str | None:
        self._thread.join(timeout)
        return self._digest

    def cancel(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


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
    key = _file_key(image.path)
    hasher = _IdleHash(image.path) if SENT_HASHES.claim(key) else None
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
        raise CommandFailed(f"write to {disk.name} failed: {_first_line(err) or res.result.rc}")
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
        raise CommandFailed(f"readback of {disk} failed: {_first_line(res.stderr) or res.rc}")
    return digest


def flush(transport: Transport, disk: str, *, timeout: float) -> None:
    """Make what the stream wrote durable (fsync of the disk).

    :raises CommandFailed: the flush failed: the device could not write it (fatal).
    """
    res = transport.run(f"sync {disk_path(disk)}", timeout=timeout)
    if not res.ok:
        raise CommandFailed(
            f"flush of {disk} failed: {_first_line(res.stderr) or res.rc}; the disk did not "
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


def _first_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:200] if lines else ""
