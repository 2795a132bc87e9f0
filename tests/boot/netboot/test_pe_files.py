"""The PE's files as the netboot route sends them (``boot.netboot.files``: from a memory
map, in slices): whole, in a byte range, or HEAD (as ``ipxe.efi``); a forged link still
gets nothing; and through a real uvicorn server, many laptops at once (and one that
hangs up mid-way) each get the exact bytes. The throughput against nginx is
``bench.pe_download``."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from boot.netboot import files as netboot_files
from boot.pe import repository
from tests.boot.conftest import Boot
from tests.boot.netboot.test_netboot import link_of
from tests.support.server import running_server

VERSION = "6.1.0-98-amd64-0123456789ab"


def stored_pe(tmp_path: Path) -> dict[str, bytes]:
    """A stored version whose initramfs spans several slices and ends mid-slice."""
    build = tmp_path / "pe-build"
    build.mkdir()
    data = {
        repository.KERNEL: os.urandom(3000),
        repository.INITRD: os.urandom(3 * netboot_files.CHUNK + 12345),
    }
    for name, content in data.items():
        (build / name).write_bytes(content)
    manifest = {
        "version": VERSION,
        "built_at": "2026-12-02T00:00:00+00:00",
        "files": {n: {"sha256": "0" * 64, "size": len(d)} for n, d in data.items()},
    }
    repository.store(build, manifest, make_current=True)
    return data


def test_whole_ranges_head_and_forged_links(boot: Boot, client: TestClient, tmp_path: Path) -> None:
    data = stored_pe(tmp_path)
    initrd = data[repository.INITRD]
    size = len(initrd)
    url = f"/boot/ipxe/{link_of(boot)}/pe/{VERSION}/{repository.INITRD}"

    whole = client.get(url)
    assert whole.status_code == 200 and whole.content == initrd
    assert whole.headers["content-length"] == str(size)
    assert whole.headers["accept-ranges"] == "bytes"

    cases = {
        "bytes=10-19": (10, 19),
        f"bytes={netboot_files.CHUNK - 3}-{netboot_files.CHUNK + 2}": (
            netboot_files.CHUNK - 3, netboot_files.CHUNK + 2,
        ),  # across two slices
        "bytes=-5": (size - 5, size - 1),
        f"bytes={size - 7}-": (size - 7, size - 1),
        f"bytes=0-{size + 1000}": (0, size - 1),  # clipped to the end
    }  # fmt: skip
    for header, (first, last) in cases.items():
        got = client.get(url, headers={"Range": header})
        assert got.status_code == 206, header
        assert got.content == initrd[first : last + 1], header
        assert got.headers["content-range"] == f"bytes {first}-{last}/{size}", header

    beyond = client.get(url, headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{size}"
    assert beyond.content == b""
    # Several ranges, or nonsense: the whole file (RFC 9110 lets a server ignore Range).
    for header in ("bytes=0-1,5-6", "lines=1-2", "bytes=-"):
        got = client.get(url, headers={"Range": header})
        assert got.status_code == 200 and got.content == initrd, header

    # HEAD: the size, no body (UEFI HTTP boot asks so before it downloads ipxe.efi).
    head = client.head(url)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(size)
    efi = client.head(f"/boot/ipxe/{link_of(boot)}/ipxe.efi")
    assert efi.status_code == 200 and int(efi.headers["content-length"]) > 0
    assert client.head(f"/boot/ipxe/{link_of(boot)[:-2]}AA/ipxe.efi").status_code == 404

    kernel = client.get(f"/boot/ipxe/{link_of(boot)}/pe/{VERSION}/{repository.KERNEL}")
    assert kernel.status_code == 200 and kernel.content == data[repository.KERNEL]
    bench_id, token = link_of(boot).split("-", 1)
    forged = client.get(
        f"/boot/ipxe/{bench_id}-{'A' * len(token)}/pe/{VERSION}/{repository.INITRD}",
        headers={"Range": "bytes=0-99"},
    )
    assert forged.status_code == 404 and initrd[:100] not in forged.content


def hang_up_mid_way(port: int, path: str) -> None:
    """A laptop that asks for ``path`` and hangs up after the first bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")


def downloads_in_parallel(url: str, tmp_path: Path, n: int) -> set[str]:
    """``url`` downloaded ``n`` times at once (one curl, ``n`` connections); the set of
    the downloads' sha256 (one element when every laptop got the same bytes)."""
    out = tmp_path / "downloads"
    out.mkdir(exist_ok=True)
    config = tmp_path / "curl.conf"
    config.write_text("".join(f'url = "{url}"\noutput = "{out / str(i)}"\n' for i in range(n)))
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--fail", "--parallel", "--parallel-max", str(n),
         "--max-time", "300", "--config", str(config)],
        capture_output=True, text=True, timeout=360, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {hashlib.sha256((out / str(i)).read_bytes()).hexdigest() for i in range(n)}


@pytest.mark.parametrize("backend", ["sqlite"])  # the HTTP path is under test, not the DB
def test_many_laptops_at_once_through_a_real_server(boot: Boot, tmp_path: Path) -> None:
    data = stored_pe(tmp_path)
    want = hashlib.sha256(data[repository.INITRD]).hexdigest()
    with running_server(boot.db) as base:
        url = f"{base}/boot/ipxe/{link_of(boot)}/pe/{VERSION}/{repository.INITRD}"
        # A laptop that hangs up after the first bytes: the server goes on serving.
        hang_up_mid_way(int(base.rsplit(":", 1)[1]), url.removeprefix(base))
        assert downloads_in_parallel(url, tmp_path, 30) == {want}
