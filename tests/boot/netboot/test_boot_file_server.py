"""The boot-file server (``boot.netboot.fileserver``: ``sendfile`` on a port of its own,
``MASTERLINE_NETBOOT_FILES_PORT``), started by the API's lifespan in a real uvicorn
server: the bench's script points at it; the PE's files and ``ipxe.efi`` arrive exact,
whole, in ranges, to 30 laptops at once and over one kept-alive connection; a forged,
revoked or foreign request gets one JSON 404 and not a byte; bad requests get a 4xx; a
laptop that hangs up mid-way costs nothing; stopping the API stops it. Its throughput
against nginx is ``bench.pe_download``."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from boot.netboot.config import get_netboot_settings
from boot.netboot.fileserver import BootFileServer
from boot.pe import repository
from boot.registration import credentials
from core.db import Database
from tests.boot.conftest import Boot
from tests.boot.netboot.test_netboot import dnsmasq_config, link_of
from tests.boot.netboot.test_pe_files import (
    VERSION,
    downloads_in_parallel,
    hang_up_mid_way,
    stored_pe,
)
from tests.support.postgres import free_port
from tests.support.server import running_server, server_process

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the HTTP path, not the DB


@contextmanager
def files_port(monkeypatch: pytest.MonkeyPatch, **extra: str) -> Iterator[int]:
    port = free_port()
    monkeypatch.setenv("MASTERLINE_NETBOOT_FILES_PORT", str(port))
    monkeypatch.setenv("MASTERLINE_NETBOOT_FILES_HOST", "127.0.0.1")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    get_netboot_settings.cache_clear()
    try:
        yield port
    finally:
        monkeypatch.delenv("MASTERLINE_NETBOOT_FILES_PORT")
        for name in extra:
            monkeypatch.delenv(name)
        get_netboot_settings.cache_clear()


def raw(port: int, request: bytes) -> bytes:
    """One request as bytes on a fresh connection; everything until the server closes or
    stays silent (bounded by the socket's timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
        return got


def test_scripts_point_at_it_and_it_sends_exact_bytes(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = stored_pe(tmp_path)
    initrd = data[repository.INITRD]
    size = len(initrd)
    link = link_of(boot)
    with files_port(monkeypatch) as port, running_server(boot.db) as base:
        script = httpx.get(f"{base}/boot/ipxe/{link}", timeout=30).text
        kernel = re.search(r"^kernel (\S+) ", script, re.M)
        initrd_line = re.search(r"^initrd --name initrd.img (\S+)$", script, re.M)
        assert kernel and initrd_line, script
        files = f"http://127.0.0.1:{port}/boot/ipxe/{link}/pe/{VERSION}"
        assert kernel.group(1) == f"{files}/{repository.KERNEL}"
        assert initrd_line.group(1) == f"{files}/{repository.INITRD}"
        # The PE is still told the API's address, not the file server's.
        assert f"masterline.api={base}" in script

        with httpx.Client(timeout=60) as c:
            whole = c.get(initrd_line.group(1))
            assert whole.status_code == 200 and whole.content == initrd
            assert whole.headers["content-length"] == str(size)
            assert whole.headers["accept-ranges"] == "bytes"
            assert "immutable" in whole.headers["cache-control"]
            assert c.get(kernel.group(1)).content == data[repository.KERNEL]
            cases = {
                "bytes=10-19": (10, 19),
                "bytes=-5": (size - 5, size - 1),
                f"bytes={size - 7}-": (size - 7, size - 1),
                f"bytes=0-{size + 1000}": (0, size - 1),
            }
            for header, (first, last) in cases.items():
                got = c.get(initrd_line.group(1), headers={"Range": header})
                assert got.status_code == 206, header
                assert got.content == initrd[first : last + 1], header
                assert got.headers["content-range"] == f"bytes {first}-{last}/{size}"
            beyond = c.get(initrd_line.group(1), headers={"Range": f"bytes={size}-"})
            assert beyond.status_code == 416 and beyond.content == b""
            assert beyond.headers["content-range"] == f"bytes */{size}"
            several = c.get(initrd_line.group(1), headers={"Range": "bytes=0-1,5-6"})
            assert several.status_code == 200 and several.content == initrd
            head = c.head(initrd_line.group(1))
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(size)
            # UEFI HTTP boot's ipxe.efi: HEAD first (OVMF asks the size), then GET.
            efi_file = get_netboot_settings().ipxe_dir / "ipxe.efi"
            efi = f"http://127.0.0.1:{port}/boot/ipxe/{link}/ipxe.efi"
            assert c.head(efi).headers["content-length"] == str(efi_file.stat().st_size)
            got_efi = c.get(efi)
            assert got_efi.content == efi_file.read_bytes()
            assert got_efi.headers["content-type"] == "application/efi"
            assert "cache-control" not in got_efi.headers  # replaced by a package upgrade

        # iPXE fetches kernel then initramfs on one connection: kept alive.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            for name in (repository.KERNEL, repository.INITRD):
                conn.request("GET", f"/boot/ipxe/{link}/pe/{VERSION}/{name}")
                reply = conn.getresponse()
                assert reply.status == 200 and reply.read() == data[name]
        finally:
            conn.close()

        # A laptop that hangs up after the first bytes; then 30 at once, each exact.
        hang_up_mid_way(port, f"/boot/ipxe/{link}/pe/{VERSION}/{repository.INITRD}")
        want = hashlib.sha256(initrd).hexdigest()
        assert downloads_in_parallel(initrd_line.group(1), tmp_path, 30) == {want}
        # An idle connection left open does not hold the API's shutdown.
        idle = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        # Stopped with the API: the port no longer answers, the idle connection was cut.
        assert idle.recv(10) == b""
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
    finally:
        idle.close()


def test_forged_revoked_foreign_and_bad_requests_get_one_clear_error(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = stored_pe(tmp_path)
    link = link_of(boot)
    bench_id, token = link.split("-", 1)
    with files_port(monkeypatch) as port, running_server(boot.db):
        files = f"http://127.0.0.1:{port}/boot/ipxe"
        with httpx.Client(timeout=30) as c:
            for path in (
                f"{bench_id}-{'A' * len(token)}/pe/{VERSION}/{repository.INITRD}",  # forged
                f"{bench_id}-{token[:-2]}AA/ipxe.efi",
                f"{link}/pe/{VERSION}/../../../etc/passwd",
                f"{link}/pe/{VERSION}/grub.cfg",  # not a PE file
                f"{link}/pe/6.1.0-0-amd64-000000000000/{repository.INITRD}",  # no such version
                f"{link}/pe/{VERSION}/{repository.INITRD}?x=1",
                f"{link}",  # the script is the API's, not here
            ):
                got = c.get(f"{files}/{path}", headers={"Range": "bytes=0-99"})
                assert got.status_code == 404, (path, got.status_code)
                assert got.headers["content-type"] == "application/problem+json"
                assert got.json()["status"] == 404
                assert data[repository.INITRD][:100] not in got.content
                assert boot.credential not in got.text
            assert c.head(f"{files}/{bench_id}-{'A' * len(token)}/ipxe.efi").status_code == 404
            post = c.post(f"{files}/{link}/pe/{VERSION}/{repository.INITRD}", content=b"x")
            assert post.status_code == 405 and post.headers["allow"] == "GET, HEAD"
            assert post.json()["title"] == "Method not allowed"

        bad = raw(port, b"GARBAGE\x00 /\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400")
        assert json.loads(bad.split(b"\r\n\r\n", 1)[1])["detail"] == "malformed HTTP request"
        # A request line longer than any file's URL is refused, not buffered forever.
        assert raw(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")

        # Revoking the bench's credential stops downloads at once (checked per request).
        url = f"{files}/{link}/pe/{VERSION}/{repository.KERNEL}"
        assert httpx.get(url, timeout=30).status_code == 200
        with boot.db.session() as s:
            credentials.revoke_credential(s, boot.credential_id)
        assert httpx.get(url, timeout=30).status_code == 404

    # Only the bench networks, when set (this client is 127.0.0.1).
    fresh = link_of(boot)
    with (
        files_port(monkeypatch, MASTERLINE_NETBOOT_NETWORKS="10.20.0.0/24") as port,
        running_server(boot.db),
    ):
        got = httpx.get(
            f"http://127.0.0.1:{port}/boot/ipxe/{fresh}/pe/{VERSION}/{repository.KERNEL}",
            timeout=30,
        )
        assert got.status_code == 404 and got.json()["detail"] == "no such netboot link"


@pytest.mark.slow
def test_dnsmasq_sends_uefi_http_boot_to_the_file_server(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with files_port(monkeypatch) as port:
        done = dnsmasq_config(
            boot, "--site", "PAR", "--bench", "B1", "--api-url", "http://10.20.0.1:8000/",
            "--interface", "eth1", "--subnet", "10.20.0.0/24", "--range", "10.20.0.100,10.20.0.199",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    link = link_of(boot)
    assert f"dhcp-boot=tag:ipxe,http://10.20.0.1:8000/boot/ipxe/{link}\n" in done.stdout
    assert (
        f"dhcp-boot=tag:httpclient,tag:!ipxe,http://10.20.0.1:{port}/boot/ipxe/{link}/ipxe.efi"
        in done.stdout
    )


def test_a_port_it_cannot_take_fails_the_api_start(boot: Boot, tmp_path: Path) -> None:
    """Laptops would be sent to that port: the API does not start half-way."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))  # no SO_REUSEPORT: nobody else may bind it
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            "MASTERLINE_NETBOOT_FILES_PORT": str(port),
            "MASTERLINE_NETBOOT_FILES_HOST": "127.0.0.1",
        }
        with (
            pytest.raises(RuntimeError, match="test server exited"),
            server_process(boot.db.url, env=env),
        ):
            pass
        # `masterline serve` says so in one line before any worker starts.
        done = subprocess.run(
            [".venv/bin/masterline", "serve", "--port", str(free_port())],
            capture_output=True, text=True, timeout=120, check=False,
            env={**os.environ, **env, "MASTERLINE_DATABASE_URL": boot.db.url, "COLUMNS": "80"},
        )  # fmt: skip
    assert done.returncode == 3, done
    assert "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "boot-file server" in x]
    assert f"cannot listen on 127.0.0.1:{port}" in line and "Address already in use" in line


def test_a_database_it_cannot_read_gets_a_503_not_a_dropped_connection(
    boot: Boot, tmp_path: Path
) -> None:
    """The link cannot be checked (here: a database without its tables): one JSON 503,
    the connection closed, nothing of the link or the database's error in the answer;
    the server goes on."""
    link = link_of(boot)
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    server = BootFileServer(empty)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(60)
        url = f"http://127.0.0.1:{server.port}/boot/ipxe/{link}/pe/{VERSION}/{repository.KERNEL}"
        for _ in range(2):
            got = httpx.get(url, timeout=30)
            assert got.status_code == 503, got.text
            assert got.headers["content-type"] == "application/problem+json"
            assert got.headers["connection"] == "close"
            assert got.json()["detail"] == "the server cannot check this link now"
            assert link.split("-", 1)[1] not in got.text and "sqlite" not in got.text.lower()
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=60)
        loop.close()
        empty.engine.dispose()
