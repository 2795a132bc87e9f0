"""Misbehaving HTTP receivers on 127.0.0.1, as raw sockets: one that trickles its answer
a byte at a time, one that answers with a huge body. Each records what it could send
before the client hung up, and stops when the test ends."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Hostile:
    port: int
    accepted: int = 0
    requests: list[bytes] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # bytes sent per connection, at hang-up
    server_names: list[str | None] = field(default_factory=list)  # TLS SNI, per connection
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextmanager
def hostile_receiver(
    mode: str,
    *,
    trickle_every: float = 0.5,
    trickle_bytes: int = 120,
    huge_bytes: int = 400 * 1024 * 1024,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Hostile]:
    """``mode`` "trickle": the status line and headers one byte every
    ``trickle_every`` s (``trickle_bytes`` in all); "huge": 200 with a body of
    ``huge_bytes``, as fast as the client reads; "ok": 204 at once (for TLS tests)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    state = Hostile(port=listener.getsockname()[1])
    threads: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        sent = 0
        try:
            conn.settimeout(30)
            request = _read_request(conn)
            with state.lock:
                state.requests.append(request)
            if mode == "trickle":
                answer = b"HTTP/1.1 200 OK\r\n" + b"X-Slow: " + b"a" * trickle_bytes
                for i in range(min(trickle_bytes, len(answer))):
                    if state.stop.wait(trickle_every):
                        break
                    conn.sendall(answer[i : i + 1])
                    sent += 1
            elif mode == "huge":
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    + f"Content-Length: {huge_bytes}\r\n\r\n".encode()
                )
                conn.sendall(head)
                # Control characters first: the log must keep none of them.
                block = b"\x1b[31mINTERNAL\x00SECRET\r\n\x07" + b"z" * 65500
                while sent < huge_bytes and not state.stop.is_set():
                    conn.sendall(block)
                    sent += len(block)
            else:
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass  # the client hung up: what we managed to send is recorded below
        finally:
            with state.lock:
                state.sent.append(sent)
            conn.close()

    def accept() -> None:
        while not state.stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if tls is not None:
                try:
                    conn = tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError):
                    conn.close()
                    continue
            with state.lock:
                state.accepted += 1
            t = threading.Thread(target=serve, args=(conn,), daemon=True)
            threads.append(t)
            t.start()

    def remember_sni(_sock: object, name: str | None, _context: object) -> None:
        with state.lock:
            state.server_names.append(name)

    if tls is not None:
        tls.sni_callback = remember_sni
    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield state
    finally:
        state.stop.set()
        listener.close()
        acceptor.join(timeout=10)
        for t in threads:
            t.join(timeout=40)
