"""The ordered, idempotent steps of a provisioning run.

Each step is a plain function of a ``StepContext`` that returns what later steps need
(merged into ``ProvisioningRun.context``). Running a step twice is safe: the identity
check only reads, the stream rewrites the whole range, the readback only reads, an
installer already on the disk with its sha256 is skipped, the offline settings overwrite
the same files, configuration is idempotent (Ansible/DSC style), the gate only reads.
That is what lets a killed worker simply re-run the step that was saved before it
started.

Which device state each step runs in is fixed here (``Step.stage``); the engine moves the
device into that stage, through ``pipeline/stages.py``, before the step starts. What
differs between kinds of laptops (how one reboots, where its OS answers) is its boot
control's (``ctx.boot``); what differs between OS families is a table in ``configure/``.
Steps never read the database: the engine hands them everything in the context.

To add a step: write ``step_<name>(ctx) -> dict``, add its name to
``runs/states.py::STEP_NAMES`` at its place, and a ``Step`` here (same order).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inventory.codes import normalize_code
from inventory.states import DeviceState
from provisioning.bootcontrol.base import (
    REBOOT_ISSUED,
    SEALED_OS,
    BootControl,
    PeAccess,
    kernel_boot_id,
)
from provisioning.configure.plan import ConfigPlan, OsFamily, OsTarget
from provisioning.configure.reachable import OS_BOOT_SECONDS, wait_until_listening
from provisioning.errors import (
    Aborted,
    CommandFailed,
    ConfigureCancelled,
    DiskFull,
    GateFailed,
    IdentityMismatch,
)
from provisioning.imaging.cache import CachedImage, ImageSource, ensure_cached
from provisioning.imaging.identity import PE_ROOT, Disk, Identity, identify, pick_disk
from provisioning.imaging.pacing import TokenBucket
from provisioning.imaging.stream import stream_image, verify
from provisioning.pipeline.scheduling import STEP_RULES
from provisioning.runs.states import STEP_NAMES
from provisioning.transports.base import SessionSocket, Transport

if TYPE_CHECKING:
    # ansible-runner behind it: imported by the engine, which builds the waves.
    from provisioning.pipeline.relays import RelayWaves
    from provisioning.pipeline.waves import LinuxWaves

StepResult = dict[str, Any]
"""What a step learnt, merged into the run's context (JSON values)."""
PlanLoader = Callable[[], tuple[OsTarget, ConfigPlan]]


def _ssh_transport(pe: PeAccess) -> Transport:
    # paramiko is imported when a step first connects, not when this module is: the API
    # process must stay small in memory.
    from provisioning.transports.ssh import SSHTransport

    return SSHTransport(pe.endpoint)


@dataclass
class StepContext:
    """Everything a step may use, built by the engine from committed rows
    (``pipeline/context.py``)."""

    run_id: int
    serial: str
    os_family: str
    boot: BootControl
    """How this laptop reboots and where its OS answers."""
    pe_access: PeAccess
    """Where its provisioning environment answers, and the host key to trust."""
    disk_rule: str
    site_code: str
    cache_dir: Path
    image: ImageSource
    state: dict[str, Any]
    timeout: float
    progress: Callable[[int, int], None]
    """(sent, total); raises ``Aborted`` when the run was aborted."""
    on_event: Callable[[dict[str, Any]], None]
    plan_loader: PlanLoader
    """Returns (OsTarget, ConfigPlan) from the client's configuration."""
    cancelled: Callable[[], bool] = lambda: False
    """True once the run was aborted (polled by long steps such as configure)."""
    bucket: TokenBucket | None = None
    waves: LinuxWaves | None = None
    """This worker's configure waves (Linux laptops configured in one Ansible run)."""
    relays: RelayWaves | None = None
    """This worker's relay waves (None: relay imaging is off, every laptop streams)."""
    site_id: int = 0
    relay_mark: Callable[[dict[str, Any] | None], None] = lambda info: None
    """Records the run's place in a relay wave on its row (the bandwidth ledger)."""
    mark: Callable[[dict[str, Any]], None] = lambda values: None
    """Merges ``values`` into the run's context and commits at once: what a step must
    know on its re-run even if the worker dies before the step ends."""
    transport_factory: Callable[[PeAccess], Transport] = field(default=_ssh_transport)
    _transport: Transport | None = None

    def pe(self) -> Transport:
        if self._transport is None:
            self._transport = self.transport_factory(self.pe_access)
        return self._transport

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None


def _check_serial(ctx: StepContext) -> Identity:
    identity = identify(ctx.pe(), timeout=ctx.timeout)
    seen = normalize_code(identity.serial)
    if seen != normalize_code(ctx.serial):
        raise IdentityMismatch(
            f"identity mismatch: the laptop in the slot reports serial {seen or '(none)'}, "
            f"{ctx.serial} was scanned"
        )
    return identity


def step_identify(ctx: StepContext) -> StepResult:
    identity = _check_serial(ctx)
    return {"identity": identity.as_dict()}


def step_pick_disk(ctx: StepContext) -> StepResult:
    identity = _check_serial(ctx)
    disk = pick_disk(identity, rule=ctx.disk_rule)
    return {"disk": {"name": disk.name, "size": disk.size_bytes, "removable": disk.removable}}


def _disk(ctx: StepContext) -> Disk:
    d = ctx.state.get("disk")
    if not d:
        raise CommandFailed("no target disk chosen")
    return Disk(str(d["name"]), int(d["size"]), bool(d["removable"]))


def _cached(ctx: StepContext) -> CachedImage:
    return ensure_cached(ctx.image, ctx.cache_dir)


def step_stream(ctx: StepContext) -> StepResult:
    # Checked again right before writing: a retried or resumed run may face a laptop
    # swapped in the meantime, and the wrong laptop must never be written.
    _check_serial(ctx)
    cached = _cached(ctx)
    disk = _disk(ctx)
    if ctx.relays is not None:
        relayed = _relay(ctx, cached, disk)
        if relayed is not None:
            return relayed
    total = cached.size
    ctx.progress(0, total)
    written = stream_image(
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


def _relay(ctx: StepContext, cached: CachedImage, disk: Disk) -> StepResult | None:
    """The stream as a member of a relay wave (``pipeline/relays.py``); None when no
    other laptop of this image and site came in its window: a plain stream then."""
    from provisioning.pipeline.relays import MemberRequest

    assert ctx.relays is not None
    if cached.raw_size > disk.size_bytes:
        raise DiskFull(
            f"image needs {cached.raw_size} bytes, disk {disk.name} has {disk.size_bytes}"
        )
    # The session that just checked the serial: its local address is where this PE
    # reaches the worker, so where the wave's source listens (relay/address.py).
    pe = ctx.pe()
    session = pe.session_socket() if isinstance(pe, SessionSocket) else None
    return ctx.relays.stream(
        MemberRequest(
            run_id=ctx.run_id,
            image_id=ctx.image.image_id,
            site_id=ctx.site_id,
            endpoint=ctx.pe_access.endpoint,
            disk=disk.name,
            cached=cached,
            cache_dir=ctx.cache_dir,
            timeout=ctx.timeout,
            progress=ctx.progress,
            on_event=ctx.on_event,
            mark=ctx.relay_mark,
            bucket=ctx.bucket,
            session=session,
        )
    )


def step_verify(ctx: StepContext) -> StepResult:
    digest = verify(ctx.pe(), _cached(ctx), _disk(ctx).name, timeout=ctx.timeout)
    return {"readback_sha256": digest}


def _offline_root(ctx: StepContext) -> str:
    """The mounted installed system, as a shell expression: the boot control's
    ``offline_root``, by default ``$MASTERLINE_PE_ROOT/mnt/target`` (where a real PE
    mounts it: for Windows its C: drive)."""
    root = ctx.pe_access.offline_root
    return shlex.quote(root) if root else f"{PE_ROOT}/mnt/target"


def _mount_offline_root(ctx: StepContext) -> None:
    """The boot control makes the installed system reachable at the offline root (a
    real PE mounts the disk just written; a wired slot or the lab has it there). The disk
    is the boot control's to require: a wired slot's run resumed past pick_disk has none
    in its state and needs none."""
    chosen = ctx.state.get("disk")
    disk = str(chosen["name"]) if chosen else ""
    ctx.boot.prepare_offline(ctx.pe_access, ctx.pe(), disk=disk, timeout=ctx.timeout)


def _abort_check(ctx: StepContext) -> Callable[[], None]:
    def check() -> None:
        if ctx.cancelled():
            raise Aborted("aborted by a technician")

    return check


def step_installers(ctx: StepContext) -> StepResult:
    """Copy the client's store installers the plan needs onto the installed system's
    disk (``imaging/installers.py``), paced by the site's bandwidth share like the
    stream: installers can be hundreds of MB (an Office or Teams MSI), so they are bulk
    bytes the site's link must share, and a step of their own holds a share only while
    it copies. Installers already there with the right sha256 are skipped.
    """
    from provisioning.imaging import installers

    _, plan = ctx.plan_loader()
    # Read (and verified) from the store before anything is written on the laptop: a
    # missing or tampered installer fails here with one line.
    placements = installers.prepare(plan, ctx.cache_dir)
    if not placements:
        return {}
    _mount_offline_root(ctx)
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
            {
                "app": p.app,
                "store": p.label,
                "sha256": p.sha256,
                "size": p.size,
                "written": p.relative in written,
            }
            for p in placements
        ]
    }


def step_offline_and_reboot(ctx: StepContext) -> StepResult:
    """Write the offline settings into the installed OS's files
    (``configure/offline.py``: the hostname; for Windows the answer file and the
    first-boot WinRM-over-HTTPS script), then reboot into it (the boot control's way).

    The files go under the offline root and are overwritten on a re-run. A re-run after
    the laptop already rebooted (the worker was killed right after) finds it in its OS,
    when its boot control can tell, and is done: "reboot issued" is committed before the
    reboot (``REBOOT_ISSUED``), so the control knows the PE may be gone on purpose.
    """
    from provisioning.configure.offline import offline_files, write_files_script

    target, plan = ctx.plan_loader()
    hostname = plan.hostname
    if ctx.boot.in_installed_os(ctx.pe_access):
        return {"hostname": hostname, "rebooted": True}
    files = offline_files(target.os_family, hostname)
    _mount_offline_root(ctx)
    script = write_files_script(_offline_root(ctx), files)
    res = ctx.pe().run("sh -s", timeout=ctx.timeout, stdin=script)
    if not res.ok:
        raise CommandFailed(f"offline settings failed: {res.stderr.strip()[:200]}")
    sealed = ctx.boot.seal_installed_os(ctx.pe_access, ctx.pe(), timeout=ctx.timeout)
    kernel_boot = kernel_boot_id(ctx.pe(), ctx.timeout)  # on the same connection
    ctx.close()
    # Durably first: killed right after the reboot, the re-run must not wait for a PE
    # that is gone (see REBOOT_ISSUED), and whichever worker configures the installed
    # OS must find the host key the PE sealed in it (SEALED_OS).
    marks: dict[str, Any] = {REBOOT_ISSUED: {"pe_boot": ctx.pe_access.options.get("boot_id"),
                                             "kernel_boot": kernel_boot}}  # fmt: skip
    if sealed is not None:
        marks[SEALED_OS] = sealed
    ctx.mark(marks)
    ctx.boot.reboot_into_os(ctx.pe_access, ctx.pe, timeout=ctx.timeout)
    ctx.close()
    return {"hostname": hostname, "rebooted": True}


def step_configure(ctx: StepContext) -> StepResult:
    from provisioning.configure.apply import configure_os

    target, plan = ctx.plan_loader()
    wait_until_listening(target, timeout=min(OS_BOOT_SECONDS, ctx.timeout), cancelled=ctx.cancelled)
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


def step_gate(ctx: StepContext) -> StepResult:
    from provisioning.configure.gate import run_gate

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


def staged_summary(plan: ConfigPlan) -> StepResult:
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
    run: Callable[[StepContext], StepResult]
    timeout: float
    max_attempts: int = 4


def _step(name: str, stage: DeviceState, run: Callable[[StepContext], StepResult]) -> Step:
    # Timeout and attempts come from the scheduling rules, which the forecast's
    # simulator reads too: one copy.
    rule = STEP_RULES[name]
    return Step(name, stage, run, timeout=rule.timeout, max_attempts=rule.max_attempts)


STEPS: tuple[Step, ...] = (
    _step("identify", DeviceState.IMAGING, step_identify),
    _step("pick_disk", DeviceState.IMAGING, step_pick_disk),
    _step("stream", DeviceState.IMAGING, step_stream),
    _step("verify", DeviceState.IMAGING, step_verify),
    _step("installers", DeviceState.IMAGING, step_installers),
    _step("reboot", DeviceState.IMAGING, step_offline_and_reboot),
    _step("configure", DeviceState.CONFIGURING, step_configure),
    _step("gate", DeviceState.VERIFYING, step_gate),
)
if tuple(s.name for s in STEPS) != STEP_NAMES:  # pragma: no cover - a wiring mistake
    raise RuntimeError("pipeline STEPS and runs.states.STEP_NAMES disagree")
CONFIGURE_INDEX = STEP_NAMES.index("configure")
STREAM_INDEX = STEP_NAMES.index("stream")


def step_at(index: int) -> Step:
    """The step a run's ``step_index`` points at (the last one past the end)."""
    return STEPS[min(index, len(STEPS) - 1)]
