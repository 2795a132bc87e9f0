"""The READY gate, the last step. Every check the client's configuration names is evaluated and
reported, pass or fail; the pipeline turns any failed one into FAILED_VERIFYING with each
failed check listed (``failure_reason``).

The checks read the laptop back independently of what the configure step reported:
Linux through ``playbooks/linux/verify.yml`` (same pinned SSH as configure), Windows
through the same WinRM reads the configurator uses before changing anything. A laptop
that cannot be reached raises the transport's error (retryable or fatal) instead of
failing checks: "unreachable" is not "not configured".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from core.settings import get_settings
from provisioning.configure.ansible import HostRun, private_dir_for, run_playbook
from provisioning.configure.plan import AppPlan, Check, ConfigPlan, OsFamily, OsTarget, VpnKind

EventCallback = Callable[[dict[str, Any]], None]
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str


def failure_reason(results: Sequence[CheckResult]) -> str | None:
    """One line listing every failed check, or None when all passed."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return None
    return "gate failed: " + "; ".join(f"{r.name}: {r.detail}" for r in failed)


def run_gate(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    image_sha256: str,
    readback_sha256: str,
    on_event: EventCallback | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    work_dir: Path | None = None,
) -> list[CheckResult]:
    """Evaluate ``plan.checks`` on the laptop; one result per check (one per app).

    :raises ConnectFailed, CommandTimedOut: the laptop could not be read (retryable).
    :raises AuthFailed, HostKeyMismatch, CommandFailed: fatal.
    """
    results: list[CheckResult] = []
    if Check.IMAGE_HASH in plan.checks:
        results.append(image_hash_check(image_sha256, readback_sha256))
    os_checks = [c for c in plan.checks if c is not Check.IMAGE_HASH]
    if not os_checks:
        return results
    events = on_event or (lambda _e: None)
    observe = _OBSERVERS[target.os_family]
    observed = observe(target, plan, on_event=events, timeout=timeout, work_dir=work_dir)
    for check in os_checks:
        results.extend(_evaluate(check, plan, observed))
    return results


def image_hash_check(image_sha256: str, readback_sha256: str) -> CheckResult:
    image, back = image_sha256.strip().lower(), readback_sha256.strip().lower()
    if not image or not back:
        return CheckResult("image_hash", False, "no image or read-back hash recorded")
    if image == back:
        return CheckResult("image_hash", True, f"read-back sha256 matches the image ({image[:12]})")
    return CheckResult(
        "image_hash", False, f"read-back sha256 {back[:12]} differs from the image's {image[:12]}"
    )


@dataclass
class _Observed:
    hostname: str | None
    vpn_present: bool | None  # None: no VPN in the plan
    apps: dict[str, bool]


def _evaluate(check: Check, plan: ConfigPlan, seen: _Observed) -> list[CheckResult]:
    if check is Check.HOSTNAME:
        ok = seen.hostname is not None and seen.hostname.lower() == plan.hostname.lower()
        detail = (
            f"hostname is {plan.hostname}"
            if ok
            else f"hostname is {seen.hostname or 'unreadable'}, expected {plan.hostname}"
        )
        return [CheckResult("hostname", ok, detail)]
    if check is Check.VPN_PROFILE:
        if plan.vpn is None:
            return [CheckResult("vpn_profile", True, "no VPN in the configuration")]
        ok = bool(seen.vpn_present)
        what = f"{plan.vpn.kind.value} profile {plan.vpn.name!r}"
        return [CheckResult("vpn_profile", ok, f"{what} {'present' if ok else 'missing'}")]
    out = []
    for app in plan.all_apps():
        present = seen.apps.get(app.name, False)
        state = "present" if present else "missing"
        out.append(CheckResult(f"app:{app.name}", present, f"{app.package} {state}"))
    return out


# -- Linux ------------------------------------------------------------------------------


def _observe_linux(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    on_event: EventCallback,
    timeout: float,
    work_dir: Path | None,
) -> _Observed:
    from provisioning.configure.linux import (
        VERIFY_PLAYBOOK,
        linux_hostvars,
        outcome_error,
        playbook_path,
    )

    hosts = [HostRun(target=target, hostvars=linux_hostvars(target, plan))]
    base = (work_dir or get_settings().data_dir) / "ansible"
    outcome = run_playbook(
        playbook_path(VERIFY_PLAYBOOK),
        hosts,
        on_event=on_event,
        timeout=timeout,
        private_dir=private_dir_for(hosts, base),
    )
    error = outcome_error(outcome, target, step="verify", timeout=timeout)
    if error is not None:
        raise error
    results = outcome.hosts[hosts[0].alias].results
    return _Observed(
        hostname=_slurped(results.get("Read hostname", [])),
        vpn_present=(
            None
            if plan.vpn is None
            else any(_stat_exists(r) for r in results.get("Look for VPN profile", []))
        ),
        apps=_linux_apps(plan.all_apps(), results),
    )


def _slurped(results: Sequence[Mapping[str, Any]]) -> str | None:
    for res in results:
        content = res.get("content")
        if isinstance(content, str):
            try:
                return base64.b64decode(content).decode("utf-8", "replace").strip()
            except (binascii.Error, ValueError):
                return None
    return None


def _stat_exists(res: Mapping[str, Any]) -> bool:
    stat = res.get("stat")
    return isinstance(stat, Mapping) and bool(stat.get("exists"))


def _linux_apps(
    apps: Sequence[AppPlan], results: Mapping[str, list[dict[str, Any]]]
) -> dict[str, bool]:
    seen: dict[str, bool] = {a.name: False for a in apps}
    for res in results.get("Look for app files", []):
        name = _item_name(res)
        if name in seen:
            seen[name] = _stat_exists(res)
    for res in results.get("Query app packages", []):
        name = _item_name(res)
        if name in seen:
            seen[name] = res.get("rc") == 0 and "install ok installed" in str(res.get("stdout"))
    return seen


def _item_name(res: Mapping[str, Any]) -> str | None:
    item = res.get("item")
    return str(item.get("name")) if isinstance(item, Mapping) else None


# -- Windows ----------------------------------------------------------------------------


def _observe_windows(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    on_event: EventCallback,
    timeout: float,
    work_dir: Path | None,
) -> _Observed:
    from provisioning.configure.vpn import profile_path
    from provisioning.configure.windows import WindowsConfigurator, winrm_transport

    with winrm_transport(target) as transport:
        reader = WindowsConfigurator(transport, target, plan, on_event=on_event, timeout=timeout)
        name_result = reader.run(_ps("$env:COMPUTERNAME"))
        hostname = name_result.stdout.strip() if name_result.ok else None
        vpn_present: bool | None = None
        if plan.vpn is not None:
            if plan.vpn.kind is VpnKind.IKEV2:
                vpn_present = reader.vpn_connection(plan.vpn) is not None
            else:
                path = profile_path(plan.vpn, OsFamily.WINDOWS)
                vpn_present = path is not None and reader.path_exists(path)
        apps = {app.name: reader.app_present(app) for app in plan.all_apps()}
    on_event(
        {"kind": "task", "host": target.label, "task": "Verify", "status": "ok", "changed": False}
    )
    return _Observed(hostname=hostname, vpn_present=vpn_present, apps=apps)


class _Observer(Protocol):
    def __call__(
        self,
        target: OsTarget,
        plan: ConfigPlan,
        *,
        on_event: EventCallback,
        timeout: float,
        work_dir: Path | None,
    ) -> _Observed: ...


# How each OS family's laptop is read back (one table, as configure/apply.py's).
_OBSERVERS: dict[OsFamily, _Observer] = {
    OsFamily.LINUX: _observe_linux,
    OsFamily.WINDOWS: _observe_windows,
}


def _ps(statement: str) -> str:
    from provisioning.configure.windows import script

    return script(statement)
