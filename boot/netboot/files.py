"""Serving the PE's files to many laptops booting at once.

Starlette's ``FileResponse`` under uvicorn reads the file in 64 KiB chunks, each read a
hop to a worker thread (at most 40 at a time): with 200 laptops booting at once the API
delivered 0.38x of what nginx did from the same files (docs/benchmarks.md). uvicorn
offers no ``sendfile`` (no ASGI ``pathsend`` extension), so this does the next best
thing: a PE version's files are immutable (the version is named after their sha256), so
each is memory-mapped once per process and sent from the event loop in 256 KiB slices of
that map: no read copies, no thread hops, no per-request hashing; the pages are the
kernel's page cache, shared by every worker process instead of copied into each.

Single byte ranges are honoured (``Range: bytes=a-b``, 206), as a resumed download
expects; several ranges get the whole file (allowed by RFC 9110)."""

from __future__ import annotations

import mmap
import os
import re
import threading
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

CHUNK = 256 << 10
"""Bytes per ASGI body message: large enough that per-message overhead vanishes, small
enough that a socket usually takes it whole (what it does not take is copied into the
transport's buffer: 1 MiB slices measured 0.64x nginx, 4 MiB 0.87x, 256 KiB 1.09x on
50 clients) and that a slow client holds little memory. Measured again by server CPU per
GiB with 200 clients: 64 KiB and 1 MiB cost no less than 256 KiB, and 1 MiB peaked 50 MiB
higher (docs/benchmarks.md)."""
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(value: str | None, size: int) -> tuple[int, int] | bool | None:
    """(first, last) of a satisfiable single range of a ``size``-byte file, None for the
    whole file (no ``Range``, several ranges or a form not served), False for an
    unsatisfiable one (416). Shared with the sendfile server (``fileserver``)."""
    if value is None:
        return None
    m = RANGE.match(value.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None  # several ranges or a form we do not serve: the whole file
    if m.group(1):
        first = int(m.group(1))
        last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    else:  # the last N bytes
        first, last = max(0, size - int(m.group(2))), size - 1
    if first >= size or last < first:
        return False
    return first, last


@dataclass(frozen=True)
class Answer:
    """What to answer a GET or HEAD of a file: the same in both servers (the API's
    route below and the sendfile server, ``fileserver``)."""

    status: int
    first: int
    count: int
    """Bytes of the body from ``first`` (0 for a 416; a HEAD sends none of them)."""
    headers: list[tuple[str, str]]
    """Every header but the content type."""


def answer(
    *, size: int, mtime: float, immutable: bool, method: str, range_header: str | None
) -> Answer:
    """The status, the byte span and the headers for a file of ``size`` bytes: a single
    range of a GET gets 206 (or 416), anything else the whole file. ``immutable``: the
    file never changes under its URL (a PE version), so a cache in between may keep it."""
    headers = [("accept-ranges", "bytes"), ("last-modified", formatdate(mtime, usegmt=True))]
    if immutable:
        headers.append(("cache-control", "public, max-age=86400, immutable"))
    wanted = byte_range(range_header, size) if method == "GET" else None
    if wanted is False:
        headers += [("content-range", f"bytes */{size}"), ("content-length", "0")]
        return Answer(416, 0, 0, headers)
    first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
    if isinstance(wanted, tuple):
        headers.append(("content-range", f"bytes {first}-{last}/{size}"))
    headers.append(("content-length", str(last - first + 1)))
    return Answer(206 if isinstance(wanted, tuple) else 200, first, last - first + 1, headers)


class _Mapped:
    def __init__(self, path: Path) -> None:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            self.key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            self.size = st.st_size
            self.mtime = st.st_mtime
            # mmap cannot map an empty file; nothing to share then.
            self.view = (
                memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))
                if st.st_size
                else memoryview(b"")
            )


_lock = threading.Lock()
_maps: dict[Path, _Mapped] = {}
MAX_MAPPED = 8
"""Files kept mapped (two per PE version: the current one and a few before it)."""


def mapped(path: Path) -> _Mapped:
    """The file's map, made once per process; made again if the file was replaced.

    :raises OSError: the file cannot be opened.
    """
    st = path.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _lock:
        found = _maps.get(path)
        if found is not None and found.key == key:
            return found
        made = _Mapped(path)
        _maps.pop(path, None)
        while len(_maps) >= MAX_MAPPED:  # oldest first (dicts keep insertion order)
            # Dropping the reference only: a response still sending keeps its own view.
            _maps.pop(next(iter(_maps)))
        _maps[path] = made
        return made


class MappedFileResponse(Response):
    """A file sent from its memory map (module docstring says why).

    ``immutable``: the file never changes under its URL (a PE version), so a cache in
    between may keep it; otherwise (Debian's ``ipxe.efi``, replaced by a package upgrade:
    a new file, so a response still sending keeps the old map) no cache header.
    """

    def __init__(
        self,
        path: Path,
        *,
        media_type: str = "application/octet-stream",
        immutable: bool = True,
    ) -> None:
        self.file = mapped(path)
        self.immutable = immutable
        super().__init__(content=None, media_type=media_type)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        range_header = None
        for name, raw in scope.get("headers", []):
            if name == b"range":
                range_header = raw.decode("latin-1")
        method = scope.get("method", "GET")
        got = answer(
            size=self.file.size, mtime=self.file.mtime, immutable=self.immutable,
            method=method, range_header=range_header,
        )  # fmt: skip
        self.status_code = got.status
        for name, value in got.headers:
            self.headers[name] = value
        start = {"type": "http.response.start", "status": got.status, "headers": self.raw_headers}
        await send(start)
        if method == "HEAD" or got.count == 0:
            await send({"type": "http.response.body", "body": b""})
            return
        view = self.file.view
        at, end_of_span = got.first, got.first + got.count
        while at < end_of_span:
            end = min(at + CHUNK, end_of_span)
            await send(
                {"type": "http.response.body", "body": view[at:end], "more_body": end < end_of_span}
            )
            at = end
