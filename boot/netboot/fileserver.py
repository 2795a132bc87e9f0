"""The boot-file server: the PE's kernel and initramfs (and ``ipxe.efi``) sent with
``sendfile(2)``, on a port of its own, when a site sets ``MASTERLINE_NETBOOT_FILES_PORT``.

Why a server beside the API: when a wave of 200 laptops boots at once, each fetches
26 MiB. The API's route (``files``: a memory map sent in slices) costs 0.6-0.7 s of CPU
per GiB against nginx's 0.11 (docs/benchmarks.md): every byte is copied from the map into
the socket, because uvicorn has no ``sendfile`` (no ASGI ``pathsend``). Here the kernel
hands the page cache's pages to the socket (``loop.sendfile``), as nginx does.

What does not change: the same URLs as the API's routes (``/boot/ipxe/<link>/pe/<version>
/<name>`` and ``/boot/ipxe/<link>/ipxe.efi``), so only the port differs; the same link
check against the database on every request (``service.pe_file``; a revoked credential
stops downloads at once), the same bench-network filter, the same answers (single byte
ranges 206, 416, HEAD, JSON problem bodies for errors). HTTP/1.1 is parsed by ``h11``
(uvicorn's own pure-Python parser), whose data pass-through frames a body it never sees.

It runs in the API's event loop (started by the app's lifespan, ``SO_REUSEPORT`` so that
every uvicorn worker process can listen), and the database check runs in a thread.
Bounded: a request must arrive within ``IDLE`` seconds, a connection serves at most
``MAX_REQUESTS``, at most ``MAX_CONNECTIONS`` are open, and a response that moves slower
than ``MIN_RATE`` is cut.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import h11

from boot.netboot import service
from boot.netboot.config import get_netboot_settings
from boot.netboot.errors import BootFilesPortTaken, MethodNotAllowed
from boot.netboot.files import answer
from core.db import Database
from core.errors import MasterlineError, NotFound, Unavailable

log = logging.getLogger("masterline.boot")

IDLE = 30.0
"""Seconds a connection may take to send a request (iPXE sends its next at once)."""
MAX_REQUESTS = 100
MAX_CONNECTIONS = 1024
"""nginx's default ``worker_connections``: five times a 200-laptop wave."""
MIN_RATE = 16 << 10
"""Bytes per second below which a response is cut (a laptop that stopped reading): a
26 MiB initramfs may take up to ~28 minutes, so a slow, busy bench link is never cut."""
READ = 16 << 10
PREFIX = "/boot/ipxe/"


class _Body:
    """A body ``h11`` frames but never sees: ``sendfile`` writes it (h11's data
    pass-through, meant for this)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


@dataclass(frozen=True)
class _Target:
    link: str
    version: str | None
    name: str | None
    """``version`` and ``name`` of a PE file; both None for ``ipxe.efi``."""


def _target(path: str) -> _Target:
    """The file a request path names, the API's URL shapes.

    :raises NotFound: any other path.
    """
    if not path.startswith(PREFIX) or "?" in path or len(path) > 300:
        raise NotFound("no such file")
    parts = path[len(PREFIX) :].split("/")
    if len(parts) == 2 and parts[1] == "ipxe.efi":
        return _Target(parts[0], None, None)
    if len(parts) == 4 and parts[1] == "pe" and service.SAFE.match(parts[2]) and parts[3]:
        return _Target(parts[0], parts[2], parts[3])
    raise NotFound("no such file")


def _resolve(db: Database, peer: str, target: _Target) -> service.BootFile:
    """In a worker thread: the network filter, the link check, the file."""
    service.from_bench_network(peer)
    with db.session(write=False) as session:
        if target.version is None or target.name is None:
            return service.ipxe_efi(session, target.link)
        return service.pe_file(session, target.link, target.version, target.name)


class BootFileServer:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self, host: str, port: int) -> None:
        self.server = await asyncio.start_server(
            self._connection, host, port, reuse_port=True, limit=READ
        )

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening and hang up every connection (a shutdown does not wait for a
        laptop's download: its iPXE retries)."""
        if self.server is not None:
            self.server.close()
        for writer in list(self.writers):
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.writers) >= MAX_CONNECTIONS:
            writer.close()
            return
        self.writers.add(writer)
        peer = writer.get_extra_info("peername")
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=8192)
        try:
            for _ in range(MAX_REQUESTS):
                request = await self._request(conn, reader)
                if request is None:
                    return
                await self._answer(conn, writer, request, str(peer[0]) if peer else "")
                if conn.their_state is h11.SEND_BODY:
                    # A GET's end of message is already parsed; a body is never read.
                    conn.next_event()
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return  # a request with a body, or "close": hang up
                conn.start_next_cycle()
        except h11.RemoteProtocolError:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                self._problem(conn, writer, MasterlineError("malformed HTTP request"))
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            pass  # the laptop hung up or stalled: nothing to tell it
        finally:
            self.writers.discard(writer)
            writer.close()

    @staticmethod
    async def _request(conn: h11.Connection, reader: asyncio.StreamReader) -> h11.Request | None:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(READ), IDLE))
                continue
            if isinstance(event, h11.Request):
                return event
            return None  # the peer closed (ConnectionClosed) or paused

    async def _answer(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, request: h11.Request, peer: str
    ) -> None:
        method = request.method.decode("ascii", "replace")
        if method not in ("GET", "HEAD"):
            refused = MethodNotAllowed(f"{method} is not served here")
            self._problem(conn, writer, refused, allow="GET, HEAD")
            return
        try:
            target = _target(request.target.decode("ascii", "replace"))
            found = await asyncio.to_thread(_resolve, self.db, peer, target)
            fd = os.open(found.path, os.O_RDONLY | os.O_CLOEXEC)
        except MasterlineError as e:
            self._problem(conn, writer, e, head=method == "HEAD")
            await writer.drain()
            return
        except OSError:
            self._problem(conn, writer, NotFound("no such file"), head=method == "HEAD")
            await writer.drain()
            return
        except Exception as e:  # the database is away, or a bug: the laptop's iPXE retries
            # The type only: a database error's text may carry the query's parameters.
            log.error("boot file not served: %s", type(e).__name__)
            away = Unavailable("the server cannot check this link now")
            self._problem(conn, writer, away, head=method == "HEAD", connection="close")
            await writer.drain()
            return
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            ranged = dict(request.headers).get(b"range")
            got = answer(
                size=st.st_size, mtime=st.st_mtime, immutable=found.immutable, method=method,
                range_header=ranged.decode("latin-1") if ranged else None,
            )  # fmt: skip
            headers = [
                ("content-type", found.media_type),
                ("date", formatdate(usegmt=True)),
                *got.headers,
            ]
            writer.write(conn.send(h11.Response(status_code=got.status, headers=headers)) or b"")
            if method == "GET" and got.count > 0:
                await self._send_file(conn, writer, f, got.first, got.count)
            writer.write(conn.send(h11.EndOfMessage()) or b"")
            await writer.drain()

    @staticmethod
    async def _send_file(
        conn: h11.Connection, writer: asyncio.StreamWriter, f: Any, first: int, count: int
    ) -> None:
        loop = asyncio.get_running_loop()
        body = h11.Data(data=_Body(count))  # type: ignore[arg-type]  # h11's pass-through
        for part in conn.send_with_data_passthrough(body) or []:
            if isinstance(part, _Body):
                # The kernel copies page cache to socket; asyncio waits on the socket
                # between calls. Bounded by a minimum rate, not by a wall clock.
                sent = await asyncio.wait_for(
                    loop.sendfile(writer.transport, f, first, count),
                    timeout=60 + count / MIN_RATE,
                )
                if sent != count:  # the file shrank under us: the framing is broken
                    raise ConnectionError("short file")
            else:
                writer.write(part)

    @staticmethod
    def _problem(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        error: MasterlineError,
        *,
        head: bool = False,
        **headers: str,
    ) -> None:
        """``error`` as the API renders it (``to_problem``)."""
        body = json.dumps(error.to_problem()).encode()
        fields = [
            ("content-type", "application/problem+json"),
            ("content-length", str(len(body))),
            *headers.items(),
        ]
        if error.status_code == 400:
            fields.append(("connection", "close"))
        try:
            response = h11.Response(status_code=error.status_code, headers=fields)
            writer.write(conn.send(response) or b"")
            if not head:
                writer.write(conn.send(h11.Data(data=body)) or b"")
            writer.write(conn.send(h11.EndOfMessage()) or b"")
        except h11.LocalProtocolError:
            writer.close()


def check_port() -> None:
    """Before a server starts: the boot-file server's port, when set, can be listened on
    (beside other processes of ours, ``SO_REUSEPORT``); one clear line if not, rather
    than the ASGI lifespan's traceback.

    :raises BootFilesPortTaken: another program holds it, or the address is not ours.
    """
    settings = get_netboot_settings()
    if settings.files_port is None:
        return
    try:
        family = socket.AF_INET6 if ":" in settings.files_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            probe.bind((settings.files_host, settings.files_port))
    except OSError as e:
        raise BootFilesPortTaken(settings.files_host, settings.files_port, e.strerror or "") from e


async def start_from_settings(db: Database) -> BootFileServer | None:
    """The boot-file server when ``MASTERLINE_NETBOOT_FILES_PORT`` is set, else None
    (the API's routes serve the files). A port it cannot take fails the start: laptops
    would be sent there."""
    settings = get_netboot_settings()
    if settings.files_port is None:
        return None
    server = BootFileServer(db)
    try:
        await server.start(settings.files_host, settings.files_port)
    except OSError as e:
        raise BootFilesPortTaken(settings.files_host, settings.files_port, e.strerror or "") from e
    log.info("boot files served with sendfile on %s:%d", settings.files_host, server.port)
    return server
