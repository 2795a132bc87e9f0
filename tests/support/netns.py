"""A bench network for VM laptops, inside a network namespace the test creates: a bridge
with an address, TAP devices for QEMU, dnsmasq on the bridge, the API served on the
bridge's address by a process inside the namespace, and QEMU (TCG, never KVM: on this
machine kind KVM guests never run) inside it too. Nothing is routed out; everything is
stopped and the namespace deleted at the end, whatever happened."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.waiting import eventually

REPO_ROOT = Path(__file__).resolve().parents[2]
BRIDGE = "br0"


def vm_skip() -> pytest.MarkDecorator:
    """Skip a VM test where it cannot run (no root, no QEMU), but never under CI: there
    `make test` installs what they need, and a VM test that quietly skips proves nothing."""
    why = vm_prerequisites()
    return pytest.mark.skipif(
        why is not None and os.environ.get("CI", "") != "true", reason=str(why)
    )


def vm_prerequisites() -> str | None:
    """Why VM tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "network namespaces and TAP devices need root"
    if not Path("/dev/net/tun").exists():
        return "no /dev/net/tun"
    for tool in ("qemu-system-x86_64", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} missing (make system-deps)"
    if not Path("/usr/sbin/dnsmasq").exists():
        return "dnsmasq missing (make system-deps)"
    return None


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


@dataclass
class BenchNet:
    name: str
    address: str
    """The bridge's address: the API and dnsmasq listen there."""
    prefix: str
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    extra_namespaces: list[str] = field(default_factory=list)

    def exec_argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.exec_argv(*cmd), capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(
        self, *cmd: str, log: Path, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self.exec_argv(*cmd),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                cwd=REPO_ROOT,
                start_new_session=True,
            )
        self.procs.append(proc)
        return proc

    def add_tap(self, tap: str) -> str:
        _run("ip", "-n", self.name, "tuntap", "add", "dev", tap, "mode", "tap")
        _run("ip", "-n", self.name, "link", "set", tap, "master", BRIDGE, "up")
        return tap

    def serve_api(self, database_url: str, port: int, *, files_port: int | None = None) -> str:
        """The API inside the namespace on the bridge's address; its base URL.
        ``files_port``: with the boot-file server on that port (the same address)."""
        env = {"MASTERLINE_TEST_SERVE_HOST": self.address}
        if files_port is not None:
            env["MASTERLINE_NETBOOT_FILES_PORT"] = str(files_port)
            env["MASTERLINE_NETBOOT_FILES_HOST"] = self.address
        proc = self.start(
            sys.executable, "-m", "tests.support.serve", database_url, str(port),
            log=self.workdir / "api.log", env=env,
        )  # fmt: skip
        base = f"http://{self.address}:{port}"
        probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)"

        def answers() -> bool:
            if proc.poll() is not None:
                raise AssertionError("API exited:\n" + (self.workdir / "api.log").read_text())
            return self.run("/usr/bin/python3", "-c", probe, base + "/openapi.json").returncode == 0

        eventually(
            answers, timeout=180, every=0.5, message="the API in the namespace never answered"
        )
        return base

    def dnsmasq(self, config: str, *, user: str = "root") -> subprocess.Popen[bytes]:
        """dnsmasq on the bridge; ``user``: the user it drops to once its sockets are
        open (a site's runs as ``dnsmasq``; TFTP then serves what that user may read)."""
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(config)
        group = "root" if user == "root" else "nogroup"
        return self.start(
            "/usr/sbin/dnsmasq", "--keep-in-foreground", f"--conf-file={conf}",
            f"--dhcp-leasefile={self.workdir / 'dnsmasq.leases'}",
            f"--pid-file={self.workdir / 'dnsmasq.pid'}", f"--user={user}", f"--group={group}",
            "--log-facility=-", "--log-dhcp",  # the test reads what it answered
            log=self.workdir / "dnsmasq.log",
        )  # fmt: skip

    def site_dhcp(self, first: int, last: int) -> None:
        """The site's own DHCP server (for a proxy-DHCP set-up): dnsmasq in a second
        namespace joined to the bridge by a veth pair, at ``<prefix>.2``."""
        site = f"{self.name}-site"
        _run("ip", "netns", "add", site)
        self.extra_namespaces.append(site)
        _run("ip", "-n", self.name, "link", "add", "vsite", "type", "veth", "peer", "name",
             "eth0", "netns", site)  # fmt: skip
        _run("ip", "-n", self.name, "link", "set", "vsite", "master", BRIDGE, "up")
        _run("ip", "-n", site, "link", "set", "lo", "up")
        _run("ip", "-n", site, "addr", "add", f"{self.prefix}.2/24", "dev", "eth0")
        _run("ip", "-n", site, "link", "set", "eth0", "up")
        conf = self.workdir / "site-dhcp.conf"
        conf.write_text(
            "port=0\ninterface=eth0\nbind-interfaces\nlog-dhcp\n"
            f"dhcp-range={self.prefix}.{first},{self.prefix}.{last},255.255.255.0,1h\n"
        )
        with (self.workdir / "site-dhcp.log").open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", site, "/usr/sbin/dnsmasq", "--keep-in-foreground",
                 f"--conf-file={conf}", f"--dhcp-leasefile={self.workdir / 'site.leases'}",
                 f"--pid-file={self.workdir / 'site.pid'}", "--user=root", "--group=root",
                 "--log-facility=-"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        self.procs.append(proc)

    def delete_extra_namespaces(self) -> None:
        for ns in self.extra_namespaces:
            subprocess.run(["ip", "netns", "del", ns], check=False, timeout=60)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 20
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


@contextmanager
def bench_network(workdir: Path, *, subnet: str = "10.77.0") -> Iterator[BenchNet]:
    """A namespace with a bridge at ``<subnet>.1/24``; stopped and deleted on exit."""
    name = f"mlbench-{os.getpid()}-{time.monotonic_ns() % 100000}"
    workdir.mkdir(parents=True, exist_ok=True)
    net = BenchNet(name, f"{subnet}.1", subnet, workdir)
    with ExitStack() as stack:
        _run("ip", "netns", "add", name)
        stack.callback(
            lambda: subprocess.run(["ip", "netns", "del", name], check=False, timeout=60)
        )
        stack.callback(net.delete_extra_namespaces)
        stack.callback(net.stop_all)
        _run("ip", "-n", name, "link", "set", "lo", "up")
        _run("ip", "-n", name, "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "-n", name, "addr", "add", f"{net.address}/24", "dev", BRIDGE)
        _run("ip", "-n", name, "link", "set", BRIDGE, "up")
        yield net


def serial_log(path: Path) -> str:
    try:
        return path.read_bytes().decode(errors="replace").replace("\r", "")
    except OSError:
        return ""
