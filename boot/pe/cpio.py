"""A reproducible initramfs: a ``newc`` cpio archive written from an in-memory tree,
entries sorted by path, owner root, one fixed mtime, then gzip without a name or time.
The same inputs give the same bytes (a test builds twice and compares sha256)."""

from __future__ import annotations

import gzip
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True)
class File:
    source: Path | bytes
    mode: int = 0o644


@dataclass(frozen=True)
class Dir:
    mode: int = 0o755


@dataclass(frozen=True)
class Symlink:
    target: str


@dataclass(frozen=True)
class CharDev:
    major: int
    minor: int
    mode: int = 0o600


Node = File | Dir | Symlink | CharDev


def _header(
    name: bytes, *, ino: int, mode: int, nlink: int, mtime: int, size: int, rdev: tuple[int, int]
) -> bytes:
    fields = (ino, mode, 0, 0, nlink, mtime, size, 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
    head = b"070701" + b"".join(b"%08x" % v for v in fields) + name + b"\0"
    return head + b"\0" * (-len(head) % 4)


def _entries(tree: dict[str, Node]) -> Iterator[tuple[str, Node]]:
    # Parents first: a sorted list of full paths puts "a" before "a/b".
    yield from sorted(tree.items())


def write(tree: dict[str, Node], out: BinaryIO, *, mtime: int) -> None:
    """Write ``tree`` (paths relative to /, no leading slash) as newc cpio to ``out``."""
    for ino, (path, node) in enumerate(_entries(tree), start=1):
        name = path.encode()
        body = b""
        rdev = (0, 0)
        nlink = 1
        if isinstance(node, Dir):
            mode, nlink = stat.S_IFDIR | node.mode, 2
        elif isinstance(node, Symlink):
            mode, body = stat.S_IFLNK | 0o777, node.target.encode()
        elif isinstance(node, CharDev):
            mode, rdev = stat.S_IFCHR | node.mode, (node.major, node.minor)
        else:
            mode = stat.S_IFREG | node.mode
            body = node.source if isinstance(node.source, bytes) else node.source.read_bytes()
        out.write(
            _header(name, ino=ino, mode=mode, nlink=nlink, mtime=mtime, size=len(body), rdev=rdev)
        )
        out.write(body)
        out.write(b"\0" * (-len(body) % 4))
    out.write(_header(b"TRAILER!!!", ino=0, mode=0, nlink=1, mtime=0, size=0, rdev=(0, 0)))


def write_gzip(tree: dict[str, Node], path: Path, *, mtime: int) -> None:
    """The cpio, gzip-compressed with no file name and a zero timestamp (``gzip -n``)."""
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as gz,
    ):
        write(tree, gz, mtime=mtime)  # type: ignore[arg-type]
