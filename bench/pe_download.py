"""PE download benchmark: 200 laptops network-boot at once and each fetches the PE's
kernel and initramfs, as iPXE does, from the URLs the bench's iPXE script names, against
nginx serving the same two files from the same directory (``sendfile on``), in the same
run.

    python -m bench.pe_download [--clients 200] [--rounds 3]

Masterline is measured both ways a site can run it (the API as deployed: uvicorn in a
process of its own): ``masterline`` with the boot-file server
(``MASTERLINE_NETBOOT_FILES_PORT``: ``sendfile`` on a port of its own, the script's
URLs point there), and ``api-route`` without it (the script's URLs are the API's own
route, a memory map sent in slices). Both check the bench's HMAC netboot link against the
database on every request.

The client is one curl process (``--parallel --parallel-max N``: N transfers in flight
at once, every one a new HTTP/1.1 connection, like N firmware iPXEs); each transfer's
status and byte count are checked, so a short or failed download fails the benchmark
instead of flattering it. Reported per server: the median wall time of the rounds, the
aggregate throughput (bytes delivered / wall time), and the server's peak resident memory
while serving (``VmHWM``, reset before each round through ``/proc/PID/clear_refs``), and
its CPU seconds per GiB served (user + system from ``/proc/PID/stat``: the serving path's
cost, which a loaded machine disturbs far less than the wall time). The ratio is
Masterline's throughput over nginx's (target >= 0.9).

Everything listens on 127.0.0.1: the network is loopback, so this measures the serving
path's CPU cost (a bench network's 1 Gbit/s link would hide it). The client shares the
machine's cores with the server under test, the same for every server.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.pe import setup
from boot.netboot import service
from boot.pe import repository
from tests.support.pe import cached_pe, store_in_catalogue
from tests.support.postgres import free_port
from tests.support.processes import running
from wiring import wire

NGINX = Path("/usr/sbin/nginx")
DEADLINE = 900.0  # bounds a hang only
FILES = (repository.KERNEL, repository.INITRD)


@dataclass
class Round:
    seconds: float
    bytes: int
    peak_rss: int
    cpu: float
    """The server's CPU seconds (user + system, all its processes) during the round: what
    the serving path costs, much less sensitive to the machine's load than wall time."""


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(150):  # bounded: 150 tries x 0.2 s
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        probe = subprocess.run(
            ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url],
            capture_output=True, text=True, check=False, timeout=30,
        )  # fmt: skip
        if probe.stdout == "200":
            return
        time.sleep(0.2)
    raise SystemExit(f"{url} never answered 200 ({probe.stdout}):\n{log.read_text()[-3000:]}")


@contextmanager
def masterline_api(
    work: Path, db_url: str, *, files_server: bool
) -> Iterator[tuple[str, list[int]]]:
    """The API (uvicorn, one process) on 127.0.0.1, with or without the boot-file
    server; the base URL and its PID."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASTERLINE_NETBOOT_FILES")}
    if files_server:
        env["MASTERLINE_NETBOOT_FILES_PORT"] = str(free_port())
        env["MASTERLINE_NETBOOT_FILES_HOST"] = "127.0.0.1"
    argv = [sys.executable, "-m", "tests.support.serve", db_url, str(port)]
    log = work / f"api-{port}.log"
    with running(argv, log, env=env) as proc:
        base = f"http://127.0.0.1:{port}"
        _wait_http(base + "/openapi.json", proc, log)
        yield base, [proc.pid]


def script_urls(base: str, link: str) -> list[str]:
    """The kernel and initramfs URLs of the bench's iPXE script, as iPXE reads them."""
    done = subprocess.run(
        ["curl", "--silent", "--fail", "--max-time", "30", f"{base}/boot/ipxe/{link}"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    kernel = re.search(r"^kernel (\S+) ", done.stdout, re.M)
    initrd = re.search(r"^initrd --name initrd.img (\S+)$", done.stdout, re.M)
    if done.returncode != 0 or kernel is None or initrd is None:
        raise SystemExit(f"no iPXE script from {base} ({done.returncode})")
    return [kernel.group(1), initrd.group(1)]


@contextmanager
def nginx(work: Path, root: Path) -> Iterator[tuple[str, list[int]]]:
    """nginx (one worker process, like the API's one process) serving ``root``."""
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"""daemon off;
user root;  # the files sit in the run's private temporary directory
master_process on;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {work}/nginx-tmp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""
    )
    with running([str(NGINX), "-c", str(conf), "-e", str(work / "nginx-error.log")],
                  work / "nginx.log") as proc:  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        _wait_http(f"{base}/{repository.KERNEL}", proc, work / "nginx.log")
        workers = subprocess.run(
            ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=False
        ).stdout.split()
        yield base, [proc.pid, *(int(w) for w in workers)]


def _clear_peak(pids: list[int]) -> None:
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def _peak_rss(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


def _cpu_seconds(pids: list[int]) -> float:
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return ticks / os.sysconf("SC_CLK_TCK")


def download(urls: list[tuple[str, int]], clients: int, pids: list[int], work: Path) -> Round:
    """Every URL once, ``clients`` at a time; checks each status and byte count."""
    config = work / "curl.conf"
    config.write_text("".join(f'url = "{u}"\noutput = "/dev/null"\n' for u, _ in urls))
    _clear_peak(pids)
    cpu = _cpu_seconds(pids)
    start = time.monotonic()
    done = subprocess.run(
        ["curl", "--silent", "--show-error", "--parallel", "--parallel-immediate",
         "--parallel-max", str(clients), "--max-time", str(int(DEADLINE)),
         "--write-out", "%{http_code} %{size_download} %{url}\\n", "--config", str(config)],
        capture_output=True, text=True, check=False, timeout=DEADLINE + 60,
    )  # fmt: skip
    seconds = time.monotonic() - start
    peak = _peak_rss(pids)
    cpu = _cpu_seconds(pids) - cpu
    if done.returncode != 0:
        raise SystemExit(f"curl failed ({done.returncode}): {done.stderr[-2000:]}")
    want = dict(urls)
    got = done.stdout.splitlines()
    if len(got) != len(urls):
        raise SystemExit(f"{len(got)} transfers reported, {len(urls)} asked")
    total = 0
    for line in got:
        code, size, url = line.split(" ", 2)
        if code != "200" or int(size) != want[url]:
            raise SystemExit(f"bad transfer: {line} (want 200 and {want[url]} bytes)")
        total += int(size)
    return Round(seconds, total, peak, cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pe_download")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    wire()  # the netboot link includes registration's kernel arguments
    if not NGINX.exists() or shutil.which("curl") is None:
        print("skipped: nginx or curl missing (make system-deps)")
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-pe-download-") as tmp:
        work = Path(tmp)
        (work / "nginx-tmp").mkdir()
        pe_dir, manifest = cached_pe()
        db, _secret = setup(work)
        store_in_catalogue(pe_dir, manifest)
        version = manifest["version"]
        root = repository.catalogue_dir() / version  # nginx serves the very same files
        sizes = {name: (root / name).stat().st_size for name in FILES}
        with db.session(write=False) as s:
            link = service.bench_boot(s, service.bench_by_code(s, "BEN", "B1")).link
        print(f"load average before the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print(f"PE {version}: kernel {sizes[repository.KERNEL] / 2**20:.1f} MiB + initramfs "
              f"{sizes[repository.INITRD] / 2**20:.1f} MiB per boot; {args.clients} boots "
              f"at once, {args.rounds} rounds per server (alternating), loopback")  # fmt: skip

        servers: dict[str, tuple[list[tuple[str, int]], list[int]]] = {}
        with (
            nginx(work, root) as (n_base, n_pids),
            masterline_api(work, db.url, files_server=True) as (m_base, m_pids),
            masterline_api(work, db.url, files_server=False) as (r_base, r_pids),
        ):
            servers["nginx"] = ([(f"{n_base}/{name}", sizes[name]) for name in FILES], n_pids)
            for name, base, pids in (("masterline", m_base, m_pids), ("api-route", r_base, r_pids)):
                named = zip(script_urls(base, link), (sizes[n] for n in FILES), strict=True)
                servers[name] = (list(named), pids)
            print(f"masterline's script names {servers['masterline'][0][0][0].split('/boot')[0]}"
                  f" (its boot-file server), api-route's {r_base} (the API)")  # fmt: skip
            # Warm every server (page cache, first-request imports) before measuring.
            for urls, pids in servers.values():
                download(urls, 1, pids, work)
            idle = {name: _peak_rss(pids) for name, (_, pids) in servers.items()}
            results: dict[str, list[Round]] = {name: [] for name in servers}
            for _ in range(args.rounds):
                for name, (urls, pids) in servers.items():
                    # Each boot fetches the kernel, then the initramfs.
                    boots = [u for _ in range(args.clients) for u in urls]
                    results[name].append(download(boots, args.clients, pids, work))
        medians = {}
        for name, rounds in results.items():
            seconds = statistics.median(r.seconds for r in rounds)
            rate = rounds[0].bytes / seconds
            medians[name] = rate
            cpu = statistics.median(r.cpu / (r.bytes / 2**30) for r in rounds)
            print(f"{name:>10}: {seconds:6.2f} s median of "
                  f"{', '.join(f'{r.seconds:.2f}' for r in rounds)} s; "
                  f"{rate / 2**20:7.1f} MiB/s aggregate; server CPU {cpu:.2f} s per GiB; "
                  f"peak RSS while serving {max(r.peak_rss for r in rounds) / 2**20:.0f} MiB "
                  f"(idle {idle[name] / 2**20:.0f} MiB)")  # fmt: skip
        ratio = medians["masterline"] / medians["nginx"]
        print(f"throughput ratio masterline / nginx: {ratio:.2f}x (target >= 0.9x); "
              f"api-route / nginx: {medians['api-route'] / medians['nginx']:.2f}x")  # fmt: skip
        print(f"load average after the run: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
