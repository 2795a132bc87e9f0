"""The head of every chain: the worker serves the image's stored file to the members
that connect to it, with the wire protocol of ``boot/agent/relay.py``.

Only members of the wave get a byte (TLS 1.3, client certificates of the wave's
authority, the hello naming this wave and the certificate's member). What it sends is
counted (``bytes_sent``: what leaves the server) and, on a capped site, paced by the
same token bucket as a plain stream (``imaging.pacing.TokenBucket``), so the site's
bandwidth ledger can hold a wave like any other stream.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from images.manifest import Manifest
from provisioning.relay.credentials import MemberCredentials

log = logging.getLogger("masterline.relay")

# The wire, as the PE's side speaks it (boot/agent/relay_wire.py). A copy, not an
# import: the PE's module is standard library only and ships alone to the laptop, and
# boot sits above provisioning. tests/provisioning/relay/test_wire_agreement.py keeps
# the two sides equal.
FRAME = struct.Struct("!cII")
"""kind, chunk index, payload length: the same frames as the PE's relay."""
DATA, ZERO = b"D", b"Z"
HELLO_MAX = 4096
VERSION = 1
HANDSHAKE_TIMEOUT = 10.0
SOURCE = "source"


class Pace(Protocol):
    def take(self, n: int) -> None: ...


def tls_contexts(creds: MemberCredentials) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client contexts that trust the wave's authority alone."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="relay-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        for path, text in ((cert, creds.cert), (key, creds.key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(text)
        contexts = []
        for purpose in (ssl.PROTOCOL_TLS_SERVER, ssl.PROTOCOL_TLS_CLIENT):
            ctx = ssl.SSLContext(purpose)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_3
            ctx.load_cert_chain(cert, key)
            ctx.load_verify_locations(cadata=creds.ca)
            ctx.verify_mode = ssl.CERT_REQUIRED
            contexts.append(ctx)
    return contexts[0], contexts[1]


def peer_member(sock: ssl.SSLSocket) -> str:
    """The member named by the peer's (verified) certificate."""
    cert: Any = sock.getpeercert() or {}
    for kind, value in cert.get("subjectAltName", ()):
        if kind == "DNS" and str(value).endswith(".wave.invalid"):
            return str(value)[: -len(".wave.invalid")]
    raise ssl.SSLError("peer certificate names no wave member")


def read_hello(sock: ssl.SSLSocket) -> dict[str, Any]:
    """:raises ValueError: no complete, well-formed hello line."""
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


class Source:
    """Serves ``path`` (whose chunks are ``manifest``'s) to the members of ``wave``."""

    def __init__(
        self,
        *,
        wave: str,
        path: Path,
        manifest: Manifest,
        creds: MemberCredentials,
        host: str = "127.0.0.1",
        pace: Pace | None = None,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.wave = wave
        self.path = path
        self.manifest = manifest
        self.pace = pace
        self.on_refused = on_refused
        self._ctx, _ = tls_contexts(creds)
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.5)
        self.address = self._listener.getsockname()[:2]
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.bytes_sent = 0
        self.served: list[tuple[str, int]] = []
        """(member, first chunk) of every connection served, in order."""
        self._zero = {
            n: hashlib.sha256(bytes(n)).hexdigest()
            for n in {manifest.chunk_size, manifest.chunk_length(len(manifest.chunks) - 1)}
            if n > 0
        }
        self._thread = threading.Thread(target=self._accept, name="relay-source", daemon=True)

    def start(self) -> Source:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                raw, addr = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw, addr), daemon=True).start()

    def _refused(self, addr: Any, reason: str) -> None:
        log.warning("relay source: refused %s (%s)", addr[0], reason)
        if self.on_refused is not None:
            self.on_refused(reason)

    def _serve(self, raw: socket.socket, addr: Any) -> None:
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            sock = self._ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as e:
            raw.close()
            self._refused(addr, type(e).__name__)
            return
        with sock:
            try:
                member = peer_member(sock)
                hello = read_hello(sock)
                if hello.get("wave") != self.wave or hello.get("member") != member:
                    raise ValueError("hello does not match the certificate")
                start = int(hello["chunk"])
                if not 0 <= start <= len(self.manifest.chunks):
                    raise ValueError("chunk out of range")
            except (OSError, ValueError, KeyError, TypeError, ssl.SSLError) as e:
                self._refused(addr, type(e).__name__)
                return
            with self._lock:
                self.served.append((member, start))
            # A member that goes away reconnects where it is told: nothing to do here.
            with contextlib.suppress(OSError, ssl.SSLError):
                self._send(sock, start)

    def _send(self, sock: ssl.SSLSocket, index: int) -> None:
        m = self.manifest
        with open(self.path, "rb", buffering=0) as f:
            while index < len(m.chunks) and not self._stopping.is_set():
                length = m.chunk_length(index)
                if m.chunks[index] == self._zero.get(length):
                    frame = FRAME.pack(ZERO, index, 0)
                else:
                    data = os.pread(f.fileno(), length, index * m.chunk_size)
                    frame = FRAME.pack(DATA, index, len(data)) + data
                if self.pace is not None:
                    self.pace.take(len(frame))
                sock.sendall(frame)
                with self._lock:
                    self.bytes_sent += len(frame)
                index += 1
