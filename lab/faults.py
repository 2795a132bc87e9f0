"""Per-laptop fault injection, switchable at run time.

A laptop's faults live in two files of its directory, rewritten atomically on every change:
``faults.json`` (read by the lab daemon: the TCP proxy in front of sshd and the WinRM
server, at each new connection or request) and ``faults.env`` (sourced by
``pe_shell.sh``, the ForceCommand of the laptop's sshd, before each SSH command). What
each fault does and what the pipeline is expected to report is in docs/lab.md.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from lab.errors import InvalidLabInput


class Fault(StrEnum):
    WRONG_SERIAL = "wrong_serial"
    SSH_REFUSED = "ssh_refused"
    SSH_DROP = "ssh_drop"
    SLOW_LINK = "slow_link"
    DISK_FULL = "disk_full"
    DISK_WRITE_ERROR = "disk_write_error"
    FLIPPED_BYTE = "flipped_byte"
    FLUSH_ERROR = "flush_error"
    WINRM_500 = "winrm_500"
    WINRM_TIMEOUT = "winrm_timeout"
    WINRM_401 = "winrm_401"
    APP_INSTALL_FAILS = "app_install_fails"


# Parameters each fault accepts, with defaults (None = required; "" = optional string).
FAULT_PARAMS: dict[Fault, dict[str, int | str | None]] = {
    Fault.WRONG_SERIAL: {"serial": ""},
    Fault.SSH_REFUSED: {},
    Fault.SSH_DROP: {"after_bytes": 1024 * 1024},
    Fault.SLOW_LINK: {"bytes_per_second": None},
    Fault.DISK_FULL: {"after_bytes": 1024 * 1024},
    Fault.DISK_WRITE_ERROR: {"after_bytes": 0},
    Fault.FLIPPED_BYTE: {"offset": 0},
    Fault.FLUSH_ERROR: {},
    Fault.WINRM_500: {"count": 0},
    Fault.WINRM_TIMEOUT: {"count": 0},
    Fault.WINRM_401: {},
    Fault.APP_INSTALL_FAILS: {"app_id": "", "exit_code": 1603},
}

# Disk faults act through the same shim; only one of them is active at a time.
DISK_FAULTS = (Fault.DISK_FULL, Fault.DISK_WRITE_ERROR, Fault.FLIPPED_BYTE, Fault.FLUSH_ERROR)


def parse_fault(name: str) -> Fault:
    """Raises InvalidLabInput for an unknown fault name."""
    try:
        return Fault(name.strip().lower().replace("-", "_"))
    except ValueError:
        known = ", ".join(f.value for f in Fault)
        raise InvalidLabInput(f"unknown fault {name!r} (known: {known})") from None


def normalise_params(fault: Fault, params: dict[str, Any]) -> dict[str, int | str]:
    """Fill defaults and type-check a fault's parameters.

    Raises InvalidLabInput for an unknown or missing parameter or a bad value.
    """
    spec = FAULT_PARAMS[fault]
    unknown = set(params) - set(spec)
    if unknown:
        allowed = ", ".join(spec) or "none"
        raise InvalidLabInput(
            f"fault {fault.value} takes no parameter {', '.join(sorted(unknown))} "
            f"(allowed: {allowed})"
        )
    out: dict[str, int | str] = {}
    for key, default in spec.items():
        value = params.get(key, default)
        if value is None:
            raise InvalidLabInput(f"fault {fault.value} needs --param {key}=…")
        if isinstance(default, str):
            out[key] = str(value)
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise InvalidLabInput(f"fault {fault.value}: {key} must be an integer") from None
        if number < 0 or (key == "bytes_per_second" and number == 0):
            raise InvalidLabInput(f"fault {fault.value}: {key} must be positive")
        out[key] = number
    return out


class FaultFile:
    """The faults of one laptop, in ``<laptop dir>/faults.json`` and ``faults.env``."""

    def __init__(self, laptop_dir: Path) -> None:
        self.dir = laptop_dir
        self.json_path = laptop_dir / "faults.json"
        self.env_path = laptop_dir / "faults.env"
        self._lock_path = laptop_dir / "faults.lock"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        # The lab daemon decrements counted WinRM faults while the CLI may set others.
        with open(self._lock_path, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def read(self) -> dict[Fault, dict[str, Any]]:
        try:
            raw = json.loads(self.json_path.read_text())
        except FileNotFoundError:
            return {}
        return {Fault(k): v for k, v in raw.items()}

    def _write(self, faults: dict[Fault, dict[str, Any]]) -> None:
        _atomic_write(self.json_path, json.dumps({f.value: p for f, p in faults.items()}))
        _atomic_write(self.env_path, _env_text(faults))

    def set(self, fault: Fault, params: dict[str, Any]) -> None:
        with self._locked():
            faults = self.read()
            if fault in DISK_FAULTS:
                for other in DISK_FAULTS:
                    faults.pop(other, None)
            faults[fault] = params
            self._write(faults)

    def clear(self, fault: Fault | None = None) -> None:
        with self._locked():
            faults: dict[Fault, dict[str, Any]] = {}
            if fault is not None:
                faults = self.read()
                faults.pop(fault, None)
            self._write(faults)

    def consume(self, fault: Fault) -> dict[str, Any] | None:
        """Take one occurrence of a fault: returns its params if it is active.

        A fault with ``count`` > 0 is removed after that many occurrences; 0 means until
        cleared.
        """
        with self._locked():
            faults = self.read()
            params = faults.get(fault)
            if params is None:
                return None
            count = int(params.get("count", 0) or 0)
            if count > 0:
                if count == 1:
                    faults.pop(fault)
                else:
                    faults[fault] = {**params, "count": count - 1}
                self._write(faults)
            return params


def _env_text(faults: dict[Fault, dict[str, Any]]) -> str:
    # Only integers and fault names go in here, so the file is safe to source.
    lines = ["# Written by the lab (lab/faults.py); sourced by pe_shell.sh.", "LAB_DISK_FAULT="]
    for fault in DISK_FAULTS:
        if fault in faults:
            params = faults[fault]
            lines.append(f"LAB_DISK_FAULT={fault.value}")
            lines.append(f"LAB_DISK_AFTER_BYTES={int(params.get('after_bytes', 0))}")
            lines.append(f"LAB_DISK_FLIP_OFFSET={int(params.get('offset', 0))}")
    return "\n".join(lines) + "\n"


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
