"""The ordered, idempotent steps of a provisioning run.

Each step is a plain function of a ``StepContext`` that returns what later steps need
(merged into ``ProvisioningRun.context``). Running a step twice is safe: the identity
check only reads, the stream rewrites the whole range, the readback only reads, an
installer already on the disk with its sha256 is skipped, the offline settings overwrite
the same files, configuration is idempotent (Ansible/DSC style), the gate only reads.
That is what lets a killed worker simply re-run the step that was saved before it
started.

Which device state each step runs in is fixed here (``Step.stage``); the engine moves the
device into that stage, through ``inventory.lifecycle``, before the step starts.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from inventory.models import Device
from inventory.service import normalize_code
from inventory.states import DeviceState
from provisioning import imaging, labboot
from provisioning.errors import (
    Aborted,
    CommandFailed,
    ConnectFailed,
    IdentityMismatch,
    NotReadyToProvision,
    ProvisioningError,
)
from provisioning.transports.base import Transport

if TYPE_CHECKING:
    from provisioning.configure import LinuxWaves
    from provisioning.transports.ssh import SshEndpoint


def _ssh_transport(endpoint: SshEndpoint) -> Transport:
    # paramiko is imported when a step first connects, not when this module is: the API
    # server imports it (to queue runs at scan-in) and must stay small in memory.
    from provisioning.transports.ssh import SSHTransport

    return SSHTransport(endpoint)


class GateFailed(ProvisioningError):
    """One or more of the client's checks failed (fatal: the laptop is not READY)."""

    def __init__(self, failed: list[dict[str, Any]]) -> None:
        names = ", ".join(f"{c['name']} ({c['detail']})" for c in failed)
        super().__init__(f"checks failed: {names}"[:900])
        self.failed = failed


@dataclass
class StepContext:
    """Everything a step may use. Built by the engine from committed rows; steps never
    touch the database except through ``session_factory`` for planning."""

    run_id: int
    serial: str
    os_family: str
    endpoint: SshEndpoint
    endpoint_options: dict[str, Any]
    disk_rule: str
    site_code: str
    cache_dir: Path
    image: imaging.ImageSource
    state: dict[str, Any]
    timeout: float
    progress: Callable[[int, int], None]
    """(sent, total); raises ``Aborted`` when the run was aborted."""
    on_event: Callable[[dict[str, Any]], None]
    plan_loader: Callable[[], tuple[Any, Any]]
    """Returns (OsTarget, ConfigPlan) from the client's configuration."""
    cancelled: Callable[[], bool] = lambda: False
    """True once the run was aborted (polled by long steps such as configure)."""
    bucket: imaging.TokenBucket | None = None
    waves: LinuxWaves | None = None
    """This worker's configure waves (Linux laptops configured in one Ansible run)."""
    transport_factory: Callable[[SshEndpoint], Transport] = field(default=_ssh_transport)
    _transport: Transport | None = None

    def pe(self) -> Transport:
        if self._transport is None:
            self._transport = self.transport_factory(self.endpoint)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _check_serial(ctx: StepContext) -> imaging.Identity:
    identity = imaging.identify(ctx.pe(), timeout=ctx.timeout)
    seen = normalize_code(identity.serial)
    if seen != normalize_code(ctx.serial):
        raise IdentityMismatch(
            f"identity mismatch: the laptop in the slot reports serial {seen or '(none)'}, "
            f"{ctx.serial} was scanned"
        )
    return identity


def step_identify(ctx: StepContext) -> dict[str, Any]:
    identity = _check_serial(ctx)
    return {"identity": identity.as_dict()}


def step_pick_disk(ctx: StepContext) -> dict[str, Any]:
    identity = _check_serial(ctx)
    disk = imaging.pick_disk(identity, rule=ctx.disk_rule)
    return {"disk": {"name": disk.name, "size": disk.size_bytes, "removable": disk.removable}}


def _disk(ctx: StepContext) -> imaging.Disk:
    d = ctx.state.get("disk")
    if not d:
        raise CommandFailed("no target disk chosen")
    return imaging.Disk(str(d["name"]), int(d["size"]), bool(d["removable"]))


def step_stream(ctx: StepContext) -> dict[str, Any]:
    # Checked again right before writing: a retried or resumed run may face a laptop
    # swapped in the meantime, and the wrong laptop must never be written.
    _check_serial(ctx)
    cached = imaging.ensure_cached(ctx.image, ctx.cache_dir)
    disk = _disk(ctx)
    total = cached.size
    ctx.progress(0, total)
    written = imaging.stream_image(
        ctx.pe(),
        cached,
        disk,
        timeout=ctx.timeout,
        bucket=ctx.bucket,
        progress=lambda sent: ctx.progress(sent, total),
    )
    return {
        "written": {
            "bytes_sent": written.bytes_sent,
            "sha256": written.sent_sha256,
            "raw_size": cached.raw_size,
        }
    }


def step_verify(ctx: StepContext) -> dict[str, Any]:
    cached = imaging.ensure_cached(ctx.image, ctx.cache_dir)
    digest = imaging.verify(ctx.pe(), cached, _disk(ctx).name, timeout=ctx.timeout)
    return {"readback_sha256": digest}


SETUP_COMPLETE = (
    "@echo off\r\n"
    "rem Written by Masterline: enable WinRM over HTTPS once Windows Setup is done.\r\n"
    "powershell.exe -NoProfile -ExecutionPolicy Bypass "
    "-File C:\\masterline\\firstboot-winrm-https.ps1\r\n"
)


def unattend_xml(hostname: str) -> str:
    """The answer file's specialize pass naming the computer."""
    from xml.sax.saxutils import escape

    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<unattend xmlns="urn:schemas-microsoft-com:unattend">\n'
        '  <settings pass="specialize">\n'
        '    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" '
        'publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">\n'
        f"      <ComputerName>{escape(hostname)}</ComputerName>\n"
        "    </component>\n"
        "  </settings>\n"
        "</unattend>\n"
    )


def _write_files_script(root: str, files: dict[str, str]) -> bytes:
    """A ``sh -s`` script writing each file under ``root`` (a shell expression) in one
    round trip; the contents travel in quoted here-documents, never on a command line."""
    lines = ["set -e"]
    for i, (relative, text) in enumerate(files.items()):
        path = f"{root}/{shlex.quote(relative)}"
        folder = f"{root}/{shlex.quote(os.path.dirname(relative))}"
        marker = f"MASTERLINE_FILE_{i}_END"
        assert marker not in text
        lines += [f"mkdir -p {folder}", f"cat > {path} <<'{marker}'", text.rstrip("\n"), marker]
    return ("\n".join(lines) + "\n").encode()


FIRSTBOOT_WINRM = r"""# Written by Masterline before the first boot: enable WinRM over HTTPS.
$cert = New-SelfSignedCertificate -DnsName $env:COMPUTERNAME `
    -CertStoreLocation Cert:\LocalMachine\My
New-Item -Path WSMan:\LocalHost\Listener -Transport HTTPS -Address * `
    -CertificateThumbPrint $cert.Thumbprint -Force
New-NetFirewallRule -DisplayName "WinRM HTTPS" -Direction Inbound -LocalPort 5986 `
    -Protocol TCP -Action Allow
"""


def _offline_root(ctx: StepContext) -> str:
    """The mounted installed system, as a shell expression: the slot's ``offline_root``
    option, by default ``$MASTERLINE_PE_ROOT/mnt/target`` (where a real PE mounts it:
    for Windows its C: drive)."""
    root = ctx.endpoint_options.get("offline_root")
    return shlex.quote(str(root)) if root else f"{imaging.PE_ROOT}/mnt/target"


def step_installers(ctx: StepContext) -> dict[str, Any]:
    """Copy the client's store installers the plan needs onto the installed system's
    disk (``provisioning/installers.py``), paced by the site's bandwidth share like the
    stream: installers can be hundreds of MB (an Office or Teams MSI), so they are bulk
    bytes the site's link must share, and a step of their own holds a share only while
    it copies. Installers already there with the right sha256 are skipped.
    """
    from provisioning import installers

    _, plan = ctx.plan_loader()
    # Read (and verified) from the store before anything is written on the laptop: a
    # missing or tampered installer fails here with one line.
    placements = installers.prepare(plan, ctx.cache_dir)
    if not placements:
        return {}
    # The run's progress fields stay the image stream's (what the bench view and the API
    # show for a run); each installer written is in the step's result.
    written = installers.place(
        ctx.pe(),
        _offline_root(ctx),
        placements,
        timeout=ctx.timeout,
        check=_abort_check(ctx),
        bucket=ctx.bucket,
    )
    return {
        "installers": [
            {"app": p.app, "store": p.label, "sha256": p.sha256, "written": p.relative in written}
            for p in placements
        ]
    }


def step_offline_and_reboot(ctx: StepContext) -> dict[str, Any]:
    """Write the offline settings into the installed OS's files (hostname; for Windows
    the answer file and the first-boot WinRM-over-HTTPS script), then reboot into it.

    The files go under the offline root (``_offline_root``) and are overwritten on a
    re-run. A re-run after the laptop already rebooted (the worker was killed right
    after) finds it in its OS and is done.
    """
    options = ctx.endpoint_options
    _, plan = ctx.plan_loader()
    hostname = str(plan.hostname)
    if labboot.is_lab(options) and labboot.in_os(options):
        return {"hostname": hostname, "rebooted": True}
    files = (
        {"etc/hostname": hostname + "\n"}
        if ctx.os_family != "windows"
        else {
            # Windows Setup names the computer in its specialize pass from the answer
            # file, and runs SetupComplete.cmd as SYSTEM once setup is done: WinRM over
            # HTTPS is up at the first boot, before anyone logs on.
            "Windows/Panther/unattend.xml": unattend_xml(hostname),
            "Windows/Setup/Scripts/SetupComplete.cmd": SETUP_COMPLETE,
            "masterline/firstboot-winrm-https.ps1": FIRSTBOOT_WINRM,
        }
    )
    script = _write_files_script(_offline_root(ctx), files)
    res = ctx.pe().run("sh -s", timeout=ctx.timeout, stdin=script)
    if not res.ok:
        raise CommandFailed(f"offline settings failed: {res.stderr.strip()[:200]}")
    ctx.close()
    if labboot.is_lab(options):
        labboot.reboot_into_os(options)
    else:
        reboot = str(options.get("reboot_command") or "reboot")
        # The connection going away is what a reboot looks like.
        with contextlib.suppress(ConnectFailed):
            ctx.pe().run(f"{reboot} >/dev/null 2>&1 &", timeout=ctx.timeout)
        ctx.close()
    return {"hostname": hostname, "rebooted": True}


def _abort_check(ctx: StepContext) -> Callable[[], None]:
    def check() -> None:
        if ctx.cancelled():
            raise Aborted("aborted by a technician")

    return check


def step_configure(ctx: StepContext) -> dict[str, Any]:
    from provisioning.configure import ConfigureCancelled, configure_os
    from provisioning.plan import OsFamily

    target, plan = ctx.plan_loader()
    try:
        if ctx.waves is not None and target.os_family is OsFamily.LINUX:
            ctx.waves.configure(
                target, plan, on_event=ctx.on_event, timeout=ctx.timeout, cancel=ctx.cancelled
            )
        else:
            configure_os(
                target, plan, on_event=ctx.on_event, timeout=ctx.timeout, cancel=ctx.cancelled
            )
    except ConfigureCancelled as e:
        raise Aborted("aborted by a technician") from e
    return {"configured": True}


def step_gate(ctx: StepContext) -> dict[str, Any]:
    from provisioning.gate import run_gate

    target, plan = ctx.plan_loader()
    results = run_gate(
        target,
        plan,
        image_sha256=ctx.image.raw_sha256,
        readback_sha256=str(ctx.state.get("readback_sha256", "")),
    )
    checks = [{"name": r.name, "ok": bool(r.ok), "detail": str(r.detail)[:200]} for r in results]
    failed = [c for c in checks if not c["ok"]]
    if failed:
        raise GateFailed(failed)
    return {"checks": checks, "staged": staged_summary(plan)}


def staged_summary(plan: Any) -> dict[str, Any]:
    """What this laptop was given, as the help desk reads it later (``helpdesk``): the
    VPN kind and each tool with where it came from. The client's configuration may
    change after the laptop leaves; this record does not. Names only, never a secret."""

    def app(a: Any) -> dict[str, Any]:
        installer = a.installer.image_id if a.installer is not None else None
        return {
            "name": a.name,
            "package": a.package,
            "source": str(a.source),
            "image_id": installer,
        }

    vpn = plan.vpn
    return {
        "os_family": str(plan.os_family),
        "hostname": plan.hostname,
        "vpn": None if vpn is None else {"kind": str(vpn.kind), "name": vpn.name},
        "vpn_client": app(vpn.client_app) if vpn is not None and vpn.client_app else None,
        "apps": [app(a) for a in plan.apps],
    }


@dataclass(frozen=True)
class Step:
    name: str
    stage: DeviceState
    run: Callable[[StepContext], dict[str, Any]]
    timeout: float
    max_attempts: int = 4


STEPS: tuple[Step, ...] = (
    Step("identify", DeviceState.IMAGING, step_identify, timeout=60),
    Step("pick_disk", DeviceState.IMAGING, step_pick_disk, timeout=60),
    Step("stream", DeviceState.IMAGING, step_stream, timeout=3600, max_attempts=3),
    Step("verify", DeviceState.IMAGING, step_verify, timeout=1800),
    Step("installers", DeviceState.IMAGING, step_installers, timeout=1800, max_attempts=3),
    Step("reboot", DeviceState.IMAGING, step_offline_and_reboot, timeout=300),
    Step("configure", DeviceState.CONFIGURING, step_configure, timeout=1800, max_attempts=3),
    Step("gate", DeviceState.VERIFYING, step_gate, timeout=600, max_attempts=3),
)
STEP_NAMES: tuple[str, ...] = tuple(s.name for s in STEPS)


def resolve_image(session: Session, device: Device, *, explain: bool = True) -> tuple[int, str]:
    """(image id, OS family) of the image the device's client wants, if the client also
    has an active configuration.

    :raises NotReadyToProvision: no image or no configuration yet; with ``explain``, the
        message names everything that is missing.
    """
    from images import service as image_service
    from images.errors import NoImageForDevice, PinnedImageUnavailable

    # The configuration first, read once: scan-in asks this for every laptop received
    # (without ``explain``), and a client with no configuration yet then needs no image
    # lookup at all.
    config = (
        image_service.active_config(session, device.client_id)
        if device.client_id is not None
        else None
    )
    missing: list[str] = []
    if config is None:
        missing.append(f"client of {device.serial} has no active configuration")
        if not explain:
            raise NotReadyToProvision(missing[0])
    try:
        image = image_service.resolve_with_config(session, device, config)
    except (NoImageForDevice, PinnedImageUnavailable) as e:
        raise NotReadyToProvision("; ".join([e.message, *missing])) from e
    if missing:
        raise NotReadyToProvision(missing[0])
    assert image.id is not None
    return int(image.id), str(image.os_family)


def run_image(session: Session, image_id: int | None) -> Any:
    """The image a run was queued with (not whatever resolves now: a newer version
    published mid-run must not change what a resumed step writes or checks).

    :raises CommandFailed: it is gone from the catalogue.
    """
    from images import repository as image_repo

    image = image_repo.get_image(session, image_id) if image_id is not None else None
    if image is None:
        raise CommandFailed(f"image {image_id} of this run is no longer in the catalogue")
    return image


def image_source(image: Any) -> imaging.ImageSource:
    """Adapt the images domain's row to what imaging needs."""
    from images import store

    fmt = str(getattr(image, "format", "raw"))
    size = int(getattr(image, "stored_size", 0) or getattr(image, "size", 0))
    raw_size = int(getattr(image, "raw_size", 0) or size)
    stored_sha = str(getattr(image, "stored_sha256", "") or getattr(image, "sha256", ""))
    raw_sha = str(getattr(image, "raw_sha256", "") or stored_sha)
    return imaging.ImageSource(
        image_id=int(image.id),
        path=Path(store.path_of(image)),
        format=fmt,
        size=size,
        sha256=stored_sha,
        raw_size=raw_size,
        raw_sha256=raw_sha,
    )


def sleep_backoff(attempt: int, *, base: float, cap: float, check: Callable[[], None]) -> None:
    """Exponential backoff that still notices an abort every quarter second."""
    delay = min(cap, base * (2 ** max(0, attempt - 1)))
    end = time.monotonic() + delay
    while time.monotonic() < end:
        check()
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))
