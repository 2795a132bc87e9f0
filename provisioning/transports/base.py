"""The one transport Protocol: SSH (paramiko / OpenSSH) and WinRM (pywinrm) both return
these types, and translate their library's exceptions into ``provisioning.errors`` at
this edge (``raise ... from e``), never leaking a credential into the message.
(pyinfra's ``connectors/base.py`` shape; its WinRM connector shows what happens when
implementations return different things.)"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

ProgressCallback = Callable[[int], None]
"""Called with the number of bytes sent so far."""


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
    """SHA-256 of the bytes the remote command received on stdin."""
    result: CommandResult


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
    ) -> StreamResult:
        """Feed ``chunks`` to ``cmd``'s stdin, hashing them as they go."""
        ...

    def close(self) -> None: ...
