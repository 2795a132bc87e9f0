"""SSH to a laptop: paramiko for control commands, the system OpenSSH client for bulk
bytes.

Why two clients: control commands (identity, disk choice, readback hash) are short and
paramiko gives typed exceptions and no process per command. The image stream is bulk
encryption, where paramiko is GIL-bound at ~0.5x OpenSSH per stream and does not scale
with threads (~0.6x with eight threads, measured); ``ssh`` fed through stdin is
the fastest client measured and runs in its own process, so eight streams use every
core. Both clients trust exactly the same pinned ``known_hosts`` file: paramiko with
``RejectPolicy`` semantics (an unknown or different key is refused, never added), OpenSSH
with ``StrictHostKeyChecking=yes``.

Library errors are translated here, ``raise ... from e``; messages never carry key
material or command input.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import paramiko

from provisioning.errors import (
    AuthFailed,
    CommandTimedOut,
    ConnectFailed,
    HostKeyMismatch,
    TransportError,
)
from provisioning.transports.base import (
    CommandResult,
    FileChunks,
    ProgressCallback,
    SshEndpoint,
    StreamResult,
)

PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "aes128-ctr")
STREAM_CIPHER = "aes128-gcm@openssh.com,aes128-ctr"
"""In preference order: AES-GCM where the server has it (OpenSSH); the PE's dropbear
(Debian's build) offers no GCM, only chacha20-poly1305 and AES-CTR, and a lone GCM made
every stream to a real PE fail with "no matching cipher"."""
PIPE_BYTES = 1024 * 1024
_SETPRIV = shutil.which("setpriv")
"""util-linux's ``setpriv`` (Essential on Debian), to give each ``ssh`` a parent-death
signal without a ``preexec_fn`` (unsafe in a process with threads)."""
# paramiko's sendall copies the rest of the buffer after every packet (quadratic):
# keep control-channel writes at 256 KiB or less (physical-limits.md P1).
_SEND_CHUNK = 256 * 1024


class SSHTransport:
    """One SSH connection to one laptop (one paramiko transport per stream, as the
    research advises against paramiko#822 rekey trouble)."""

    def __init__(self, endpoint: SshEndpoint, *, connect_timeout: float = 10.0) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self._transport: paramiko.Transport | None = None

    # Connection.
    def _connect(self) -> paramiko.Transport:
        if self._transport is not None and self._transport.is_active():
            return self._transport
        ep = self.endpoint
        known = paramiko.HostKeys()
        try:
            known.load(str(ep.known_hosts_path))
        except OSError as e:
            raise HostKeyMismatch(f"cannot read pinned known_hosts for {ep}") from e
        try:
            sock = socket.create_connection((ep.host, ep.port), timeout=self.connect_timeout)
        except OSError as e:
            raise ConnectFailed(f"cannot connect to {ep}: {e.strerror or type(e).__name__}") from e
        transport = paramiko.Transport(sock)
        try:
            opts = transport.get_security_options()
            opts.ciphers = tuple(c for c in PREFERRED_CIPHERS if c in opts.ciphers) + tuple(
                c for c in opts.ciphers if c not in PREFERRED_CIPHERS
            )
            try:
                transport.start_client(timeout=self.connect_timeout)
                # Raises "No existing session" when the peer hung up right after the
                # handshake (a PE going down for its reboot): a dropped connection too.
                key = transport.get_remote_server_key()
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise ConnectFailed(f"SSH handshake with {ep} failed: {_short(e)}") from e
            entry = known.lookup(ep.host_key_name)
            if entry is None or key.get_name() not in entry:
                raise HostKeyMismatch(f"host key of {ep} is not pinned in known_hosts")
            if entry[key.get_name()] != key:
                raise HostKeyMismatch(f"host key of {ep} differs from the pinned one")
            try:
                pkey = paramiko.PKey.from_path(ep.key_path)
            except (OSError, paramiko.SSHException) as e:
                raise AuthFailed(f"cannot load the bench key for {ep}") from e
            try:
                transport.auth_publickey(ep.user, pkey)
            except paramiko.AuthenticationException as e:
                raise AuthFailed(f"{ep} rejected the bench key") from e
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise ConnectFailed(f"connection to {ep} dropped during auth") from e
        except BaseException:
            transport.close()
            raise
        self._transport = transport
        return transport

    def session_socket(self) -> socket.socket:
        """The connected socket under this session (connecting first if needed): its
        local address is the one the laptop reaches this worker at (relay imaging's
        source listens there, ``relay/address.py``).

        :raises ConnectFailed, AuthFailed, HostKeyMismatch: as ``run``.
        """
        sock = self._connect().sock
        assert isinstance(sock, socket.socket)
        return sock

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    # Commands.
    def run(self, cmd: str, *, timeout: float, stdin: bytes | None = None) -> CommandResult:
        """Run ``cmd`` through paramiko.

        :raises ConnectFailed: refused, dropped, handshake failed (retryable).
        :raises CommandTimedOut: no exit status within ``timeout`` (retryable).
        :raises AuthFailed, HostKeyMismatch: fatal.
        """
        transport = self._connect()
        deadline = time.monotonic() + timeout
        try:
            ch = transport.open_session(timeout=self.connect_timeout)
            ch.exec_command(cmd)
            if stdin is not None:
                view = memoryview(stdin)
                for i in range(0, len(view), _SEND_CHUNK):
                    ch.sendall(bytes(view[i : i + _SEND_CHUNK]))
            ch.shutdown_write()
            out: list[bytes] = []
            err: list[bytes] = []
            while True:
                if ch.recv_ready():
                    out.append(ch.recv(65536))
                    continue
                if ch.recv_stderr_ready():
                    err.append(ch.recv_stderr(65536))
                    continue
                if ch.exit_status_ready():
                    break
                if ch.closed and not ch.exit_status_ready():
                    raise ConnectFailed(f"connection to {self.endpoint} dropped mid-command")
                if time.monotonic() > deadline:
                    ch.close()
                    raise CommandTimedOut(
                        f"command on {self.endpoint} timed out after {timeout:.0f}s"
                    )
                select.select([ch], [], [], 0.05)
            rc = ch.recv_exit_status()
            ch.close()
        except TransportError:
            raise
        except (paramiko.SSHException, EOFError, OSError) as e:
            self.close()
            raise ConnectFailed(f"connection to {self.endpoint} dropped: {_short(e)}") from e
        return CommandResult(
            rc=rc,
            stdout=b"".join(out).decode(errors="replace"),
            stderr=b"".join(err).decode(errors="replace"),
        )

    def put_stream(
        self,
        cmd: str,
        chunks: Iterable[bytes | memoryview],
        *,
        timeout: float,
        progress: ProgressCallback | None = None,
        hash_sent: bool = True,
    ) -> StreamResult:
        """Feed ``chunks`` to ``cmd`` through the system ``ssh`` client (see module doc),
        hashing what is sent unless ``hash_sent`` is false. Any exception from
        ``chunks`` or ``progress`` (an abort) kills the stream.

        A whole file with nothing to do per chunk (no pacing, no hash: an unpaced image
        stream, whose hash ``imaging`` takes once per image) becomes ``ssh``'s stdin
        itself, exactly as ``ssh host 'cat > disk' < file`` runs: no byte and no chunk
        hand-over passes through this process. Progress is then the file offset, which
        ``ssh`` advances in the open file description it shares with us. Such an ``ssh``
        would not see the end of its input if this process died (a pipe's writer dying
        is an EOF; a file's is not), so it runs with a parent-death signal
        (``setpriv --pdeathsig``, util-linux): a SIGKILLed worker leaves no stream
        writing a disk behind it. Without ``setpriv`` the file goes through the pipe.

        :raises ConnectFailed: refused or dropped (retryable).
        :raises CommandTimedOut: not finished within ``timeout`` (retryable).
        :raises AuthFailed, HostKeyMismatch: fatal.
        """
        whole_file = isinstance(chunks, FileChunks) and chunks.before is None and not hash_sent
        if whole_file and _SETPRIV is not None:
            assert isinstance(chunks, FileChunks)
            return self._put_file(cmd, chunks.path, timeout=timeout, progress=progress)
        deadline = time.monotonic() + timeout
        stream = _Ssh(
            self.endpoint, cmd, stdin=subprocess.PIPE, connect_timeout=self.connect_timeout
        )
        proc = stream.proc
        assert proc.stdin is not None
        # A pipe holds 64 KiB by default: each 1 MiB chunk would then cost sixteen
        # hand-overs between this thread and ssh, and ssh would wait while we hash. A
        # pipe as large as a chunk lets ssh drain one while the next is read and hashed.
        with contextlib.suppress(OSError):  # capped by /proc/sys/fs/pipe-max-size
            fcntl.fcntl(proc.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        digest = hashlib.sha256()
        sent = 0
        broken = False
        pipe = proc.stdin.fileno()
        # A file goes from the page cache into the pipe by splice (page references, no
        # copy through this process): what is left for Python per chunk is the hash.
        spliced = isinstance(chunks, FileChunks) and hasattr(os, "splice")
        source: Iterable[tuple[int, int, bytes | memoryview]] = (
            chunks.ranges() if isinstance(chunks, FileChunks) else ((-1, 0, c) for c in chunks)
        )
        try:
            for fd, offset, chunk in source:
                try:
                    if spliced:
                        try:
                            _splice_all(fd, offset, len(chunk), pipe)
                        except OSError as e:
                            # A file system that cannot splice says so on the first
                            # range, before any byte moved: write the mapping instead.
                            if e.errno not in (errno.EINVAL, errno.ENOSYS) or sent:
                                raise
                            spliced = False
                            _write_all(proc.stdin, chunk)
                    else:
                        _write_all(proc.stdin, chunk)
                except BrokenPipeError:
                    broken = True
                    break
                # Hashed after the write, while ssh drains this chunk from the pipe
                # (hashing releases the GIL): the two overlap instead of taking turns.
                if hash_sent:
                    digest.update(chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(sent)
                if time.monotonic() > deadline:
                    raise CommandTimedOut(
                        f"stream to {self.endpoint} timed out after {timeout:.0f}s"
                    )
            try:
                proc.stdin.close()
            except BrokenPipeError:
                broken = True
            # The last megabytes may still sit in socket buffers: keep reporting (which
            # is also where an abort is noticed) until the laptop side has finished.
            rc = stream.wait(timeout, deadline, lambda: progress(sent) if progress else None)
        finally:
            stream.close()
        result = stream.result(rc)
        if broken and rc == 0:
            raise ConnectFailed(f"stream to {self.endpoint} closed early")
        return StreamResult(
            bytes_sent=sent, sha256=digest.hexdigest() if hash_sent else "", result=result
        )

    def _put_file(
        self, cmd: str, path: Path, *, timeout: float, progress: ProgressCallback | None
    ) -> StreamResult:
        deadline = time.monotonic() + timeout
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            fd = f.fileno()

            def sent() -> int:
                return os.lseek(fd, 0, os.SEEK_CUR)

            stream = _Ssh(self.endpoint, cmd, stdin=f, connect_timeout=self.connect_timeout)
            try:
                if progress is not None:
                    progress(0)
                rc = stream.wait(
                    timeout, deadline, lambda: progress(sent()) if progress else None, every=0.25
                )
                done = sent()
            finally:
                stream.close()
        result = stream.result(rc)
        if rc == 0 and done < size:
            raise ConnectFailed(f"stream to {self.endpoint} closed early")
        if progress is not None:
            progress(done)
        return StreamResult(bytes_sent=done, sha256="", result=result)


class _Ssh:
    """One ``ssh`` process running ``cmd`` with the given stdin, its stdout and stderr
    drained by two threads (so neither pipe can fill and stall it)."""

    def __init__(
        self, endpoint: SshEndpoint, cmd: str, *, stdin: Any, connect_timeout: float
    ) -> None:
        self.endpoint = endpoint
        argv = openssh_argv(endpoint, cmd, connect_timeout=connect_timeout)
        if _SETPRIV is not None:
            # Killed with this process (with the thread that started it, which waits for
            # it): the stream never outlives the worker that owns it.
            argv = [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]
        # Unbuffered: chunks are already 1 MiB, and go to the pipe as they are.
        self.proc = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._out: list[bytes] = []
        self._err: list[bytes] = []
        self._readers = [
            threading.Thread(target=_drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=_drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def wait(
        self, timeout: float, deadline: float, tick: Callable[[], object], *, every: float = 0.5
    ) -> int:
        """Wait for ``ssh`` to exit, calling ``tick()`` every ``every`` seconds (where
        an abort raised by a progress callback is noticed).

        :raises CommandTimedOut: past ``deadline`` (``timeout`` after the start).
        """
        while True:
            try:
                return self.proc.wait(timeout=every)  # returns the moment ssh exits
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise CommandTimedOut(
                        f"stream to {self.endpoint} timed out after {timeout:.0f}s"
                    ) from None
                tick()

    def close(self) -> None:
        """Kill ``ssh`` if it still runs (an abort or a timeout), and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for t in self._readers:
            t.join(timeout=5)

    def result(self, rc: int) -> CommandResult:
        """The laptop command's result.

        :raises AuthFailed, HostKeyMismatch, ConnectFailed: ``ssh`` itself failed (255).
        """
        stderr = b"".join(self._err).decode(errors="replace")
        if rc == 255:
            raise classify_openssh_failure(stderr, self.endpoint)
        return CommandResult(
            rc=rc, stdout=b"".join(self._out).decode(errors="replace"), stderr=stderr
        )


def openssh_argv(endpoint: SshEndpoint, cmd: str, *, connect_timeout: float = 10.0) -> list[str]:
    """The ``ssh`` command line with the pinned trust and the fast cipher; ``-F
    /dev/null`` so no user or system config can loosen host key checking."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(endpoint.port),
        "-i",
        str(endpoint.key_path),
        "-l",
        endpoint.user,
        "-o",
        f"UserKnownHostsFile={endpoint.known_hosts_path}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"ConnectTimeout={int(connect_timeout)}",
        "-o",
        "ServerAliveInterval=5",
        "-o",
        "ServerAliveCountMax=6",
        "-o",
        "LogLevel=ERROR",
        "-c",
        STREAM_CIPHER,
        endpoint.host,
        cmd,
    ]


def classify_openssh_failure(stderr: str, endpoint: SshEndpoint) -> TransportError:
    """Map an ``ssh`` exit 255 to our error types from its (English) stderr."""
    text = stderr.lower()
    if "host key verification failed" in text or "host identification has changed" in text:
        return HostKeyMismatch(f"host key of {endpoint} is not the pinned one")
    if "permission denied" in text:
        return AuthFailed(f"{endpoint} rejected the bench key")
    line = stderr.strip().splitlines()[-1] if stderr.strip() else "ssh exited 255"
    return ConnectFailed(f"stream to {endpoint} failed: {line[:200]}")


def _drain(pipe: object, into: list[bytes]) -> None:
    read = pipe.read  # type: ignore[attr-defined]
    while True:
        data = read(65536)
        if not data:
            return
        into.append(data)


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _splice_all(fd: int, offset: int, length: int, pipe: int) -> None:
    """Move ``length`` bytes of ``fd`` from ``offset`` into ``pipe`` (blocking: splice
    returns short counts when the pipe is full)."""
    while length > 0:
        n = os.splice(fd, pipe, length, offset_src=offset)
        if n <= 0:
            raise BrokenPipeError("splice moved nothing")
        offset += n
        length -= n


def _write_all(pipe: Any, data: bytes | memoryview) -> None:
    """An unbuffered write may take part of ``data`` (a signal mid-write): send the rest."""
    view = memoryview(data)
    while view:
        n = pipe.write(view)
        view = view[n or 0 :]
