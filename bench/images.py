"""Images benchmark: upload a 4 GiB image through the real server and compare with a
local ``cp`` + ``sha256sum`` of the same file, measured in the same run.

    python -m bench.images [--size-gib 4] [--dir /var/tmp]

- The file is a mix of random 64 MiB extents and holes (sparse, read back as zeros),
  generated in a temporary directory and deleted afterwards.
- **Baseline**: ``cp FILE copy`` then ``sha256sum FILE`` (wall time of both).
- **Upload**: what ``masterline images upload`` does: hash the file on the client, declare
  it, then send it with tus (one PATCH) to ``uvicorn api.main:app`` (a separate process,
  one worker, SQLite, the store on the same disk), which hashes while writing, fsyncs,
  verifies and renames it into the content-addressed store. Reported as the end-to-end
  wall time and the transfer alone (declare + tus), each as a ratio to the baseline.
  Target: end-to-end <= 2x the baseline.
- **Server peak RSS**: ``VmHWM`` of the server process (``/proc/<pid>/status``) after the
  upload. Target: <= 100 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from api import service as tokens
from core.client import ApiClient
from core.db import Database
from core.migrate import upgrade
from core.principal import Role
from images.models import ImageFormat
from images.transfer import Uploader, UploadRequest, digest_file
from inventory import service as inventory
from inventory.schemas import ClientCreate
from tests.support.postgres import free_port
from tests.support.processes import stop

REPO = Path(__file__).resolve().parent.parent
EXTENT = 64 * 1024 * 1024
WALL_TARGET = 2.0
RSS_TARGET_MB = 100.0


def make_file(path: Path, size: int) -> None:
    """Alternate random extents and holes (every third extent is a hole)."""
    block = os.urandom(EXTENT)
    with open(path, "wb") as f:
        offset = 0
        index = 0
        while offset < size:
            n = min(EXTENT, size - offset)
            if index % 3 == 2:
                f.seek(n, os.SEEK_CUR)
            else:
                # A fresh head per extent, so no two extents are the same bytes.
                f.write(os.urandom(4096) + block[4096:n] if n > 4096 else os.urandom(n))
            offset += n
            index += 1
        f.truncate(size)
        f.flush()
        os.fsync(f.fileno())


def baseline(src: Path, work: Path) -> tuple[float, str]:
    copy = work / "copy.raw"
    start = time.perf_counter()
    subprocess.run(["cp", str(src), str(copy)], check=True)
    out = subprocess.run(["sha256sum", str(src)], check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    copy.unlink()
    return elapsed, out.stdout.split()[0]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (load-independent, unlike wall time)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(work: Path, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MASTERLINE_DATA_DIR": str(work / "data"),
        "MASTERLINE_IMAGE_STORE_DIR": str(work / "store"),
        "MASTERLINE_DATABASE_URL": "",
        "MASTERLINE_MAX_IMAGE_SIZE": str(1024**4),
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "api.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        cwd=REPO,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            # An unauthenticated request (401): cheap, unlike /openapi.json, whose schema
            # would count in the server's memory.
            httpx.get(f"http://127.0.0.1:{port}/images", timeout=2)
            return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    stop(proc)
    raise RuntimeError("server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.images")
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--dir", default=None, help="Where to put the temporary files.")
    args = parser.parse_args(argv)
    size = int(args.size_gib * 1024**3)
    work = Path(tempfile.mkdtemp(prefix="ml-bench-images-", dir=args.dir))
    proc: subprocess.Popen[bytes] | None = None
    try:
        src = work / "image.raw"
        print(f"generating {size / 1024**3:.1f} GiB (random extents and holes) in {work}")
        make_file(src, size)
        base_s, base_sha = baseline(src, work)
        print(f"baseline cp + sha256sum: {base_s:.1f} s ({size / base_s / 1e6:.0f} MB/s)")

        (work / "data").mkdir()
        db_url = f"sqlite:///{work / 'data' / 'masterline.db'}"
        upgrade(db_url)
        db = Database(db_url)
        with db.session() as s:
            inventory.create_client(s, ClientCreate(code="BENCH", name="Bench Corp"))
            _, token = tokens.create_token(s, name="bench-dsi", role=Role.DSI, client_code="BENCH")
        db.dispose()
        port = free_port()
        proc = start_server(work, port)
        rss_idle = vm_hwm_mb(proc.pid)
        cpu_before = cpu_seconds(proc.pid)
        own_before = time.process_time()

        os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # no hash cache from earlier runs
        start = time.perf_counter()
        digest = digest_file(src, ImageFormat.RAW)
        hashed = time.perf_counter()
        with ApiClient(f"http://127.0.0.1:{port}", token, timeout=600) as client:
            req = UploadRequest(src, "bench", "1", "linux", ImageFormat.RAW, [], None, None)
            outcome = Uploader(client, retries=0).upload(req, digest)
        done = time.perf_counter()
        rss_peak = vm_hwm_mb(proc.pid)
        server_cpu = cpu_seconds(proc.pid) - cpu_before
        client_cpu = time.process_time() - own_before
        total, transfer = done - start, done - hashed
        image = outcome.image
        stored = work / "store" / "sha256" / image["sha256"][:2] / image["sha256"]
        ok = image["status"] == "available" and image["sha256"] == base_sha and stored.is_file()
        print(
            f"client sha256: {hashed - start:.1f} s; declare + tus upload: {transfer:.1f} s "
            f"({size / transfer / 1e6:.0f} MB/s)"
        )
        print(
            f"upload end-to-end: {total:.1f} s = {total / base_s:.2f}x baseline "
            f"(target <= {WALL_TARGET:.0f}x); transfer alone {transfer / base_s:.2f}x"
        )
        print(
            f"server peak RSS (VmHWM): {rss_peak:.0f} MB (target <= {RSS_TARGET_MB:.0f} MB); "
            f"idle after start {rss_idle:.0f} MB, so the upload itself added "
            f"{rss_peak - rss_idle:.0f} MB"
        )
        gib = size / 1024**3
        print(
            f"CPU per GiB: server {server_cpu / gib:.1f} s (receive, sha256, write, fsync), "
            f"client {client_cpu / gib:.1f} s (sha256 + send)"
        )
        print(f"load average during the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(f"stored and verified: {'yes' if ok else 'NO'}")
        return 0 if ok else 1
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
