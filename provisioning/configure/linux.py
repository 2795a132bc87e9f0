"""Linux configuration: the playbook ``playbooks/linux/configure.yml`` over SSH through
ansible-runner (``configure/ansible.py``), one run for one laptop or for a batch, with
the host key pinned and one event per task result; and what a playbook run amounts to
for each laptop (``outcome_error``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from provisioning.configure.plan import ConfigPlan, OsFamily, OsTarget
from provisioning.configure.vpn import linux_packages, linux_service, profile_files
from provisioning.errors import (
    AuthFailed,
    CommandFailed,
    CommandTimedOut,
    ConfigureCancelled,
    ConnectFailed,
    HostKeyMismatch,
    InvalidPlan,
    ProvisioningError,
)

EventCallback = Callable[[dict[str, Any]], None]

CONFIGURE_PLAYBOOK = "linux/configure.yml"
VERIFY_PLAYBOOK = "linux/verify.yml"
APP_MARKER_DIR = "/var/lib/masterline/apps"


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
        check_family(target, plan)
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


def check_family(target: OsTarget, plan: ConfigPlan) -> None:
    if target.os_family is not plan.os_family:
        raise InvalidPlan(
            f"the plan is for {plan.os_family.value} but {target.label} runs "
            f"{target.os_family.value}"
        )
