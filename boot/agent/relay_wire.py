"""The relay's wire and its small parts, shared by ``relay.py`` (standard library only,
shipped beside it in the PE's ``/opt/masterline/agent/``): frames, the JSON event
lines, the uplink pacer, the TLS contexts of the wave's authority, the hello, and the
member's state file (its verified offset, for a restarted relay)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

FRAME = struct.Struct("!cII")  # kind, chunk index, payload length
DATA, ZERO, KEEPALIVE = b"D", b"Z", b"K"
HELLO_MAX = 4096
VERSION = 1


def server_name(member: str) -> str:
    """The name in a member's certificate (and what a downstream checks)."""
    return f"{member}.wave.invalid"


class Events:
    """JSON lines on standard output, one per event, from any thread."""

    def __init__(self, out: Any) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, separators=(",", ":"))
        with self._lock:
            try:
                self._out.write(line + "\n")
                self._out.flush()
            except (OSError, ValueError):
                pass  # the worker went away; the stop that follows ends us


class Pacer:
    """A token bucket over everything this member sends downstream (``uplink_bps``,
    0 = unpaced): a laptop's port rate, on a bench that models one."""

    def __init__(self, rate: float) -> None:
        self.rate, self.tokens, self.last = rate, 0.0, time.monotonic()
        self._lock = threading.Lock()

    def take(self, n: int) -> None:
        if self.rate <= 0:
            return
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.rate, self.tokens + (now - self.last) * self.rate) - n
            self.last = now
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            time.sleep(wait)


def contexts(tls: dict[str, str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client contexts that trust the wave's authority alone. The key is
    written to a private temporary folder only for ``load_cert_chain`` to read it."""
    folder = tempfile.mkdtemp(prefix="relay-")
    try:
        cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, text in ((cert, tls["cert"]), (key, tls["key"])):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        contexts = []
        for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
            ctx = ssl.SSLContext(purpose)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(cert, key)
            ctx.load_verify_locations(cadata=tls["ca"])
            ctx.verify_mode = ssl.CERT_REQUIRED
            contexts.append(ctx)
        return contexts[0], contexts[1]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def recv_exact(sock: socket.socket, buf: memoryview) -> None:
    got = 0
    while got < len(buf):
        n = sock.recv_into(buf[got:])
        if n == 0:
            raise ConnectionError("closed by the peer")
        got += n


def peer_member(sock: ssl.SSLSocket) -> str:
    cert: Any = sock.getpeercert() or {}
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS" and str(value).endswith(".wave.invalid"):
            return str(value)[: -len(".wave.invalid")]
    raise ssl.SSLError("peer certificate names no wave member")


def read_hello(sock: ssl.SSLSocket) -> dict[str, Any]:
    line = b""
    while not line.endswith(b"\n"):
        part = sock.recv(HELLO_MAX - len(line))
        if not part or len(line) + len(part) >= HELLO_MAX:
            raise ValueError("no hello")
        line += part
    hello = json.loads(line)
    if not isinstance(hello, dict):
        raise ValueError("bad hello")
    return hello


def under_root(path: str) -> str:
    """``path`` inside the PE's root folder (``$MASTERLINE_PE_ROOT``: the lab's; unset on
    a real PE), as the worker's shell commands on the PE read it."""
    root = os.environ.get("MASTERLINE_PE_ROOT", "")
    return root + path if root and path.startswith("/") else path


class StateFile:
    """Where a member keeps its verified offset (a JSON file, rewritten atomically after
    every chunk). Only a hint: ``recheck`` reads the chunks it claims back from the
    target and keeps the prefix that still matches the manifest."""

    def __init__(self, path: str, key: dict[str, Any]) -> None:
        self.path = path
        self.key = key

    def claimed(self) -> int:
        """The verified chunks the file claims for this image (0: none, or another's)."""
        try:
            with open(self.path) as f:
                state = json.load(f)
            if not isinstance(state, dict):
                return 0
            if {k: state.get(k) for k in self.key} != self.key:
                return 0
            return max(0, int(state["verified"]))
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    def save(self, verified: int) -> None:
        temp = f"{self.path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({**self.key, "verified": verified}, f)
            os.replace(temp, self.path)
        except OSError:
            pass  # only a hint for a restart: the stream itself does not depend on it


def recheck(claimed: int, chunks: list[str], read: Callable[[int], bytes]) -> int:
    """How many of the first ``claimed`` chunks ``read(index)`` still returns intact."""
    good = 0
    for index in range(min(claimed, len(chunks))):
        try:
            data = read(index)
        except OSError:
            break
        if hashlib.sha256(data).hexdigest() != chunks[index]:
            break
        good += 1
    return good


class Disk:
    """The member's target: every write, flush and read of the relay goes through here,
    so a lab disk's injected faults hold for the relay as for the shell tools
    (``open_target``)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def pwrite(self, data: bytes | memoryview, offset: int) -> int:
        return os.pwrite(self.fd, data, offset)

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def fsync(self) -> None:
        os.fsync(self.fd)


LAB_DISK_HOOK = "MASTERLINE_LAB_DISK_HOOK"
"""Set only by a lab laptop's ForceCommand (``lab/pe_shell.sh``) while one of its disk
faults is on: the file whose ``wrap(disk, path)`` applies it. A real PE has no lab."""


def open_target(path: str) -> Disk:
    """The target opened for reading and writing (created if missing: a file in tests).

    :raises OSError: it cannot be opened (or the lab's hook cannot be loaded)."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    disk = Disk(os.open(path, flags, 0o600))
    hook = os.environ.get(LAB_DISK_HOOK, "")
    if hook and os.environ.get("MASTERLINE_LAB_LAPTOP_DIR"):
        import importlib.util

        spec = importlib.util.spec_from_file_location("lab_disk_hook", hook)
        if spec is None or spec.loader is None:
            raise OSError(f"lab disk hook {hook} cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        wrapped: Disk = module.wrap(disk, path)
        return wrapped
    return disk
