"""The device lab: lab laptops on 127.0.0.1 that stand in for a bench full of real ones.

Each laptop is a directory under ``<root>/laptops/<name>/`` holding its hardware identity
(a fake root ``pe/`` answering ``/sys/class/dmi/id/…``, ``/sys/class/net/…``,
``/sys/block/…`` and ``/dev/<disk>``), its target disk (a sparse file), its own OpenSSH
``sshd`` (own port, own host key) and its faults. In front of every sshd the lab daemon
(``lab/daemon.py``) runs a small TCP proxy: it is where refused, dropped and slow links
are injected. After imaging, :meth:`Lab.reboot_into_os` turns a Linux laptop into an SSH
host for Ansible (``os/`` is the installed system's root) and a Windows laptop into a
WinRM endpoint (``lab/winrm``). Everything is in one directory; see docs/lab.md.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from lab import daemon_client, keys, sshd
from lab.build import build_laptop, write_sshd_config
from lab.errors import InvalidLabInput, LabStartFailed, LaptopExists, LaptopNotFound
from lab.faults import Fault, FaultFile, normalise_params
from lab.identity import write_file
from lab.laptop import (
    DEFAULT_DISK_BYTES,
    SERIAL,
    LabLaptop,
    LaptopSpec,
    OsFamily,
    name_for,
    validate,
)
from lab.offline import apply_offline

__all__ = ["Fault", "Lab", "LabLaptop", "LaptopSpec"]

STATE_FILE = "lab.json"
_PORT_ATTEMPTS = 5
WINRM_USERNAME = "Administrator"
DEFAULT_OS_HOSTNAME = "localhost"


class Lab:
    """All lab laptops of one state directory.

    Several ``Lab`` objects (e.g. the CLI's and a test's) may look at the same root; the
    files are the truth. ``up`` started from Python stops what it started at interpreter
    exit unless ``keep_running=True`` (the CLI's ``lab up`` keeps the lab running).
    """

    def __init__(self, root: Path | None = None, *, keep_running: bool = False) -> None:
        if root is None:
            from core.settings import get_settings

            root = get_settings().data_dir / "lab"
        self.root = Path(root).resolve()
        self.keep_running = keep_running
        self._atexit_registered = False

    def _owner(self) -> int | None:
        return None if self.keep_running else os.getpid()

    # --- paths and state -------------------------------------------------------------

    @property
    def client_key_path(self) -> Path:
        return self.root / "client" / "id_ed25519"

    @property
    def authorized_keys_path(self) -> Path:
        return self.root / "client" / "authorized_keys"

    @property
    def ca_path(self) -> Path:
        return self.root / "ca" / "ca.pem"

    def _state_path(self) -> Path:
        return self.root / STATE_FILE

    def laptops(self) -> list[LabLaptop]:
        """Every laptop of this lab, in creation order."""
        try:
            raw = json.loads(self._state_path().read_text())
        except FileNotFoundError:
            return []
        return [LabLaptop.from_json(d) for d in raw.get("laptops", [])]

    def get(self, name: str) -> LabLaptop:
        """Raises LaptopNotFound."""
        for laptop in self.laptops():
            if laptop.name == name:
                return laptop
        raise LaptopNotFound(name)

    def _save(self, laptops: list[LabLaptop]) -> None:
        # A temporary file of its own per writer, then an atomic rename: eight laptops
        # rebooting at once (one worker thread each) used to share one ".tmp" name, and
        # readers then saw two writers' bytes interleaved.
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{STATE_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
        try:
            tmp.write_text(json.dumps({"laptops": [lp.to_json() for lp in laptops]}, indent=2))
            os.replace(tmp, self._state_path())
        finally:
            tmp.unlink(missing_ok=True)

    def _update(self, laptop: LabLaptop) -> None:
        """Replace one laptop's record: read, modify and write under an exclusive lock
        (worker threads and the lab daemon process update records concurrently)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{STATE_FILE}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._save([laptop if lp.name == laptop.name else lp for lp in self.laptops()])

    # --- lifecycle -------------------------------------------------------------------

    def up(self, specs: list[LaptopSpec]) -> list[LabLaptop]:
        """Create and start one lab laptop per spec (booted into the PE, SSH reachable).

        Raises InvalidLabInput for a bad spec, LaptopExists for a name already in the lab,
        LabStartFailed if an sshd or the lab daemon does not come up (what was started by
        this call is stopped again).
        """
        existing = self.laptops()
        taken = {lp.name for lp in existing} | {lp.serial for lp in existing}
        seen: set[str] = set()
        for spec in specs:
            validate(spec)
            name = name_for(spec)
            if name in taken or spec.serial in taken or name in seen:
                raise LaptopExists(name)
            seen.add(name)
        self._ensure_shared()
        started: list[LabLaptop] = []
        try:
            for spec in specs:
                laptop = self._build(spec)
                started.append(laptop)
                started[-1] = self._start_sshd(laptop)
                self._save([*existing, *started])
            daemon_client.ensure_running(self.root, self._owner())
            self._sync()
        except BaseException:
            for laptop in started:
                sshd.stop(laptop.dir / "sshd")
                shutil.rmtree(laptop.dir, ignore_errors=True)
            self._save(existing)
            raise
        started = [self.get(lp.name) for lp in started]
        if not self.keep_running and not self._atexit_registered:
            atexit.register(self.down)
            self._atexit_registered = True
        return started

    def up_n(
        self,
        n: int,
        *,
        windows: int = 0,
        disk_bytes: int = DEFAULT_DISK_BYTES,
        vendor: str = "Dell",
        model: str = "Latitude 5440",
        serial_prefix: str = "LAB",
    ) -> list[LabLaptop]:
        """Start ``n`` Linux and ``windows`` Windows laptops with serials LAB0001, LAB0002…

        Raises what :meth:`up` raises.
        """
        if n < 0 or windows < 0:
            raise InvalidLabInput("laptop counts must not be negative")
        start = len(self.laptops()) + 1
        specs: list[LaptopSpec] = []
        for i in range(n + windows):
            family: OsFamily = "linux" if i < n else "windows"
            specs.append(
                LaptopSpec(
                    serial=f"{serial_prefix}{start + i:04d}",
                    os_family=family,
                    vendor=vendor,
                    model=model,
                    disk_bytes=disk_bytes,
                )
            )
        return self.up(specs)

    def start(self) -> list[LabLaptop]:
        """Start again whatever ``down`` stopped (files kept): sshds and the daemon.

        Raises LabStartFailed.
        """
        laptops = self.laptops()
        for laptop in laptops:
            if laptop.os_family == "windows" and laptop.boot == "os":
                continue
            pid = sshd.read_pid(laptop.dir / "sshd" / "sshd.pid")
            if pid is None or not sshd.alive(pid):
                self._update(self._start_sshd(laptop))
        if laptops:
            daemon_client.ensure_running(self.root, self._owner())
            self._sync()
            if not self.keep_running and not self._atexit_registered:
                atexit.register(self.down)
                self._atexit_registered = True
        return self.laptops()

    def down(self) -> None:
        """Stop every lab process (sshds and their sessions, the daemon); keep the files.

        Also finds the sshds from the laptops' directories, so that a lab whose state
        file is damaged can still be stopped.
        """
        try:
            dirs = {lp.dir / "sshd" for lp in self.laptops()}
        except ValueError:  # unreadable lab.json: the directories are enough
            dirs = set()
        dirs |= set((self.root / "laptops").glob("*/sshd"))
        for sshd_dir in sorted(dirs):
            sshd.stop(sshd_dir)
        daemon_client.stop(self.root)

    def reset(self) -> None:
        """Stop everything and delete the lab's directory."""
        self.down()
        if self.root.exists():
            shutil.rmtree(self.root)

    def status(self) -> list[dict[str, Any]]:
        """One row per laptop: identity, boot state, ports, processes alive, faults."""
        daemon_pid = daemon_client.running_pid(self.root)
        rows: list[dict[str, Any]] = []
        for lp in self.laptops():
            pid = sshd.read_pid(lp.dir / "sshd" / "sshd.pid")
            rows.append(
                {
                    "name": lp.name,
                    "serial": lp.serial,
                    "os_family": lp.os_family,
                    "boot": lp.boot,
                    "ssh_port": lp.ssh_port,
                    "sshd_running": pid is not None and sshd.alive(pid),
                    "winrm_port": lp.winrm_port,
                    "daemon_running": daemon_pid is not None,
                    "disk_bytes": lp.disk_bytes,
                    "faults": {f.value: p for f, p in FaultFile(lp.dir).read().items()},
                }
            )
        return rows

    # --- boot ------------------------------------------------------------------------

    def reboot_into_os(self, name: str) -> LabLaptop:
        """Reboot a laptop from the PE into its installed OS.

        Linux: its sshd restarts serving the installed system (``MASTERLINE_TARGET_ROOT``
        = ``os_root``), same port and host key. Windows: SSH goes away and the laptop
        answers WinRM on ``winrm_port`` (HTTPS) and ``winrm_http_port`` (HTTP, NTLM with
        encryption). Raises LaptopNotFound, LabStartFailed.
        """
        with self._booting():
            return self._reboot_into_os(name)

    def _booting(self) -> contextlib.AbstractContextManager[None]:
        """One boot change at a time per lab, across threads and processes: a worker
        rebooting several laptops at once would otherwise race on the shared CA files
        and on the daemon's port binding (each sync re-picks the ports another took)."""
        return _flocked(self.root / ".boot.lock")

    def _reboot_into_os(self, name: str) -> LabLaptop:
        laptop = self.get(name)
        daemon_client.ensure_running(self.root, self._owner())
        sshd_dir = laptop.dir / "sshd"
        sshd.stop(sshd_dir)
        # The disk was written since the last boot into the OS: a fresh install boots, so
        # what the previous configuration left (os_root, Windows state) is gone.
        image = laptop.disk_path.stat().st_mtime_ns
        if laptop.os_image_mtime_ns is not None and laptop.os_image_mtime_ns != image:
            shutil.rmtree(laptop.os_root, ignore_errors=True)
            (laptop.dir / "windows.json").unlink(missing_ok=True)
        laptop = replace(laptop, os_image_mtime_ns=image)
        if laptop.os_family == "linux":
            laptop.os_root.mkdir(parents=True, exist_ok=True)
            (laptop.os_root / "etc").mkdir(exist_ok=True)
            apply_offline(laptop)
            hostname = laptop.os_root / "etc" / "hostname"
            if not hostname.exists():
                hostname.write_text(DEFAULT_OS_HOSTNAME + "\n")
            laptop = self._start_sshd(replace(laptop, boot="os"))
        else:
            from lab.winrm.certs import ensure_lab_ca

            ensure_lab_ca(self.root / "ca")
            laptop = replace(
                laptop,
                boot="os",
                winrm_port=laptop.winrm_port or sshd.free_port(),
                winrm_http_port=laptop.winrm_http_port or sshd.free_port(),
                winrm_ca_path=self.ca_path,
                winrm_username=WINRM_USERNAME,
                winrm_password=laptop.winrm_password or _password(),
            )
            from lab.winrm.state import WindowsState

            WindowsState(laptop.dir).ensure(laptop.name)
            apply_offline(laptop)
        self._update(laptop)
        self._sync()
        return self.get(name)

    def boot_pe(self, name: str) -> LabLaptop:
        """Boot a laptop back into the PE (e.g. to re-image it). Raises LaptopNotFound."""
        with self._booting():
            laptop = self.get(name)
            daemon_client.ensure_running(self.root, self._owner())
            sshd.stop(laptop.dir / "sshd")
            laptop = self._start_sshd(replace(laptop, boot="pe"))
            self._update(laptop)
            self._sync()
            return self.get(name)

    def windows_state(self, name: str) -> dict[str, Any]:
        """The Windows state of a laptop (computer name, vpn, files, apps, services).

        Raises LaptopNotFound.
        """
        from lab.winrm.state import WindowsState

        return WindowsState(self.get(name).dir).read()

    def windows_put_file(self, name: str, path: str, data: bytes) -> None:
        """Put a file on a Windows laptop (e.g. the MSI an installer step expects).

        Raises LaptopNotFound.
        """
        from lab.winrm.state import WindowsState

        WindowsState(self.get(name).dir).put_file(path, data)

    # --- faults ----------------------------------------------------------------------

    def set_fault(self, name: str, fault: Fault, **params: Any) -> dict[str, Any]:
        """Switch a fault on for one laptop; returns its effective parameters.

        Raises LaptopNotFound, InvalidLabInput (unknown parameter or bad value).
        """
        laptop = self.get(name)
        effective = normalise_params(fault, params)
        if fault is Fault.WRONG_SERIAL:
            wrong = str(effective.get("serial") or f"WRONG{laptop.serial}")
            if not SERIAL.fullmatch(wrong):
                raise InvalidLabInput(f"serial {wrong!r}: letters, digits, '.', '_', '-' only")
            effective["serial"] = wrong
            write_file(laptop.pe_root / "sys/class/dmi/id/product_serial", wrong + "\n")
        FaultFile(laptop.dir).set(fault, effective)
        self._sync()
        return effective

    def clear_faults(self, name: str, fault: Fault | None = None) -> None:
        """Switch off one fault, or all of them. Raises LaptopNotFound."""
        laptop = self.get(name)
        FaultFile(laptop.dir).clear(fault)
        if fault is None or fault is Fault.WRONG_SERIAL:
            write_file(laptop.pe_root / "sys/class/dmi/id/product_serial", laptop.serial + "\n")
        self._sync()

    def faults(self, name: str) -> dict[Fault, dict[str, Any]]:
        """Raises LaptopNotFound."""
        return FaultFile(self.get(name).dir).read()

    # --- building --------------------------------------------------------------------

    def _start_sshd(self, laptop: LabLaptop) -> LabLaptop:
        """(Re)write the laptop's sshd config and start it; returns the laptop as started.

        A port taken since it was picked is replaced (a few times). Raises LabStartFailed.
        """
        for attempt in range(_PORT_ATTEMPTS):
            self._write_sshd_config(laptop)
            try:
                sshd.start(laptop.dir / "sshd", laptop.sshd_port)
                return laptop
            except sshd.PortInUse:
                if attempt == _PORT_ATTEMPTS - 1:
                    raise
                laptop = replace(laptop, sshd_port=sshd.free_port())
        raise AssertionError("unreachable")

    def _sync(self) -> None:
        """Have the daemon apply the state; re-pick ports another process took meanwhile.

        Raises LabStartFailed.
        """
        for _ in range(_PORT_ATTEMPTS):
            failed = daemon_client.sync(self.root)
            if not failed:
                return
            for name, what in failed.items():
                laptop = self.get(name)
                if what == "ssh":
                    laptop = replace(laptop, ssh_port=sshd.free_port())
                    host_line = keys.public_line(laptop.dir / "sshd" / "ssh_host_ed25519_key")
                    laptop.known_hosts_path.write_text(
                        keys.known_hosts_line(laptop.host, laptop.ssh_port, host_line)
                    )
                else:
                    laptop = replace(
                        laptop, winrm_port=sshd.free_port(), winrm_http_port=sshd.free_port()
                    )
                self._update(laptop)
        raise LabStartFailed("the lab daemon could not bind its ports (see daemon.log)")

    def _ensure_shared(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.client_key_path.exists():
            line = keys.generate_ed25519(self.client_key_path, "masterline-lab-bench")
            self.authorized_keys_path.write_text(line + "\n")

    def _build(self, spec: LaptopSpec) -> LabLaptop:
        laptop = build_laptop(self.root / "laptops", spec, self.client_key_path)
        self._write_sshd_config(laptop)
        return laptop

    def _write_sshd_config(self, laptop: LabLaptop) -> None:
        write_sshd_config(laptop, self.authorized_keys_path)


def _password() -> str:
    import secrets

    return secrets.token_urlsafe(18)


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``path`` (created): held by one open file at a time,
    so it excludes threads of one process as well as other processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
