"""The one transport Protocol: SSH (paramiko / OpenSSH) and WinRM (pywinrm) both return
these types, and translate their library's exceptions into ``provisioning.errors`` at
this edge (``raise ... from e``), never leaking a credential into the message.
(pyinfra's ``connectors/base.py`` shape; its WinRM connector shows what happens when
implementations return different things.)"""

from __future__ import annotations

import mmap
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol, runtime_checkable

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes sent so far."""


class WinRMTransportKind(StrEnum):
    """The only two ways Masterline talks WinRM: HTTPS with a validated server
    certificate, or NTLM with message encryption. Basic/plaintext over HTTP is refused."""

    SSL = "ssl"
    NTLM = "ntlm"


@dataclass(frozen=True)
class SshEndpoint:
    """Where an SSH server answers, with the key to log in and the pinned host key
    (``known_hosts_path``): what every SSH connection of the pipeline is given."""

    host: str
    port: int
    user: str
    key_path: Path
    known_hosts_path: Path

    @property
    def host_key_name(self) -> str:
        """How known_hosts names this endpoint (``[host]:port`` off port 22)."""
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


@dataclass(frozen=True)
class StreamResult:
    bytes_sent: int
    sha256: str
    """SHA-256 of the bytes the remote command received on stdin ("" when the caller
    asked for no hash)."""
    result: CommandResult


class FileChunks:
    """A file to stream, as ``chunk``-sized ranges; ``before(n)`` runs before each range
    is taken (a bandwidth bucket's ``take``, which may also raise an abort).

    Iterated, it yields read-only ``memoryview`` slices of a mapping of the file, each
    valid until the next is taken: any transport can send and hash them without a copy.
    A transport that can hand a range to the kernel instead (SSH: ``splice`` from this
    file into ``ssh``'s stdin pipe) iterates ``ranges()``, which also gives the file
    descriptor and offset. The file must not change while it is sent: the site cache's
    files are written once, under a name that is their hash, and never modified.
    """

    def __init__(
        self, path: Path, *, chunk: int = 1024 * 1024, before: Callable[[int], None] | None = None
    ) -> None:
        self.path = path
        self.chunk = chunk
        self.before = before

    def ranges(self) -> Iterator[tuple[int, int, memoryview]]:
        """``(fd, offset, view)`` for each range, in order."""
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                whole = memoryview(mapped)
                try:
                    for offset in range(0, size, self.chunk):
                        if self.before is not None:
                            # Before slicing: an abort raised here must not leave a slice
                            # exported, or the mapping could not be closed.
                            self.before(min(self.chunk, size - offset))
                        view = whole[offset : offset + self.chunk]
                        try:
                            yield f.fileno(), offset, view
                        finally:
                            view.release()
                finally:
                    whole.release()

    def __iter__(self) -> Iterator[memoryview]:
        for _, _, view in self.ranges():
            yield view


@runtime_checkable
class SessionSocket(Protocol):
    """A transport over one connected socket (SSH): its local address is the one the
    laptop reaches the worker at."""

    def session_socket(self) -> socket.socket: ...


@runtime_checkable
class Transport(Protocol):
    def run(self, cmd: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        """Run ``cmd`` on the laptop.

        :raises ConnectFailed: connection refused or dropped (retryable).
        :raises CommandTimedOut: no result within ``timeout`` (retryable).
        :raises AuthFailed, HostKeyMismatch: fatal.
        """
        ...

    def put_stream(
        self,
        cmd: str,
        chunks: Iterable[bytes | memoryview],
        *,
        timeout: float,
        progress: ProgressCallback | None = None,
        hash_sent: bool = True,
    ) -> StreamResult:
        """Feed ``chunks`` (any iterable, or a ``FileChunks`` a transport may send
        without copying) to ``cmd``'s stdin, hashing them as they go unless
        ``hash_sent`` is false (then ``StreamResult.sha256`` is empty)."""
        ...

    def close(self) -> None: ...
