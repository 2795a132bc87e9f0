"""The configure step: configure the installed OS as the client's configuration says.

Linux: the playbook ``playbooks/linux/configure.yml`` over SSH through ansible-runner
(``provisioning/configure/ansible.py``), host key pinned, one event per task result.
Windows: PowerShell scripts over WinRM (``provisioning/transports/winrm.py`` and
``provisioning/configure/windows.py``), one event per action.

Both are idempotent (a second run changes nothing) and keep secrets out of events,
logs and error messages. Failures are ``provisioning.errors`` types: retryable
(``ConnectFailed``, ``CommandTimedOut``) or fatal (``AuthFailed``, ``HostKeyMismatch``,
``CommandFailed``, ``InvalidPlan``), each message naming the step, the laptop and the
cause (the task or the app) on one line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import get_settings
from provisioning.configure.ansible import (
    CancelCallback,
    HostOutcome,
    HostRun,
    PlaybookOutcome,
    host_alias,
    private_dir_for,
    run_playbook,
)
from provisioning.configure.plan import ConfigPlan, InvalidPlan, OsFamily, OsTarget
from provisioning.configure.vpn import linux_packages, linux_service, profile_files
from provisioning.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimedOut,
    ConnectFailed,
    HostKeyMismatch,
    ProvisioningError,
)

EventCallback = Callable[[dict[str, Any]], None]

CONFIGURE_PLAYBOOK = "linux/configure.yml"
VERIFY_PLAYBOOK = "linux/verify.yml"
APP_MARKER_DIR = "/var/lib/masterline/apps"


class ConfigureCancelled(ProvisioningError):
    """The run was aborted while the configuration was being applied."""


def configure_os(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    on_event: EventCallback,
    timeout: float,
    cancel: CancelCallback | None = None,
    work_dir: Path | None = None,
) -> None:
    """Apply ``plan`` to the laptop behind ``target``; returns when all of it is applied.

    ``on_event`` gets one dict per task/action (see ``provisioning.configure.ansible.run_playbook``
    for the shape); none carries a secret. ``cancel`` is polled (about once a second,
    also while an Ansible task or a WinRM script is running) and stops the run.
    ``work_dir`` holds Ansible's private data directories (default
    ``<data_dir>/ansible``).

    :raises InvalidPlan: the plan does not fit the target (fatal).
    :raises ConnectFailed, CommandTimedOut: retryable.
    :raises AuthFailed, HostKeyMismatch, CommandFailed: fatal.
    :raises ConfigureCancelled: ``cancel`` returned True.
    """
    _check_family(target, plan)
    if target.os_family is OsFamily.LINUX:
        errors = configure_linux_batch(
            [(target, plan)], on_event=on_event, timeout=timeout, cancel=cancel, work_dir=work_dir
        )
        error = errors[target.label]
        if error is not None:
            raise error
        return
    from provisioning.configure.windows import configure_windows

    configure_windows(target, plan, on_event=on_event, timeout=timeout, cancel=cancel)


def configure_linux_batch(
    pairs: Sequence[tuple[OsTarget, ConfigPlan]],
    *,
    on_event: EventCallback,
    timeout: float,
    cancel: CancelCallback | None = None,
    work_dir: Path | None = None,
    forks: int | None = None,
) -> dict[str, ProvisioningError | None]:
    """Configure several Linux laptops with ONE ansible-playbook run (``--limit`` all of
    them), and report per laptop (by ``target.label``): ``None`` or its error.

    One run per laptop costs ansible-playbook's start-up (about 2-3 s of CPU) each time; a
    worker that configures a wave of laptops can batch them and still fail them one by
    one from the per-host events.
    """
    for target, plan in pairs:
        _check_family(target, plan)
        if target.os_family is not OsFamily.LINUX:
            raise InvalidPlan(f"{target.label} is not a Linux target")
    hosts = [
        HostRun(target=t, hostvars=linux_hostvars(t, p), secrets=linux_secrets(p)) for t, p in pairs
    ]
    scrub = [s for _, p in pairs for s in p.secret_values()]
    base = (work_dir or get_settings().data_dir) / "ansible"
    outcome = run_playbook(
        playbook_path(CONFIGURE_PLAYBOOK),
        hosts,
        on_event=on_event,
        timeout=timeout,
        private_dir=private_dir_for(hosts, base),
        cancel=cancel,
        scrub=scrub,
        forks=forks,
    )
    return {t.label: outcome_error(outcome, t, step="configure", timeout=timeout) for t, _ in pairs}


@dataclass
class _Member:
    target: OsTarget
    plan: ConfigPlan
    on_event: EventCallback
    timeout: float
    cancel: CancelCallback | None
    error: ProvisioningError | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def cancelled(self) -> bool:
        return self.cancel is not None and bool(self.cancel())


@dataclass
class _Wave:
    members: list[_Member] = field(default_factory=list)
    closed: bool = False


class LinuxWaves:
    """Gathers the Linux laptops that reach their configure step in this worker together
    into one ansible-runner run (``configure_linux_batch``).

    Why: one ansible-playbook run per laptop pays its start-up each time, 2.8x the
    controller CPU and 1.4x the wall time of one run for five laptops
    (docs/benchmarks.md, "Configure"); laptops streamed together reach configure
    together. Each laptop still gets its own verdict, events and retries: its run's
    thread waits for its own result. The first laptop of a wave leads it: it waits
    until every laptop ``pending`` counts has joined, or ``window`` seconds, or a full
    wave, then runs it and hands every member its result.

    A member aborted during the wave stops the ansible run (a run has one cancel); the
    members that were not aborted are then configured again, in a smaller wave, without
    it (the playbook is idempotent), so one technician's abort costs the others time,
    never their run.
    """

    def __init__(
        self,
        *,
        window: float = 1.0,
        max_size: int = 10,
        work_dir: Path | None = None,
        pending: Callable[[], int] | None = None,
    ) -> None:
        self.window = window
        self.max_size = max_size
        self.work_dir = work_dir
        """As ``configure_os``'s: where Ansible's private data dirs go."""
        self.pending = pending
        """How many laptops are in configure or on their way to it (the worker's count);
        a leader stops waiting once all of them have joined a wave."""
        self._lock = threading.Lock()
        self._open: _Wave | None = None
        self._joined = 0  # laptops inside ``configure`` right now

    def configure(
        self,
        target: OsTarget,
        plan: ConfigPlan,
        *,
        on_event: EventCallback,
        timeout: float,
        cancel: CancelCallback | None = None,
    ) -> None:
        """As ``configure_os`` for one Linux laptop, in a wave with its neighbours."""
        _check_family(target, plan)  # this laptop's own error, before it joins
        me = _Member(target, plan, on_event, timeout, cancel)
        with self._lock:
            self._joined += 1
        try:
            self._join(me)
        finally:
            with self._lock:
                self._joined -= 1
        if me.error is not None:
            raise me.error

    def _join(self, me: _Member) -> None:
        with self._lock:
            wave = self._open
            lead = wave is None or wave.closed
            if lead:
                wave = self._open = _Wave()
            assert wave is not None
            wave.members.append(me)
            if len(wave.members) >= self.max_size:
                wave.closed = True
        if lead:
            self._lead(wave)
        # The leader sets every member's result, whatever happens to it; the bound is
        # the wave's whole budget: the window, every re-run, and a margin.
        elif not me.done.wait(self.window + me.timeout * self.max_size + 60):
            me.error = CommandTimedOut(f"configure {me.target.label}: its wave never finished")

    def _lead(self, wave: _Wave) -> None:
        deadline = time.monotonic() + self.window
        while time.monotonic() < deadline and not wave.closed and self._others_coming():
            time.sleep(0.05)
        with self._lock:
            wave.closed = True
            if self._open is wave:
                self._open = None
        try:
            self._run(list(wave.members))
        finally:
            for m in wave.members:
                if not m.done.is_set():
                    m.error = m.error or CommandFailed(
                        f"configure {m.target.label}: its wave stopped unexpectedly"
                    )
                    m.done.set()

    def _others_coming(self) -> bool:
        """Whether a laptop of this worker may still join (always, without a count)."""
        if self.pending is None:
            return True
        with self._lock:
            return self.pending() > self._joined

    def _run(self, members: list[_Member]) -> None:
        remaining = members
        # Each pass ends the wave or removes at least one aborted member.
        for _ in range(len(members)):
            by_label = {m.target.label: m for m in remaining}

            def on_event(event: dict[str, Any], by_label: dict[str, _Member] = by_label) -> None:
                member = by_label.get(str(event.get("host", "")))
                for m in [member] if member is not None else by_label.values():
                    m.on_event(event)

            def cancel(group: list[_Member] = remaining) -> bool:
                return any(m.cancelled() for m in group)

            note = f"one Ansible run for {len(remaining)} laptop(s): {', '.join(sorted(by_label))}"
            for m in remaining:  # in each run's log: whom it was configured with
                m.on_event({"kind": "wave", "laptops": len(remaining), "message": note})
            try:
                errors = configure_linux_batch(
                    [(m.target, m.plan) for m in remaining],
                    on_event=on_event,
                    timeout=max(m.timeout for m in remaining),
                    cancel=cancel,
                    work_dir=self.work_dir,
                )
            except ProvisioningError as e:  # the wave as a whole (its private dir, ...)
                for m in remaining:
                    m.error = e
                    m.done.set()
                return
            rerun: list[_Member] = []
            for m in remaining:
                error = errors[m.target.label]
                if isinstance(error, ConfigureCancelled) and not m.cancelled():
                    rerun.append(m)  # stopped for another member's abort
                    continue
                m.error = error
                m.done.set()
            if not rerun:
                return
            remaining = rerun


def playbook_path(name: str) -> Path:
    return get_settings().playbooks_dir / name


def linux_hostvars(target: OsTarget, plan: ConfigPlan) -> dict[str, Any]:
    """The playbooks' non-secret variables for one laptop (see configure.yml)."""
    vpn: dict[str, Any] | None = None
    if plan.vpn is not None:
        files = profile_files(plan.vpn, OsFamily.LINUX)
        dirs: dict[str, str] = {}
        for f in files:
            parent = f.path.rsplit("/", 1)[0]
            # A directory holding a private key is closed to others as well.
            dirs[parent] = "0700" if f.path.startswith("/etc/wireguard/") else "0755"
        vpn = {
            "kind": plan.vpn.kind.value,
            "name": plan.vpn.name,
            "service": linux_service(plan.vpn),
            "packages": linux_packages(plan.vpn),
            "dirs": [{"path": p, "mode": m} for p, m in dirs.items()],
            "files": [{"path": f.path, "mode": f.mode} for f in files],
        }
    return {
        "masterline_hostname": plan.hostname,
        # A real laptop has a package manager; the lab's installed root has none, so an
        # installed app is recorded as a marker file there (documented stand-in).
        "package_mode": "marker" if target.target_root else "apt",
        "masterline_vpn": vpn,
        "masterline_apps": [
            {
                "name": a.name,
                "key": a.key,
                "source": a.source.value,
                "package": a.package,
                "verify": a.verify_kind,
                "verify_arg": a.verify_arg,
            }
            for a in plan.all_apps()
        ],
    }


def linux_secrets(plan: ConfigPlan) -> dict[str, Any]:
    if plan.vpn is None:
        return {}
    files = profile_files(plan.vpn, OsFamily.LINUX)
    return {"vpn_files": [{"path": f.path, "mode": f.mode, "content": f.content} for f in files]}


def outcome_error(
    outcome: PlaybookOutcome, target: OsTarget, *, step: str, timeout: float
) -> ProvisioningError | None:
    """The error one laptop's part of a playbook run amounts to, or None."""
    where = f"{step} {target.label}"
    if outcome.status == "canceled":
        return ConfigureCancelled(f"{where}: cancelled")
    host = outcome.hosts.get(host_alias(target), HostOutcome())
    if host.failure is not None:
        f = host.failure
        if f.kind == "unreachable":
            return _unreachable(where, f.message)
        item = f" for {f.item!r}" if f.item else ""
        return CommandFailed(f"{where}: task '{f.task}'{item} failed: {f.message}")
    if outcome.status == "timeout":
        return CommandTimedOut(f"{where}: not finished within {timeout:g} s")
    # In a batch, another laptop's failure fails the run; this one's recap decides.
    if not host.completed:
        return CommandFailed(
            f"{where}: ansible-playbook failed (rc {outcome.rc}): {outcome.tail or 'no output'}"
        )
    return None


def _unreachable(where: str, message: str) -> ProvisioningError:
    text = message.lower()
    if "host key verification failed" in text or "remote host identification" in text:
        return HostKeyMismatch(f"{where}: SSH host key does not match the pinned one")
    if "permission denied" in text:
        return AuthFailed(f"{where}: SSH key rejected")
    return ConnectFailed(f"{where}: unreachable ({message[:200]})")


def _check_family(target: OsTarget, plan: ConfigPlan) -> None:
    if target.os_family is not plan.os_family:
        raise InvalidPlan(
            f"the plan is for {plan.os_family.value} but {target.label} runs "
            f"{target.os_family.value}"
        )
