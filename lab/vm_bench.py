"""``masterline lab up --vms N``: a bench of VM laptops inside a network namespace.

The namespace holds everything the bench network needs, and nothing leaves it (no route,
no NAT, no interface to the host's networks): a bridge at ``<subnet>.1``, a TAP device
per VM, dnsmasq as the bench's DHCP server with iPXE chainloading
(``masterline boot dnsmasq-config``'s plan, the isolated set-up of docs/boot.md),
Masterline's API on the bridge's address and a worker (both on the configured database:
the worker must reach the PEs on the bench network, as a site's worker does), and one
QEMU machine per laptop (``lab.vms``). Every process is started in a session of its
own and recorded in ``<lab root>/vms/bench.json``; ``lab down`` stops exactly those
(checked against their command lines) and deletes the namespace.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab import vms
from lab.errors import InvalidLabInput, LabStartFailed

STATE = "bench.json"
API_START_S = 180.0
BRIDGE = "br0"


@dataclass(frozen=True)
class VmBenchPlan:
    serials: list[str]
    site: str
    bench: str
    subnet: str = "10.77.0"
    api_port: int = 8080
    disk_bytes: int = 2 * 1024**3
    memory_mib: int = 768
    vendor: str = "QEMU Lab"
    model: str = "Masterline VM"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise LabStartFailed(f"ip {' '.join(args)}: {done.stderr.strip() or 'failed'}")


class VmBench:
    def __init__(self, root: Path) -> None:
        self.dir = root / "vms"
        self.namespace = "mlvm-" + hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]

    @property
    def state_path(self) -> Path:
        return self.dir / STATE

    def state(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.state_path.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return data

    def _save(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        os.replace(tmp, self.state_path)

    def _start(self, state: dict[str, Any], role: str, argv: list[str]) -> int:
        log = self.dir / f"{role}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, *argv],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        state["processes"].append({"role": role, "pid": proc.pid, "argv0": argv[0]})
        self._save(state)
        return proc.pid

    def up(self, plan: VmBenchPlan, *, script_url: str) -> dict[str, Any]:
        """Create the namespace and start dnsmasq, the API, the worker and the VMs.
        :raises InvalidLabInput: a VM bench runs here already, or not root.
        :raises LabStartFailed: a part did not start (what was started is stopped)."""
        if os.geteuid() != 0:
            raise InvalidLabInput("VM laptops need root (network namespace, TAP devices)")
        if self.state() is not None:
            raise InvalidLabInput(f"a VM bench runs in {self.dir}: `masterline lab down` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        accel = vms.accelerator()
        state: dict[str, Any] = {
            "namespace": self.namespace, "subnet": plan.subnet, "accel": accel,
            "api": f"http://{plan.subnet}.1:{plan.api_port}", "processes": [], "vms": [],
        }  # fmt: skip
        self._save(state)
        try:
            self._network(plan)
            self._services(state, plan, script_url)
            self._wait_for_api(state["api"])
            for i, serial in enumerate(plan.serials, start=1):
                self._vm(state, plan, i, serial, accel)
        except BaseException:
            self.down()
            raise
        return state

    def _network(self, plan: VmBenchPlan) -> None:
        _ip("netns", "add", self.namespace)
        _ip("-n", self.namespace, "link", "set", "lo", "up")
        _ip("-n", self.namespace, "link", "add", BRIDGE, "type", "bridge")
        _ip("-n", self.namespace, "addr", "add", f"{plan.subnet}.1/24", "dev", BRIDGE)
        _ip("-n", self.namespace, "link", "set", BRIDGE, "up")

    def _services(self, state: dict[str, Any], plan: VmBenchPlan, script_url: str) -> None:
        from boot.netboot import dnsmasq

        conf = self.dir / "dnsmasq.conf"
        conf.write_text(
            dnsmasq.render(
                dnsmasq.plan(
                    script_url=script_url, interface=BRIDGE, subnet=f"{plan.subnet}.0/24",
                    dhcp_range=f"{plan.subnet}.100,{plan.subnet}.199",
                ),
                title=f"VM bench {plan.bench} of site {plan.site}",
            )
        )  # fmt: skip
        self._start(state, "dnsmasq", [
            "/usr/sbin/dnsmasq", "--keep-in-foreground", f"--conf-file={conf}",
            f"--dhcp-leasefile={self.dir / 'dnsmasq.leases'}", "--user=root", "--group=root",
            "--log-facility=-", "--log-dhcp",
        ])  # fmt: skip
        masterline = [sys.executable, "-c", "import cli; cli.main()"]
        host = f"{plan.subnet}.1"
        self._start(
            state, "api", [*masterline, "serve", "--host", host, "--port", str(plan.api_port)]
        )
        self._start(state, "worker", [*masterline, "worker"])

    def _wait_for_api(self, base: str) -> None:
        """Until the API answers on the bench network: a VM powered on before it would
        get its DHCP answer, fail to fetch the bench's script and halt (iPXE gives up),
        which a loaded machine (the API taking seconds to start) makes likely.
        :raises LabStartFailed: it did not answer within ``API_START_S``."""
        probe = "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)"
        deadline = time.monotonic() + API_START_S
        while time.monotonic() < deadline:
            done = subprocess.run(
                ["ip", "netns", "exec", self.namespace, sys.executable, "-c", probe,
                 f"{base}/openapi.json"],
                capture_output=True, timeout=60, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                return
            time.sleep(0.5)
        raise LabStartFailed(f"the API did not answer at {base}: see {self.dir}/api.log")

    def _vm(
        self, state: dict[str, Any], plan: VmBenchPlan, i: int, serial: str, accel: str
    ) -> None:
        tap = f"tap{i}"
        _ip("-n", self.namespace, "tuntap", "add", "dev", tap, "mode", "tap")
        _ip("-n", self.namespace, "link", "set", tap, "master", BRIDGE, "up")
        disk = self.dir / f"vm{i}.raw"
        vms.blank_disk(disk, plan.disk_bytes)
        tpm_socket: Path | None = None
        swtpm = vms.swtpm_argv(self.dir / f"vm{i}.tpm", self.dir / f"vm{i}.tpm.sock")
        if swtpm is not None:
            tpm_socket = self.dir / f"vm{i}.tpm.sock"
            self._start(state, f"swtpm-vm{i}", swtpm)
            if not vms.wait_for_socket(tpm_socket):
                raise LabStartFailed(
                    f"swtpm of vm{i} did not start: see {self.dir}/swtpm-vm{i}.log"
                )
        spec = vms.VmSpec(
            name=f"vm{i}", serial=serial, mac=vms.mac_of(i), disk=disk, tap=tap,
            console_log=self.dir / f"vm{i}.console.log", memory_mib=plan.memory_mib,
            tpm_socket=tpm_socket, vendor=plan.vendor, model=plan.model,
        )  # fmt: skip
        pid = self._start(state, f"vm{i}", vms.qemu_argv(spec, accel=accel))
        state["vms"].append(
            {"name": spec.name, "serial": serial, "mac": spec.mac, "disk": str(disk),
             "console": str(spec.console_log), "tpm": tpm_socket is not None, "pid": pid}
        )  # fmt: skip
        self._save(state)

    def down(self) -> bool:
        """Stop what ``up`` started and delete the namespace; False if nothing ran."""
        state = self.state()
        if state is None:
            return False
        procs = [p for p in reversed(state["processes"]) if _ours(p)]
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(_alive(p["pid"]) for p in procs):
            time.sleep(0.2)
        for p in procs:
            if _alive(p["pid"]):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p["pid"], signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", state["namespace"]], check=False, timeout=60)
        self.state_path.unlink(missing_ok=True)
        return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False


def _ours(p: dict[str, Any]) -> bool:
    """The recorded process is still the one we started (its pid was not reused)."""
    try:
        cmdline = Path(f"/proc/{p['pid']}/cmdline").read_bytes()
    except OSError:
        return False
    return b"ip\0netns\0exec\0" in cmdline or str(p["argv0"]).encode() in cmdline
