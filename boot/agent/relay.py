"""The PE side of relay imaging: receive an image's stream from upstream, check every
chunk, write it to the disk, and forward it to whoever downstream asks for it.

Standard library only (Debian's ``python3`` in the PE); no import from the rest of the
agent, so it also runs as a plain script: ``python3 relay.py``.

The worker drives it through its standard input and output (in the PE, the SSH session
it opened to start it): the first input line is the member's configuration, later lines
are orders; every output line is a JSON event. The configuration::

    {"wave": "…", "member": "m3", "target": "/dev/nvme0n1", "listen": ["0.0.0.0", 0],
     "manifest": {"chunk_size": …, "size": …, "sha256": "…", "chunks": ["…", …]},
     "tls": {"ca": PEM, "cert": PEM, "key": PEM},
     "upstreams": [{"member": "m2", "host": …, "port": …}, …, {"member": "source", …}],
     "idle_timeout": 30, "uplink_bps": 0, "state": "/var/lib/masterline/relay/….json"}

Absolute paths (``target``, ``state``) are under ``$MASTERLINE_PE_ROOT`` when it is set
(the lab's PE, a folder; empty on a real PE), as the worker's other PE commands are.

``state`` (optional) is where the member keeps its verified offset, rewritten after
every chunk: a relay started again on the same target (its PE or its process
restarted) reads it, checks every chunk it claims against the manifest again by
reading the target back, and resumes after the last one that still matches (a
``resumed`` event), not from 0. The file is a hint, never trusted on its own.

Orders: ``{"op": "upstreams", "upstreams": [...]}`` (the worker's new route: nearest
first; a member whose current upstream is not the first entry any more leaves it for
the first: how the worker moves a slow member to the tail) and ``{"op": "stop"}``;
end of input is a stop too. Events: ``listening``
(with the port), ``connected``, ``upstream_lost``, ``corrupt``, ``progress``,
``complete``, ``verified`` (with ``ok``), ``serving``, ``refused``, ``stalled``,
``resumed``. ``progress`` and ``complete`` carry ``write_bps``: the bytes this member
wrote per second spent writing them (its disk's pace, not the network's), from which
the worker moves a slow disk to the tail of the chain.

Every hop is TLS 1.3 with both sides' certificates issued by the wave's own authority,
which the worker created for this wave alone: a machine outside the wave (another
client's laptop) completes no handshake, so it neither receives a byte nor feeds one.
A downstream also checks that its upstream is the member it meant to reach.

A chunk is written and offered downstream only after its sha256 matched the manifest;
a mismatch means the upstream is corrupt: it is dropped for good (``corrupt`` event)
and the next one up is used. A lost upstream costs a reconnection to the next healthy
one and a resume from this member's own verified offset. Chunks are served downstream
from the target itself (read back from what was written), so a late joiner at the tail
gets everything it missed. At the end the whole target range is read back and compared
with the image's sha256: the only success this program reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import ssl
import sys
import threading
import time
from typing import Any

if __package__:  # imported as part of the agent: boot.agent here, agent in the PE
    from . import relay_wire as wire
else:  # run as a script beside it: ``python3 relay.py``
    import relay_wire as wire  # type: ignore[no-redef]

FRAME, DATA, ZERO, KEEPALIVE = wire.FRAME, wire.DATA, wire.ZERO, wire.KEEPALIVE
VERSION = wire.VERSION

KEEPALIVE_EVERY = 5.0
CONNECT_TIMEOUT = 10.0
RETRY_AFTER = 5.0
"""A member that failed is not tried again for this long (others first)."""
PROGRESS_EVERY = 1.0
MAX_PEERS = 16
"""Connections served at once (handshakes included): in a chain a member serves one,
after reroutes a few; a flood of connections from the bench network gets no more."""


class Corrupt(Exception):
    """The upstream sent a chunk whose hash is not the manifest's."""


class DiskFailed(Exception):
    """This member's own target refused a write: no upstream can help."""


class Relay:
    def __init__(self, config: dict[str, Any], events: wire.Events) -> None:
        self.wave: str = config["wave"]
        self.member: str = config["member"]
        m = config["manifest"]
        self.chunk_size: int = m["chunk_size"]
        self.size: int = m["size"]
        self.sha256: str = m["sha256"]
        self.chunks: list[str] = list(m["chunks"])
        if len(self.chunks) != -(-self.size // self.chunk_size):
            raise ValueError("manifest: chunk count does not match the size")
        self.idle_timeout = float(config.get("idle_timeout", 30))
        self.pacer = wire.Pacer(float(config.get("uplink_bps", 0)))
        self.server_ctx, self.client_ctx = wire.contexts(config["tls"])
        self.emit = events
        self.disk = wire.open_target(wire.under_root(str(config["target"])))
        self.verified = 0  # chunks 0..verified-1 are checked and written
        state = config.get("state")
        key = {"sha256": self.sha256, "chunk_size": self.chunk_size, "size": self.size}
        self.state = wire.StateFile(wire.under_root(str(state)), key) if state else None
        self.write_seconds = 0.0
        self.written = 0
        self.chunks_written = 0  # by this process (a resumed relay starts at 0)
        self.current: str | None = None  # the upstream being received from
        self.sock: socket.socket | None = None
        self.cond = threading.Condition()
        self.stopping = threading.Event()
        self.upstreams: list[dict[str, Any]] = list(config.get("upstreams", []))
        self.corrupt: set[str] = set()
        self.failed_at: dict[str, float] = {}
        self.done = threading.Event()
        self.ok: bool | None = None
        self._zero_hashes: dict[int, str] = {}
        host, port = config.get("listen", ["127.0.0.1", 0])
        self.listener = socket.create_server((host, int(port)))
        self.listener.settimeout(1.0)
        self.peers = threading.BoundedSemaphore(MAX_PEERS)

    # Resuming --------------------------------------------------------------------

    def resume(self) -> int:
        """The chunks the state file claims, checked again against the manifest by
        reading the target back: ``verified`` becomes the prefix that still matches."""
        if self.state is None:
            return 0
        claimed = self.state.claimed()
        self.verified = wire.recheck(
            claimed,
            self.chunks,
            lambda i: self.disk.pread(self._length(i), i * self.chunk_size),
        )
        return claimed

    def write_bps(self) -> float:
        return self.written / self.write_seconds if self.write_seconds > 0 else 0.0

    # Receiving -------------------------------------------------------------------

    def _zero_hash(self, length: int) -> str:
        found = self._zero_hashes.get(length)
        if found is None:
            found = self._zero_hashes[length] = hashlib.sha256(bytes(length)).hexdigest()
        return found

    def _length(self, index: int) -> int:
        return min(self.chunk_size, self.size - index * self.chunk_size)

    def _pick(self) -> dict[str, Any] | None:
        now = time.monotonic()
        for up in self.upstreams:
            name = up["member"]
            if name in self.corrupt or name == self.member:
                continue
            if now - self.failed_at.get(name, -RETRY_AFTER) >= RETRY_AFTER:
                return up
        return None

    def receive_loop(self) -> None:
        try:
            self._receive_all()
        except Exception as e:  # any end must reach the worker as an event
            self._fail(f"relay error: {type(e).__name__}")

    def _fail(self, reason: str) -> None:
        self.ok = False
        self.emit("error", reason=reason)
        self.done.set()

    def _receive_all(self) -> None:
        buf = bytearray(self.chunk_size)
        stalled = False
        while not self.stopping.is_set() and self.verified < len(self.chunks):
            with self.cond:
                up = self._pick()
            if up is None:
                if not stalled:
                    self.emit("stalled", offset=self.verified * self.chunk_size)
                    stalled = True
                self.stopping.wait(0.5)
                continue
            stalled = False
            try:
                self.current = up["member"]
                self._receive_from(up, buf)
            except Corrupt as e:
                self.corrupt.add(up["member"])
                self.emit("corrupt", upstream=up["member"], chunk=int(str(e)))
            except DiskFailed as e:
                self._fail(f"writing the target failed: {e}")
                return
            except (OSError, ValueError, ssl.SSLError) as e:
                if self._switched(up["member"]):
                    continue  # left it for the first of a new route: not a failure
                self.failed_at[up["member"]] = time.monotonic()
                reason = type(e).__name__ + (f": {e}" if str(e) else "")
                offset = self.verified * self.chunk_size
                self.emit("upstream_lost", upstream=up["member"], offset=offset, reason=reason)
            finally:
                with self.cond:
                    self.current, self.sock = None, None
        if self.verified == len(self.chunks):
            self._finish()

    def _switched(self, member: str) -> bool:
        """Whether the worker's route no longer starts with ``member``."""
        with self.cond:
            first = self._pick()
        return first is not None and first["member"] != member

    def _receive_from(self, up: dict[str, Any], buf: bytearray) -> None:
        raw = socket.create_connection((up["host"], int(up["port"])), timeout=CONNECT_TIMEOUT)
        sock = self.client_ctx.wrap_socket(raw, server_hostname=wire.server_name(up["member"]))
        with sock:
            sock.settimeout(self.idle_timeout)
            with self.cond:
                self.sock = sock
            start = self.verified
            hello = {"v": VERSION, "wave": self.wave, "member": self.member, "chunk": start}
            sock.sendall(json.dumps(hello).encode() + b"\n")
            self.emit("connected", upstream=up["member"], offset=start * self.chunk_size)
            head = memoryview(bytearray(FRAME.size))
            view = memoryview(buf)
            while self.verified < len(self.chunks) and not self.stopping.is_set():
                wire.recv_exact(sock, head)
                kind, index, length = FRAME.unpack(head)
                if kind == KEEPALIVE:
                    continue
                if index != self.verified or length > self.chunk_size:
                    raise ValueError(f"unexpected chunk {index} (wanted {self.verified})")
                if kind == DATA:
                    if length != self._length(index):
                        raise Corrupt(str(index))
                    wire.recv_exact(sock, view[:length])
                    data: bytes | memoryview = view[:length]
                    if hashlib.sha256(data).hexdigest() != self.chunks[index]:
                        raise Corrupt(str(index))
                elif kind == ZERO:
                    # Only where the manifest says zeros: a header cannot blank a chunk.
                    if self.chunks[index] != self._zero_hash(self._length(index)):
                        raise Corrupt(str(index))
                    data = bytes(self._length(index))
                else:
                    raise ValueError("unknown frame")
                began = time.monotonic()
                try:
                    self.disk.pwrite(data, index * self.chunk_size)
                except OSError as e:
                    raise DiskFailed(os.strerror(e.errno) if e.errno else str(e)) from e
                now = time.monotonic()
                self.write_seconds += now - began
                self.written += len(data)
                self.chunks_written += 1
                with self.cond:
                    self.verified += 1
                    self.cond.notify_all()
                if self.state is not None:
                    self.state.save(self.verified)
                self.failed_at.pop(up["member"], None)

    def report_loop(self) -> None:
        """A ``progress`` event every ``PROGRESS_EVERY`` while the verified offset moved:
        on a clock, not on arrivals, so a member whose upstream paused still shows
        where it stands."""
        reported = 0
        while not self.stopping.wait(PROGRESS_EVERY) and not self.done.is_set():
            if self.chunks_written and self.verified != reported:
                reported = self.verified
                self.emit(
                    "progress",
                    offset=min(reported * self.chunk_size, self.size),
                    write_bps=round(self.write_bps()),
                    chunks=self.chunks_written,
                )

    def _finish(self) -> None:
        self.emit("complete", offset=self.size, write_bps=round(self.write_bps()))
        whole = hashlib.sha256()
        offset = 0
        try:
            self.disk.fsync()  # where a disk reports a write it could not keep
            while offset < self.size:
                block = self.disk.pread(min(self.chunk_size, self.size - offset), offset)
                if not block:
                    break
                whole.update(block)
                offset += len(block)
        except OSError as e:
            self._fail(f"flushing or reading back the target failed: {os.strerror(e.errno or 0)}")
            return
        got = whole.hexdigest()
        self.ok = offset == self.size and got == self.sha256
        self.emit("verified", ok=self.ok, sha256=got, size=offset)
        self.done.set()

    # Serving ---------------------------------------------------------------------

    def serve_loop(self) -> None:
        while not self.stopping.is_set():
            try:
                raw, addr = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self.peers.acquire(blocking=False):
                raw.close()
                self.emit("refused", peer=str(addr[0]), reason="too many connections")
                continue
            threading.Thread(target=self._serve_one, args=(raw, addr), daemon=True).start()

    def _serve_one(self, raw: socket.socket, addr: Any) -> None:
        try:
            self._serve_peer(raw, addr)
        finally:
            self.peers.release()

    def _serve_peer(self, raw: socket.socket, addr: Any) -> None:
        try:
            raw.settimeout(CONNECT_TIMEOUT)
            sock = self.server_ctx.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError) as e:
            raw.close()
            self.emit("refused", peer=str(addr[0]), reason=type(e).__name__)
            return
        with sock:
            try:
                peer = wire.peer_member(sock)
                hello = wire.read_hello(sock)
                if hello.get("wave") != self.wave or hello.get("member") != peer:
                    raise ValueError("hello does not match the peer's certificate")
                start = int(hello["chunk"])
                if not 0 <= start <= len(self.chunks):
                    raise ValueError("chunk out of range")
            except (OSError, ValueError, KeyError, TypeError, ssl.SSLError) as e:
                self.emit("refused", peer=str(addr[0]), reason=type(e).__name__)
                return
            self.emit("serving", downstream=peer, offset=start * self.chunk_size)
            # A downstream that goes away reconnects somewhere: nothing to do here.
            with contextlib.suppress(OSError, ssl.SSLError):
                self._send_from(sock, start)

    def _send_from(self, sock: ssl.SSLSocket, index: int) -> None:
        while index < len(self.chunks) and not self.stopping.is_set():
            with self.cond:
                if index >= self.verified:
                    self.cond.wait(KEEPALIVE_EVERY)
                    ready = index < self.verified
                else:
                    ready = True
            if not ready:
                sock.sendall(FRAME.pack(KEEPALIVE, index, 0))
                continue
            length = self._length(index)
            if self.chunks[index] == self._zero_hash(length):
                sock.sendall(FRAME.pack(ZERO, index, 0))
            else:
                data = self.disk.pread(length, index * self.chunk_size)
                self.pacer.take(FRAME.size + length)
                sock.sendall(FRAME.pack(DATA, index, length) + outgoing(data))
            index += 1

    # Orders ----------------------------------------------------------------------

    def obey(self, order: dict[str, Any]) -> None:
        if order.get("op") == "upstreams":
            with self.cond:
                self.upstreams = list(order["upstreams"])
                self.failed_at.clear()
                first = self._pick()
                if self.sock is not None and first is not None and first["member"] != self.current:
                    # Leave the current upstream: the receive loop reconnects to the
                    # new first entry and resumes from the verified offset.
                    # The plain socket's shutdown: the TLS object stays for the reader.
                    with contextlib.suppress(OSError):
                        socket.socket.shutdown(self.sock, socket.SHUT_RDWR)
        elif order.get("op") == "stop":
            self.stop()

    def stop(self) -> None:
        self.stopping.set()
        with self.cond:
            self.cond.notify_all()
        self.listener.close()


def outgoing(data: bytes) -> bytes:
    """The bytes sent downstream for a chunk (a seam for the tests' corrupt relay)."""
    return data


def main(stdin: Any = None, stdout: Any = None) -> int:
    stdin = stdin or sys.stdin
    events = wire.Events(stdout or sys.stdout)
    first = stdin.readline()
    try:
        relay = Relay(json.loads(first), events)
    except (ValueError, KeyError, TypeError, OSError, ssl.SSLError) as e:
        events("error", reason=f"bad configuration: {type(e).__name__}")
        return 2
    claimed = relay.resume()
    if claimed:
        events("resumed", offset=relay.verified * relay.chunk_size, claimed=claimed)
    events("listening", port=relay.listener.getsockname()[1], member=relay.member)
    threads = [
        threading.Thread(target=relay.serve_loop, daemon=True),
        threading.Thread(target=relay.receive_loop, daemon=True),
        threading.Thread(target=relay.report_loop, daemon=True),
    ]
    for t in threads:
        t.start()
    for line in stdin:
        try:
            relay.obey(json.loads(line))
        except (ValueError, KeyError, TypeError):
            events("error", reason="bad order")
        if relay.stopping.is_set():
            break
    relay.stop()
    threads[1].join(timeout=10)
    return 0 if relay.ok else 1


if __name__ == "__main__":
    sys.exit(main())
