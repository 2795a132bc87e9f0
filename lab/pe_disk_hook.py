"""The lab's disk faults for a program that writes the laptop's disk itself (the PE's
relay, ``boot/agent/relay.py``), as the ``dd``, ``zstd`` and ``sync`` shims apply them to
the shell tools: ``lab/pe_shell.sh`` names this file in ``MASTERLINE_LAB_DISK_HOOK``
while a disk fault is set, and the relay's ``open_target`` hands its disk to ``wrap``.

Standard library only: it runs inside the PE's ``python3 -S``. The fault comes from the
environment ``pe_shell.sh`` exported from ``faults.env`` (``LAB_DISK_FAULT``,
``LAB_DISK_AFTER_BYTES``, ``LAB_DISK_FLIP_OFFSET``, ``LAB_DISK_PATH``), so it is the one
that was set when the command started, as for ``dd``.
"""

from __future__ import annotations

import errno
import os
from typing import Any

_ERRNO = {"disk_full": errno.ENOSPC, "disk_write_error": errno.EIO}


class FaultyDisk:
    """A lab disk with its fault: the same contract as the relay's ``Disk``."""

    def __init__(self, disk: Any, fault: str, *, after_bytes: int, flip_offset: int) -> None:
        self.disk = disk
        self.fd = disk.fd
        self.fault = fault
        self.after_bytes = after_bytes
        self.flip_offset = flip_offset
        self.written = 0

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        code = _ERRNO.get(self.fault)
        if code is not None:
            # Writes what still fits, then fails as a full or failing device does.
            room = max(0, self.after_bytes - self.written)
            if len(data) > room:
                if room:
                    self.written += self.disk.pwrite(data[:room], offset)
                raise OSError(code, os.strerror(code))
        n = int(self.disk.pwrite(data, offset))
        self.written += n
        if self.fault == "flipped_byte" and offset <= self.flip_offset < offset + n:
            # The write "succeeded"; one byte at the fault's offset does not read back.
            byte = self.disk.pread(1, self.flip_offset)
            self.disk.pwrite(bytes([byte[0] ^ 0xFF]), self.flip_offset)
        return n

    def pread(self, length: int, offset: int) -> bytes:
        data: bytes = self.disk.pread(length, offset)
        return data

    def fsync(self) -> None:
        if self.fault == "flush_error":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.disk.fsync()


def wrap(disk: Any, path: str) -> Any:
    """``disk`` with the laptop's disk fault when ``path`` is the laptop's disk (a write
    anywhere else is untouched, as the ``dd`` shim passes it through)."""
    fault = os.environ.get("LAB_DISK_FAULT", "")
    target = os.environ.get("LAB_DISK_PATH", "")
    if not fault or not target or os.path.realpath(path) != os.path.realpath(target):
        return disk
    return FaultyDisk(
        disk,
        fault,
        after_bytes=int(os.environ.get("LAB_DISK_AFTER_BYTES", "0") or 0),
        flip_offset=int(os.environ.get("LAB_DISK_FLIP_OFFSET", "0") or 0),
    )
