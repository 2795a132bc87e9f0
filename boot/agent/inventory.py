"""Collect the hardware inventory within a time budget.

The slow parts are the tools (``smartctl`` per disk, ``nvme``, ``dmidecode``): they run
at once in threads, each bounded by what is left of the budget, so registration waits
at most ``budget`` seconds however many disks there are or however a tool hangs (what
missed the deadline is reported as unknown, with a warning).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

from . import disks, sysinfo
from .sysinfo import Root

Runner = Callable[[list[str], float], "str | None"]
"""Runs a command with a timeout; its stdout, or None when it could not run at all."""

DEFAULT_BUDGET = 4.5


def run_command(argv: list[str], timeout: float) -> str | None:
    """The real runner: stdout whatever the exit status (smartctl sets bits in it and
    still prints), None when the tool is missing or timed out."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(
            argv,
            capture_output=True,
            timeout=max(0.1, timeout),
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.decode(errors="replace")


def collect(
    root: Root, *, run: Runner = run_command, budget: float = DEFAULT_BUDGET
) -> dict[str, Any]:
    """The inventory, as ``POST /boot/register`` takes it."""
    start = time.monotonic()
    deadline = start + budget
    warnings: list[str] = []
    found = disks.block_devices(root)

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    def smart(disk: dict[str, Any]) -> dict[str, Any]:
        if disk["removable"]:
            return {"health": "unknown", "note": "removable or USB: not checked"}
        out = run(["smartctl", "-j", "-a", f"/dev/{disk['name']}"], left())
        if out is not None and out.strip():
            parsed = disks.parse_smartctl(out)
            if parsed.get("health") != "unknown" or disk["transport"] != "nvme":
                return parsed
        if disk["transport"] == "nvme":
            out = run(["nvme", "smart-log", "-o", "json", f"/dev/{disk['name']}"], left())
            if out is not None and out.strip():
                return disks.parse_nvme_smart_log(out)
        return {"health": "unknown", "note": "no SMART data (smartctl/nvme missing or failed)"}

    with ThreadPoolExecutor(max_workers=max(1, len(found) + 1)) as pool:
        smart_jobs = {pool.submit(smart, d): d for d in found}
        dmi_job = pool.submit(run, ["dmidecode", "-t", "17"], left())
        # The cheap readers while the tools run.
        cpu = sysinfo.cpu(root)
        usable = sysinfo.memory_usable(root)
        batteries = sysinfo.batteries(root)
        tpm = sysinfo.tpm(root)
        firmware = sysinfo.firmware(root)
        jobs: list[Future[Any]] = [*smart_jobs, dmi_job]
        done, late = wait(jobs, timeout=left())
        for job, disk in smart_jobs.items():
            if job in done and job.exception() is None:
                disk.update(job.result())
            else:
                disk.update({"health": "unknown", "note": "health check did not finish in time"})
                warnings.append(f"{disk['name']}: health check timed out")
        installed = None
        if dmi_job in done and dmi_job.exception() is None:
            installed = sysinfo.memory_installed(dmi_job.result())
        for job in late:
            job.cancel()
    return {
        "cpu": cpu,
        "memory": {"installed_bytes": installed, "usable_bytes": usable},
        "disks": found,
        "batteries": batteries,
        "tpm": tpm,
        "firmware": firmware,
        "collect_seconds": round(time.monotonic() - start, 3),
        "warnings": warnings[:32],
    }
