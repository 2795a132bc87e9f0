"""Configure the installed OS as the client's configuration says, whichever its family.

Linux: the playbook ``playbooks/linux/configure.yml`` over SSH through ansible-runner
(``configure/linux.py``, ``configure/ansible.py``), host key pinned, one event per task
result. Windows: PowerShell scripts over WinRM (``configure/windows.py``), one event per
action. The family picks the implementation from one table (``CONFIGURATORS``); nothing
else branches on it.

Both are idempotent (a second run changes nothing) and keep secrets out of events,
logs and error messages. Failures are ``provisioning.errors`` types: retryable
(``ConnectFailed``, ``CommandTimedOut``) or fatal (``AuthFailed``, ``HostKeyMismatch``,
``CommandFailed``, ``InvalidPlan``), each message naming the step, the laptop and the
cause (the task or the app) on one line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from provisioning.configure.linux import EventCallback, check_family, configure_linux_batch
from provisioning.configure.plan import ConfigPlan, OsFamily, OsTarget
from provisioning.configure.windows import CancelCallback, configure_windows


class Configurator(Protocol):
    def __call__(
        self,
        target: OsTarget,
        plan: ConfigPlan,
        *,
        on_event: EventCallback,
        timeout: float,
        cancel: CancelCallback | None,
        work_dir: Path | None,
    ) -> None: ...


def configure_linux(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    on_event: EventCallback,
    timeout: float,
    cancel: CancelCallback | None,
    work_dir: Path | None,
) -> None:
    """One Linux laptop: a batch of one."""
    errors = configure_linux_batch(
        [(target, plan)], on_event=on_event, timeout=timeout, cancel=cancel, work_dir=work_dir
    )
    error = errors[target.label]
    if error is not None:
        raise error


def _configure_windows(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    on_event: EventCallback,
    timeout: float,
    cancel: CancelCallback | None,
    work_dir: Path | None,
) -> None:
    configure_windows(target, plan, on_event=on_event, timeout=timeout, cancel=cancel)


CONFIGURATORS: dict[OsFamily, Configurator] = {
    OsFamily.LINUX: configure_linux,
    OsFamily.WINDOWS: _configure_windows,
}


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

    ``on_event`` gets one dict per task/action (see
    ``provisioning.configure.ansible.run_playbook`` for the shape); none carries a
    secret. ``cancel`` is polled (about once a second, also while an Ansible task or a
    WinRM script is running) and stops the run. ``work_dir`` holds Ansible's private
    data directories (default ``<data_dir>/ansible``).

    :raises InvalidPlan: the plan does not fit the target (fatal).
    :raises ConnectFailed, CommandTimedOut: retryable.
    :raises AuthFailed, HostKeyMismatch, CommandFailed: fatal.
    :raises ConfigureCancelled: ``cancel`` returned True.
    """
    check_family(target, plan)
    CONFIGURATORS[target.os_family](
        target, plan, on_event=on_event, timeout=timeout, cancel=cancel, work_dir=work_dir
    )
