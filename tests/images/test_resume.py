"""Resuming for real: a tus PATCH whose TCP connection is cut mid-body, against uvicorn on
127.0.0.1; then the CLI uploader through a proxy that cuts the connection."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from typer.testing import CliRunner

from cli import app as cli_app
from core.db import Database
from core.errors import MasterlineError
from core.principal import Role
from tests.conftest import auth
from tests.support.factories import World
from tests.support.server import running_server
from tests.support.waiting import eventually

TUS = {"Tus-Resumable": "1.0.0"}


def _declare(base: str, headers: dict[str, str], data: bytes, version: str = "1") -> int:
    r = httpx.post(
        f"{base}/images",
        headers=headers,
        json={
            "name": "win11",
            "version": version,
            "os_family": "windows",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        },
    )
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _wait_offset(url: str, headers: dict[str, str], *, above: int = 0) -> int:
    """The server records the offset when it notices the cut; wait until it has."""

    def offset() -> int | None:
        value = int(httpx.head(url, headers={**TUS, **headers}).headers["Upload-Offset"])
        return value if value > above else None

    return eventually(offset, message="the server never recorded an offset")


@pytest.mark.slow  # a real server, a cut connection
def test_cut_connection_resumes_from_server_offset(
    db: Database, world: World, image_settings: Path
) -> None:
    data = os.urandom(24 * 1024 * 1024)
    headers = auth(world.token(Role.DSI, "ACME"))
    with running_server(db) as base:
        image_id = _declare(base, headers, data)
        meta = "image_id " + base64.b64encode(str(image_id).encode()).decode()
        created = httpx.post(
            f"{base}/uploads",
            headers={**TUS, **headers, "Upload-Length": str(len(data)), "Upload-Metadata": meta},
        )
        url = created.headers["Location"]
        path = urlsplit(url).path
        sent = 13 * 1024 * 1024 + 5
        port = int(urlsplit(base).port or 0)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            head = (
                f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: {headers['Authorization']}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Content-Length: {len(data)}\r\n\r\n"
            )
            sock.sendall(head.encode() + data[:sent])
        # The socket is closed mid-body: a network cut as the server sees it.
        offset = _wait_offset(url, headers)
        assert 0 < offset <= sent

        def resumed() -> httpx.Response | None:
            r = httpx.patch(
                url,
                content=data[offset:],
                headers={
                    **TUS,
                    **headers,
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                },
            )
            return None if r.status_code == 423 else r  # the cut request may still hold it

        r = eventually(resumed, message="the cut request never released the upload")
        assert r.status_code == 204, r.text
        assert r.headers["Upload-Offset"] == str(len(data))
        image = httpx.get(f"{base}/images/{image_id}", headers=headers).json()
    assert image["status"] == "available"
    stored = image_settings / "sha256" / image["sha256"][:2] / image["sha256"]
    assert stored.read_bytes() == data


@contextlib.contextmanager
def cutting_proxy(target_port: int, *, cut_after: int) -> Iterator[tuple[int, list[int]]]:
    """A TCP proxy on 127.0.0.1 whose first connection carrying more than ``cut_after``
    request bytes is cut there; later connections pass."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    cuts: list[int] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def pipe(src: socket.socket, dst: socket.socket, budget: list[int] | None) -> None:
        try:
            while not stop.is_set():
                chunk = src.recv(65536)
                if not chunk:
                    break
                if budget is not None and not cuts:
                    budget[0] += len(chunk)
                    if budget[0] > cut_after:
                        cuts.append(budget[0])
                        # Reset both sides, as a dropped link does to a client at once.
                        for s in (src, dst):
                            s.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                            )
                        break
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            upstream = socket.create_connection(("127.0.0.1", target_port))
            for args in ((conn, upstream, [0]), (upstream, conn, None)):
                t = threading.Thread(target=pipe, args=args, daemon=True)
                t.start()
                threads.append(t)

    acceptor = threading.Thread(target=serve, daemon=True)
    acceptor.start()
    try:
        yield port, cuts
    finally:
        stop.set()
        listener.close()
        acceptor.join(timeout=5)
        for t in threads:
            t.join(timeout=5)


@pytest.fixture
def upload_file(tmp_path: Path) -> Path:
    path = tmp_path / "win11.raw"
    path.write_bytes(os.urandom(12 * 1024 * 1024))
    return path


def _run(args: list[str], base: str, token: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        cli_app, args, env={"MASTERLINE_API_URL": base, "MASTERLINE_TOKEN": token}
    )
    out, code = result.output, result.exit_code
    if isinstance(result.exception, MasterlineError):  # what cli.main prints and exits with
        out += f"error: {result.exception.message}\n"
        code = result.exception.exit_code
    return code, out


@pytest.mark.slow  # runs the masterline command
def test_cli_upload_resumes_after_a_network_cut(
    db: Database, world: World, upload_file: Path
) -> None:
    token = world.token(Role.DSI, "ACME")
    with running_server(db) as base:
        port = int(urlsplit(base).port or 0)
        with cutting_proxy(port, cut_after=5 * 1024 * 1024) as (proxy, cuts):
            code, out = _run(
                [
                    "images",
                    "upload",
                    str(upload_file),
                    "--name",
                    "win11",
                    "--version",
                    "7",
                    "--compatible",
                    "Dell:Latitude 5440",
                ],
                f"http://127.0.0.1:{proxy}",
                token,
            )
        assert cuts, "the proxy never cut the connection"
        assert code == 0, out
        assert "available" in out and "resumed at byte" in out
        images = httpx.get(f"{base}/images", headers=auth(token)).json()["items"]
    assert [(i["version"], i["status"]) for i in images] == [("7", "available")]
    assert images[0]["sha256"] == hashlib.sha256(upload_file.read_bytes()).hexdigest()


@pytest.mark.slow  # runs the masterline command
def test_cli_upload_rerun_resumes_from_state_file(
    db: Database, world: World, upload_file: Path, image_settings: Path
) -> None:
    token = world.token(Role.DSI, "ACME")
    args = ["images", "upload", str(upload_file), "--name", "win11", "--version", "8"]
    with running_server(db) as base:
        port = int(urlsplit(base).port or 0)
        with cutting_proxy(port, cut_after=5 * 1024 * 1024) as (proxy, cuts):
            via_proxy = f"http://127.0.0.1:{proxy}"
            code, out = _run([*args, "--retries", "0"], via_proxy, token)
            assert cuts and code != 0
            assert "run the same command again to resume" in out
            state_dir = image_settings.parent / "cache" / "masterline" / "uploads"
            assert [p for p in state_dir.glob("*.json") if p.name != "hashes.json"]
            image = httpx.get(f"{base}/images", headers=auth(token)).json()["items"][0]
            offset = _wait_offset(f"{base}{image['upload_url']}", auth(token))
            code, out = _run(args, via_proxy, token)
        assert code == 0, out
        assert f"resumed at byte {offset:,}" in out
        # Running it once more is a no-op.
        code, out = _run(args, base, token)
        assert code == 0 and "already uploaded" in out


@pytest.mark.slow  # runs the masterline command
def test_cli_listing_retire_and_configs(
    db: Database, world: World, upload_file: Path, tmp_path: Path
) -> None:
    token = world.token(Role.DSI, "ACME")
    config = tmp_path / "acme.json"
    config.write_text(
        json.dumps(
            {
                "hostname_pattern": "ACME-{serial}",
                "vpn": {
                    "kind": "ikev2",
                    "server": "vpn.acme.example",
                    "secrets": {"psk": "cli-secret-981"},
                },
            }
        )
    )
    with running_server(db) as base:
        code, out = _run(
            [
                "images",
                "upload",
                str(upload_file),
                "--name",
                "win11",
                "--version",
                "1",
                "--os",
                "windows",
                "--notes",
                "first",
            ],
            base,
            token,
        )
        assert code == 0, out
        code, out = _run(["images", "list", "--json"], base, token)
        assert code == 0
        image = json.loads(out)["items"][0]
        code, out = _run(["images", "show", str(image["id"])], base, token)
        assert code == 0 and "available" in out and "first" in out
        code, out = _run(["images", "retire", str(image["id"])], base, token)
        assert code == 0 and "retired" in out
        code, out = _run(["images", "show", "999"], base, token)
        assert code == 4 and "not found" in out
        code, out = _run(["configs", "set", str(config)], base, token)
        assert code == 0 and "v1 is active" in out
        code, out = _run(["configs", "show", "--json"], base, token)
        assert code == 0 and json.loads(out)["vpn"]["secret_names"] == ["psk"]
        assert "cli-secret-981" not in out
        code, out = _run(["configs", "list"], base, token)
        assert code == 0 and "ikev2" in out
        config.write_text("{not json")
        code, out = _run(["configs", "set", str(config)], base, token)
        assert code == 2 and "not valid JSON" in out
