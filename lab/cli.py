"""``masterline lab``: start, inspect, break and stop the device lab (see docs/lab.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from core.console import JsonFlag, console, err_console, print_json
from lab.errors import InvalidLabInput
from lab.faults import Fault, parse_fault
from lab.lab import DEFAULT_DISK_BYTES, Lab, LabLaptop, LaptopSpec
from lab.vm_bench import VmBenchPlan

app = typer.Typer(help="The device lab: lab laptops for tests and rehearsal.")

RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="Lab state directory (default: <data_dir>/lab)."),
]
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """'2G', '512M', '1GiB', '1048576' → bytes. Raises InvalidLabInput."""
    m = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if m is None:
        raise InvalidLabInput(f"size {text!r}: write e.g. 2G, 512M or a number of bytes")
    return int(m.group(1)) * _UNITS[m.group(2).upper()]


def _lab(root: Path | None) -> Lab:
    return Lab(root=root, keep_running=True)


def _laptop_row(lp: LabLaptop) -> dict[str, Any]:
    return {
        "name": lp.name,
        "serial": lp.serial,
        "os_family": lp.os_family,
        "boot": lp.boot,
        "ssh": f"{lp.ssh_user}@{lp.host}:{lp.ssh_port}",
        "ssh_port": lp.ssh_port,
        "client_key_path": str(lp.client_key_path),
        "known_hosts_path": str(lp.known_hosts_path),
        "winrm_endpoint": lp.winrm_endpoint,
        "macs": lp.macs,
        "disk_path": str(lp.disk_path),
    }


@app.command("up")
def up(
    devices: Annotated[int, typer.Option("--devices", "-n", help="Linux laptops wanted.")] = 1,
    windows: Annotated[int, typer.Option("--windows", help="Windows laptops wanted.")] = 0,
    disk_size: Annotated[str, typer.Option("--disk-size", help="Target disk size.")] = "2G",
    root: RootOpt = None,
    as_json: JsonFlag = False,
    vm_count: Annotated[
        int,
        typer.Option("--vms", help="VM laptops (QEMU) on a bench network, instead of lab laptops."),
    ] = 0,
    serial: Annotated[
        list[str] | None,
        typer.Option("--serial", help="A VM's SMBIOS serial (repeat; default VM0001, ...)."),
    ] = None,
    site: Annotated[str, typer.Option(help="The VM bench's site code.")] = "PAR",
    bench: Annotated[str, typer.Option(help="The VM bench's bench code.")] = "B1",
    vm_subnet: Annotated[str, typer.Option(help="The bench network's /24, as A.B.C.")] = "10.77.0",
    api_port: Annotated[int, typer.Option(help="The API's port on the bench network.")] = 8080,
    vm_vendor: Annotated[
        str, typer.Option(help="The VMs' SMBIOS manufacturer (as the delivery expects).")
    ] = "QEMU Lab",
    vm_model: Annotated[
        str, typer.Option(help="The VMs' SMBIOS product name (as the delivery expects).")
    ] = "Masterline VM",
) -> None:
    """Start the lab with at least N Linux and M Windows laptops (restarts stopped ones),
    or with --vms N, a bench of N QEMU laptops that network-boot Masterline's PE
    (docs/boot.md, "Rehearse with VMs").

    New Windows laptops take their local admin password from
    MASTERLINE_LAB_WINRM_PASSWORD (never from the command line), else a random one.
    """
    if vm_count:
        plan = VmBenchPlan(
            serials=serial or [f"VM{i:04d}" for i in range(1, vm_count + 1)],
            site=site,
            bench=bench,
            subnet=vm_subnet,
            api_port=api_port,
            disk_bytes=parse_size(disk_size),
            vendor=vm_vendor,
            model=vm_model,
        )
        _vms_up(root, vm_count, len(serial or []), plan)
        return
    if devices < 0 or windows < 0:
        raise InvalidLabInput("--devices and --windows must not be negative")
    disk_bytes = parse_size(disk_size) if disk_size else DEFAULT_DISK_BYTES
    lab = _lab(root)
    existing = lab.start()
    have_linux = sum(1 for lp in existing if lp.os_family == "linux")
    have_windows = len(existing) - have_linux
    start = len(existing) + 1
    specs = [
        LaptopSpec(
            serial=f"LAB{start + i:04d}",
            os_family="linux" if i < max(0, devices - have_linux) else "windows",
            disk_bytes=disk_bytes,
            winrm_password=os.environ.get("MASTERLINE_LAB_WINRM_PASSWORD") or None,
        )
        for i in range(max(0, devices - have_linux) + max(0, windows - have_windows))
    ]
    if specs:
        lab.up(specs)
    laptops = lab.laptops()
    if as_json:
        print_json([_laptop_row(lp) for lp in laptops])
        return
    table = Table("name", "serial", "os", "boot", "ssh", "winrm")
    for lp in laptops:
        table.add_row(
            lp.name,
            lp.serial,
            lp.os_family,
            lp.boot,
            f"{lp.ssh_user}@{lp.host}:{lp.ssh_port}",
            lp.winrm_endpoint or "",
        )
    console.print(table)
    err_console.print(
        f"lab in {lab.root}: bench key {lab.client_key_path}; stop it with `masterline lab down`"
    )


def _vms_up(root: Path | None, count: int, serials_given: int, plan: VmBenchPlan) -> None:
    from boot.netboot import service as netboot
    from boot.pe import repository as pe_catalogue
    from core.db import get_database
    from lab.vm_bench import VmBench

    subnet, api_port = plan.subnet, plan.api_port
    if count < 0 or count > 32:
        raise InvalidLabInput("--vms must be between 1 and 32")
    if serials_given and serials_given != count:
        raise InvalidLabInput(f"--serial given {serials_given} times for {count} VMs")
    if not re.fullmatch(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})", subnet) or any(
        int(part) > 255 for part in subnet.split(".")
    ):
        raise InvalidLabInput(f"--vm-subnet {subnet!r}: write the /24's first three bytes")
    if pe_catalogue.current_version() is None:
        raise InvalidLabInput("no PE in the catalogue: build one with `masterline pe build`")
    with get_database().session(write=False) as session:
        found = netboot.bench_by_code(session, plan.site, plan.bench)
        link = netboot.bench_boot(session, found).link
    vm_bench = VmBench(_lab(root).root)
    state = vm_bench.up(plan, script_url=f"http://{subnet}.1:{api_port}/boot/ipxe/{link}")
    table = Table("name", "serial", "mac", "tpm", "console")
    for vm in state["vms"]:
        table.add_row(
            vm["name"], vm["serial"], vm["mac"], "yes" if vm["tpm"] else "no", vm["console"]
        )
    console.print(table)
    err_console.print(
        f"bench network {subnet}.0/24 in namespace {state['namespace']} (QEMU {state['accel']}); "
        f"API at {state['api']} inside it; stop it with `masterline lab down`"
    )


@app.command("down")
def down(root: RootOpt = None) -> None:
    """Stop every lab process and VM (files are kept; `lab up` starts them again)."""
    from lab.vm_bench import VmBench

    lab = _lab(root)
    if VmBench(lab.root).down():
        err_console.print("VM bench stopped, its network namespace deleted")
    lab.down()
    err_console.print(f"lab in {lab.root} stopped")


@app.command("reset")
def reset(root: RootOpt = None) -> None:
    """Stop the lab and delete its directory."""
    lab = _lab(root)
    lab.reset()
    err_console.print(f"lab in {lab.root} removed")


@app.command("status")
def status(root: RootOpt = None, as_json: JsonFlag = False) -> None:
    """Laptops, ports, processes and faults."""
    rows = _lab(root).status()
    if as_json:
        print_json(rows)
        return
    if not rows:
        err_console.print("no lab laptops (start some with `masterline lab up`)")
        return
    daemon = "running" if rows[0]["daemon_running"] else "stopped"
    err_console.print(f"lab daemon (SSH proxies, WinRM): {daemon}")
    table = Table("name", "serial", "os", "boot", "ssh port", "sshd", "winrm port", "faults")
    for row in rows:
        table.add_row(
            row["name"],
            row["serial"],
            row["os_family"],
            row["boot"],
            str(row["ssh_port"]),
            "running" if row["sshd_running"] else "stopped",
            str(row["winrm_port"] or ""),
            ", ".join(row["faults"]) or "-",
        )
    console.print(table)


@app.command("reboot")
def reboot(name: Annotated[str, typer.Argument(help="Laptop name.")], root: RootOpt = None) -> None:
    """Reboot a laptop into its installed OS (Linux: SSH for Ansible; Windows: WinRM)."""
    lp = _lab(root).reboot_into_os(name)
    where = lp.winrm_endpoint or f"ssh {lp.ssh_user}@{lp.host} -p {lp.ssh_port}"
    err_console.print(f"{lp.name} booted its OS: {where}")


@app.command("fault")
def fault(
    name: Annotated[str, typer.Argument(help="Laptop name.")],
    fault_name: Annotated[
        str, typer.Argument(metavar="FAULT", help=", ".join(f.value for f in Fault))
    ],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE (repeat).")
    ] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Switch this fault off.")] = False,
    root: RootOpt = None,
) -> None:
    """Switch a fault on (or off with --clear) for one laptop; see docs/lab.md."""
    lab = _lab(root)
    which = parse_fault(fault_name)
    if clear:
        lab.clear_faults(name, which)
        err_console.print(f"{name}: {which.value} cleared")
        return
    params: dict[str, str] = {}
    for item in param or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidLabInput(f"--param {item!r}: write KEY=VALUE")
        params[key.strip()] = value.strip()
    effective = lab.set_fault(name, which, **params)
    shown = ", ".join(f"{k}={v}" for k, v in effective.items())
    err_console.print(f"{name}: {which.value} on" + (f" ({shown})" if shown else ""))


@app.command("clear")
def clear(name: Annotated[str, typer.Argument(help="Laptop name.")], root: RootOpt = None) -> None:
    """Switch every fault of one laptop off."""
    _lab(root).clear_faults(name)
    err_console.print(f"{name}: all faults cleared")
