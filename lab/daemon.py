"""The lab daemon: one process per lab directory, serving the network side of every laptop.

- an SSH proxy per laptop on its ``ssh_port``, in front of its private sshd: this is
  where ``ssh_refused`` (listener closed), ``ssh_drop`` (reset after N bytes) and
  ``slow_link`` (bytes per second) act. Without a fault, bytes move with ``splice(2)``;
- the WinRM endpoints of Windows laptops booted into their OS (``lab/winrm``).

Run as ``python -m lab.daemon <root>``; started and stopped by ``lab/daemon_client.py``.
It re-reads ``lab.json`` and the fault files on each ``sync`` request.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lab import sshd
from lab.faults import Fault, FaultFile

_F_SETPIPE_SZ = 1031
_CHUNK = 1 << 20


class SshProxy:
    """A TCP listener on 127.0.0.1:listen_port relaying to the laptop's sshd."""

    def __init__(self, name: str, listen_port: int, target_port: int, laptop_dir: Path) -> None:
        self.name = name
        self.listen_port = listen_port
        self.target_port = target_port
        self.faults = FaultFile(laptop_dir)
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def listening(self) -> bool:
        return self._sock is not None

    def open(self) -> None:
        if self._sock is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.listen_port))
        sock.listen(256)
        self._sock = sock
        threading.Thread(target=self._accept_loop, args=(sock,), daemon=True).start()

    def close(self, *, connections: bool = False) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            # shutdown() wakes the thread blocked in accept(); close() alone would not.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        if connections:
            with self._lock:
                conns = list(self._conns)
            for conn in conns:
                _abort(conn)

    def _accept_loop(self, sock: socket.socket) -> None:
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        faults = self.faults.read()
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
        except OSError:
            # The sshd is gone (e.g. stopping): the client sees the connection end.
            _abort(client)
            return
        with self._lock:
            self._conns.update((client, upstream))
        drop = faults.get(Fault.SSH_DROP)
        slow = faults.get(Fault.SLOW_LINK)
        rate = int(slow["bytes_per_second"]) if slow else None
        limit = int(drop["after_bytes"]) if drop else None
        try:
            if rate is None and limit is None:
                back = threading.Thread(target=_splice_pump, args=(upstream, client), daemon=True)
                back.start()
                _splice_pump(client, upstream)
            else:
                back = threading.Thread(
                    target=_pump, args=(upstream, client, None, rate), daemon=True
                )
                back.start()
                if _pump(client, upstream, limit, rate) == "limit":
                    # A dropped link: both ends see a reset, mid-stream.
                    _abort(client)
                    _abort(upstream)
            back.join()
        finally:
            for s in (client, upstream):
                with contextlib.suppress(OSError):
                    s.close()
            with self._lock:
                self._conns.difference_update((client, upstream))


def _abort(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _splice_pump(src: socket.socket, dst: socket.socket) -> None:
    """Move bytes src → dst through a pipe in the kernel until EOF, then half-close dst."""
    r, w = os.pipe()
    try:
        with contextlib.suppress(OSError):
            fcntl.fcntl(w, _F_SETPIPE_SZ, _CHUNK)
        while True:
            n = os.splice(src.fileno(), w, _CHUNK, flags=os.SPLICE_F_MOVE)
            if n == 0:
                break
            while n:
                n -= os.splice(r, dst.fileno(), n, flags=os.SPLICE_F_MOVE)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
    except OSError:
        _abort(src)
        _abort(dst)
    finally:
        os.close(r)
        os.close(w)


def _pump(src: socket.socket, dst: socket.socket, limit: int | None, rate: int | None) -> str:
    """Copy src → dst, at most ``limit`` bytes, at most ``rate`` bytes/s. Returns why it ended."""
    buf = bytearray(65536)
    view = memoryview(buf)
    sent = 0
    started = time.monotonic()
    try:
        while True:
            want = len(buf)
            if rate is not None:
                want = min(want, max(1, rate // 20))
            if limit is not None:
                want = min(want, limit - sent)
                if want <= 0:
                    return "limit"
            n = src.recv_into(buf, want)
            if n == 0:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return "eof"
            dst.sendall(view[:n])
            sent += n
            if rate is not None:
                ahead = started + sent / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
    except OSError:
        _abort(src)
        _abort(dst)
        return "error"


class Daemon:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.proxies: dict[str, SshProxy] = {}
        self.winrm: dict[str, Any] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def sync(self) -> dict[str, str]:
        """Reconcile listeners with lab.json and the fault files.

        Returns the laptops whose port could not be bound ({name: "ssh" | "winrm"}): another
        process took it since the lab picked it; the caller picks another and syncs again.
        """
        failed: dict[str, str] = {}
        try:
            state = json.loads((self.root / "lab.json").read_text())
        except FileNotFoundError:
            state = {"laptops": []}
        seen: set[str] = set()
        for lp in state["laptops"]:
            name = lp["name"]
            seen.add(name)
            laptop_dir = Path(lp["dir"])
            faults = FaultFile(laptop_dir).read()
            windows_os = lp["os_family"] == "windows" and lp["boot"] == "os"
            proxy = self.proxies.get(name)
            if (
                proxy is None
                or proxy.target_port != lp["sshd_port"]
                or proxy.listen_port != lp["ssh_port"]
            ):
                if proxy is not None:
                    proxy.close(connections=True)
                proxy = SshProxy(name, lp["ssh_port"], lp["sshd_port"], laptop_dir)
                self.proxies[name] = proxy
            if windows_os or Fault.SSH_REFUSED in faults:
                proxy.close(connections=windows_os)
            else:
                try:
                    proxy.open()
                except OSError:
                    failed[name] = "ssh"
            endpoint = self.winrm.get(name)
            ports = (lp.get("winrm_port"), lp.get("winrm_http_port"))
            if endpoint is not None and (not windows_os or endpoint.ports != ports):
                endpoint.stop()
                del self.winrm[name]
                endpoint = None
            if windows_os and endpoint is None:
                from lab.winrm.server import WinrmEndpoint

                try:
                    self.winrm[name] = WinrmEndpoint.start(self.root, lp)
                except OSError:
                    failed[name] = "winrm"
        for name in set(self.proxies) - seen:
            self.proxies.pop(name).close(connections=True)
        for name in set(self.winrm) - seen:
            self.winrm.pop(name).stop()
        return failed

    def shutdown(self) -> None:
        for proxy in self.proxies.values():
            proxy.close(connections=True)
        for endpoint in self.winrm.values():
            endpoint.stop()
        self.proxies.clear()
        self.winrm.clear()


def _stop_sshds(root: Path) -> None:
    try:
        state = json.loads((root / "lab.json").read_text())
    except (FileNotFoundError, ValueError):
        return
    for lp in state.get("laptops", []):
        sshd.stop(Path(lp["dir"]) / "sshd")


def main(argv: list[str]) -> int:
    root = Path(argv[1]).resolve()
    # --owner PID: the process whose lab this is (a test run); if it dies without
    # stopping the lab (killed), the daemon stops the laptops' sshds and itself.
    owner = int(argv[3]) if len(argv) > 3 and argv[2] == "--owner" else None
    daemon = Daemon(root)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline()
            try:
                body = json.loads(line)
                op = body.get("op")
                answer: dict[str, Any] = {"ok": True}
                with daemon.lock:
                    if op == "sync":
                        answer["bind_failed"] = daemon.sync()
                    elif op == "stop":
                        daemon.stopping.set()
                    elif op != "ping":
                        raise ValueError(f"unknown op {op!r}")
            except Exception as exc:  # the caller gets the reason, the daemon keeps running
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            self.wfile.write(json.dumps(answer).encode() + b"\n")

    socketserver.ThreadingTCPServer.daemon_threads = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: daemon.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: daemon.stopping.set())
    # Import the WinRM side now, off the request path: a reboot into Windows is then quick.
    threading.Thread(target=lambda: __import__("lab.winrm.server"), daemon=True).start()
    with daemon.lock:
        daemon.sync()
    info = {"pid": os.getpid(), "port": server.server_address[1]}
    tmp = root / "daemon.json.tmp"
    tmp.write_text(json.dumps(info))
    os.replace(tmp, root / "daemon.json")
    print(f"lab daemon {os.getpid()} serving {root}", file=sys.stderr, flush=True)
    while not daemon.stopping.wait(1.0):
        if owner is not None and not sshd.alive(owner):
            print(f"owner {owner} is gone: stopping the lab", file=sys.stderr, flush=True)
            _stop_sshds(root)
            break
    with daemon.lock:
        daemon.shutdown()
    server.shutdown()
    server.server_close()
    print("lab daemon stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
