"""Windows configuration over WinRM: small PowerShell scripts, one action each.

Scripts use one statement per line and only a small vocabulary (``Rename-Computer``,
``Add-VpnConnection``, ``Get-VpnConnection``, ``Set-Content``, ``Test-Path``,
``Get-Content``, ``winget``, ``msiexec`` through ``Start-Process``, ``Get-Service``,
``Set-Service``, ``Start-Service``), which is also what the device lab's WinRM endpoint
interprets. Every interpolated value goes through :func:`ps_quote`: single-quoted, ``'``
doubled, control characters and PowerShell's other quote characters refused.

Each action first reads the current state and changes it only when it differs, so a
second run changes nothing. A script that carries a secret (a VPN profile) is never
logged, never put in an event, and its output is scrubbed before it reaches an error.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr

from provisioning.configure.plan import (
    AppPlan,
    AppSource,
    ConfigPlan,
    OsFamily,
    OsTarget,
    VpnKind,
    VpnPlan,
)
from provisioning.configure.vpn import ProfileFile, profile_files
from provisioning.errors import (
    CommandFailed,
    CommandTimedOut,
    ConfigureCancelled,
    InvalidPlan,
)
from provisioning.transports.base import CommandResult
from provisioning.transports.winrm import CallCancelled, InsecureTransport, WinRMTransport

EventCallback = Callable[[dict[str, Any]], None]
CancelCallback = Callable[[], bool]

# msiexec exit codes that mean installed: success, reboot initiated, reboot required.
MSI_SUCCESS = {0, 1641, 3010}
# winget install of an app already there: 0x8A15002B "No available upgrade found".
WINGET_ALREADY_INSTALLED = -1978335189
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029\u2018\u2019\u201a\u201b]")
_IKEV2_TUNNELS = {"ikev2": "Ikev2", "l2tp": "L2tp", "sstp": "Sstp", "pptp": "Pptp"}


def ps_quote(value: str) -> str:
    """A PowerShell single-quoted literal for ``value``.

    :raises InvalidPlan: newlines or control characters (one statement per line), or
        the typographic quotes PowerShell also treats as string delimiters.
    """
    if _BAD_CHARS.search(value):
        raise InvalidPlan("a value sent to PowerShell contains a control or quote character")
    return "'" + value.replace("'", "''") + "'"


def script(*statements: str) -> str:
    """A script that stops at the first error."""
    return "\n".join(["$ErrorActionPreference = 'Stop'", *statements]) + "\n"


class WindowsConfigurator:
    """Applies (and reads back) a plan on one Windows laptop through one WinRM shell."""

    def __init__(
        self,
        transport: WinRMTransport,
        target: OsTarget,
        plan: ConfigPlan,
        *,
        on_event: EventCallback,
        timeout: float,
        cancel: CancelCallback | None = None,
    ) -> None:
        self.t = transport
        self.target = target
        self.plan = plan
        self.on_event = on_event
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.cancel = cancel
        self.secrets = plan.secret_values()

    # -- plumbing ---------------------------------------------------------------------

    def run(self, body: str, *, secret: bool = False, raw: bool = False) -> CommandResult:
        """Run one script within the step's deadline. Its output is scrubbed of the
        plan's secrets unless ``raw`` (only for a comparison that never leaves here).

        :raises CommandTimedOut: the deadline has passed.
        :raises ConfigureCancelled: the run was aborted.
        """
        if self.cancel is not None and self.cancel():
            raise ConfigureCancelled(f"configure {self.target.label}: cancelled")
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise CommandTimedOut(
                f"configure {self.target.label}: not finished within {self.timeout:g} s"
            )
        result = self.t.run_ps(body, timeout=left)
        if not raw and (secret or self.secrets):
            result = CommandResult(
                result.rc, self._scrub(result.stdout), self._scrub(result.stderr)
            )
        return result

    def event(self, task: str, status: str, *, item: str | None = None, **extra: Any) -> None:
        record: dict[str, Any] = {
            "kind": "task",
            "host": self.target.label,
            "task": task,
            "status": status,
            "changed": status == "changed",
        }
        if item is not None:
            record["item"] = item
        record.update(extra)
        self.on_event(record)

    def fail(
        self,
        task: str,
        what: str,
        result: CommandResult,
        *,
        item: str | None = None,
        secret: bool = False,
    ) -> None:
        """Record the failure and raise it, naming the task (and the app).

        For a script that carried a secret, the answer is cut at its first quoted
        value: an endpoint may echo the statement it choked on.
        """
        # PowerShell errors are on stderr; native tools (winget) end stdout with theirs.
        detail = _first_line(result.stderr) or _last_line(result.stdout)
        if secret:
            detail = detail.split("'", 1)[0].strip()
        code = f"exit code {result.rc}"
        if detail and str(result.rc) not in detail:
            detail = f"{detail} ({code})"
        message = self._scrub(f"{what}: {detail or code}")
        self.event(task, "failed", item=item, message=message)
        raise CommandFailed(f"configure {self.target.label}: {message}")

    def _scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
            for line in secret.splitlines():
                if len(line.strip()) >= 8:
                    text = text.replace(line.strip(), "***")
        return text

    # -- reading state (shared with the gate) -----------------------------------------

    def computer_name(self) -> str:
        result = self.run(script("$env:COMPUTERNAME"))
        if not result.ok:
            self.fail("Set computer name", "cannot read the computer name", result)
        return result.stdout.strip()

    def vpn_connection(self, vpn: VpnPlan) -> dict[str, Any] | None:
        """The VPN connection named like the plan's, or None if there is none."""
        result = self.run(
            script(f"Get-VpnConnection -Name {ps_quote(vpn.name)} | ConvertTo-Json -Compress")
        )
        if not result.ok or not result.stdout.strip():
            return None
        try:
            data = json.loads(result.stdout)
        except json.JSONDecodeError:
            return None
        return data if isinstance(data, dict) else None

    def path_exists(self, path: str) -> bool:
        result = self.run(script(f"Test-Path -Path {ps_quote(path)}"))
        return result.ok and result.stdout.strip().lower() == "true"

    def app_present(self, app: AppPlan) -> bool:
        if app.verify_kind == "path":
            return self.path_exists(app.verify_arg)
        if app.verify_kind == "service":
            return self.service_status(app.verify_arg) is not None
        result = self.run(script(f"winget list --id {ps_quote(app.verify_arg)} --exact"))
        return result.ok

    def service_status(self, name: str) -> str | None:
        result = self.run(
            script(f"Get-Service -Name {ps_quote(name)} | Select-Object -ExpandProperty Status")
        )
        return result.stdout.strip() if result.ok and result.stdout.strip() else None

    # -- applying ---------------------------------------------------------------------

    def apply(self) -> None:
        self.set_computer_name()
        for app in self.plan.all_apps():
            self.install_app(app)
        if self.plan.vpn is not None:
            self.configure_vpn(self.plan.vpn)

    def set_computer_name(self) -> None:
        task = "Set computer name"
        current = self.computer_name()
        if current.lower() == self.plan.hostname.lower():
            self.event(task, "ok")
            return
        result = self.run(script(f"Rename-Computer -NewName {ps_quote(self.plan.hostname)} -Force"))
        if not result.ok:
            self.fail(task, f"Rename-Computer to {self.plan.hostname} failed", result)
        self.event(task, "changed")

    def install_app(self, app: AppPlan) -> None:
        task = "Install app"
        if self.app_present(app):
            started = self.ensure_service(app)
            self.event(task, "changed" if started else "ok", item=app.name)
            return
        if app.source is AppSource.MSI:
            # /qn is always there; the quiet switches a configuration repeats are dropped.
            extra = [a for a in app.silent_args if a.lower() not in ("/qn", "/quiet")]
            args = ",".join(ps_quote(a) for a in ("/i", app.package, "/qn", *extra))
            result = self.run(
                script(
                    f"Start-Process -FilePath 'msiexec.exe' -ArgumentList {args} -Wait -PassThru"
                    " | Select-Object -ExpandProperty ExitCode"
                )
            )
            code = _int(result.stdout)
            if not result.ok or code not in MSI_SUCCESS:
                shown = CommandResult(code if code is not None else result.rc, "", result.stderr)
                self.fail(task, f"app {app.name!r} install failed (msiexec)", shown, item=app.name)
        else:
            result = self.run(
                script(
                    f"winget install --id {ps_quote(app.package)} --silent"
                    " --accept-package-agreements --accept-source-agreements"
                )
            )
            # "No available upgrade found": installed meanwhile (by the last attempt).
            if not result.ok and result.rc != WINGET_ALREADY_INSTALLED:
                self.fail(task, f"app {app.name!r} install failed (winget)", result, item=app.name)
        if not self.app_present(app):
            self.fail(
                task,
                f"app {app.name!r} is not present after its installer succeeded",
                CommandResult(1, "", ""),
                item=app.name,
            )
        self.ensure_service(app)
        self.event(task, "changed", item=app.name)

    def ensure_service(self, app: AppPlan) -> bool:
        """An app verified by its service gets that service started, and started at
        boot. Returns whether anything changed."""
        if app.verify_kind != "service":
            return False
        name = app.verify_arg
        status = self.service_status(name)
        if status is None or status.lower() == "running":
            return False
        for statement in (
            f"Set-Service -Name {ps_quote(name)} -StartupType 'Automatic'",
            f"Start-Service -Name {ps_quote(name)}",
        ):
            result = self.run(script(statement))
            if not result.ok:
                self.fail("Install app", f"service {name} of app {app.name!r}", result)
        return True

    def configure_vpn(self, vpn: VpnPlan) -> None:
        task = "Configure VPN"
        if vpn.kind is VpnKind.IKEV2:
            self.add_vpn_connection(vpn)
            return
        changed = False
        for f in profile_files(vpn, OsFamily.WINDOWS):
            changed |= self.write_secret_file(f)
        self.event(task, "changed" if changed else "ok", item=vpn.name)

    def add_vpn_connection(self, vpn: VpnPlan) -> None:
        task = "Configure VPN"
        tunnel = _IKEV2_TUNNELS.get((vpn.settings.get("tunnel_type") or "ikev2").lower())
        if tunnel is None:
            raise InvalidPlan(f"VPN {vpn.name}: tunnel_type must be one of Ikev2, L2tp, Sstp, Pptp")
        existing = self.vpn_connection(vpn)
        if existing is not None:
            if str(existing.get("ServerAddress", "")).lower() != vpn.server.lower():
                self.fail(
                    task,
                    f"VPN connection {vpn.name!r} exists with another server "
                    f"({existing.get('ServerAddress')})",
                    CommandResult(1, "", ""),
                    item=vpn.name,
                )
            self.event(task, "ok", item=vpn.name)
            return
        parts = [
            f"Add-VpnConnection -Name {ps_quote(vpn.name)}",
            f"-ServerAddress {ps_quote(vpn.server)}",
            f"-TunnelType {ps_quote(tunnel)}",
        ]
        if vpn.settings.get("auth_method"):
            parts.append(f"-AuthenticationMethod {ps_quote(vpn.settings['auth_method'])}")
        if (vpn.settings.get("split_tunneling") or "").lower() in ("1", "true", "yes"):
            parts.append("-SplitTunneling")
        parts.append("-Force")
        result = self.run(script(" ".join(parts)))
        if not result.ok:
            self.fail(task, f"Add-VpnConnection {vpn.name} failed", result, item=vpn.name)
        self.event(task, "changed", item=vpn.name)

    def write_secret_file(self, f: ProfileFile) -> bool:
        """Write a profile file unless it already holds exactly this content. The
        script text holds the secret: it goes to the laptop and nowhere else."""
        if self.path_exists(f.path):
            current = self.run(
                script(f"Get-Content -Path {ps_quote(f.path)} -Raw"), secret=True, raw=True
            )
            if current.ok and _same_text(current.stdout, f.content):
                return False
        # Set-Content ends what it writes with a newline of its own. A multi-line profile
        # goes as a string array, one element per line (real PowerShell writes each on
        # its own line; no line breaks inside a literal: one statement per line).
        lines = f.content.rstrip("\n").split("\n")
        value = ",".join(ps_quote(line.rstrip("\r")) for line in lines)
        result = self.run(
            script(f"Set-Content -Path {ps_quote(f.path)} -Value {value}"), secret=True
        )
        if not result.ok:
            self.fail("Configure VPN", f"cannot write VPN profile {f.path}", result, secret=True)
        return True


def configure_windows(
    target: OsTarget,
    plan: ConfigPlan,
    *,
    on_event: EventCallback,
    timeout: float,
    cancel: CancelCallback | None = None,
) -> None:
    """Apply ``plan`` over WinRM. Raises what ``configure_os`` documents; an abort
    also interrupts a script in flight (the transport polls ``cancel``)."""
    try:
        with winrm_transport(target, cancel=cancel) as transport:
            WindowsConfigurator(
                transport, target, plan, on_event=on_event, timeout=timeout, cancel=cancel
            ).apply()
    except CallCancelled as e:
        raise ConfigureCancelled(f"configure {target.label}: cancelled") from e


def _same_text(a: str, b: str) -> bool:
    # Windows may hand back CRLF and a trailing newline of its own.
    return a.replace("\r\n", "\n").strip("\n") == b.replace("\r\n", "\n").strip("\n")


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return " ".join(line.split())[:300]
    return ""


def _last_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return " ".join(lines[-1].split())[:300] if lines else ""


def _int(text: str) -> int | None:
    try:
        return int(text.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def winrm_transport(target: OsTarget, *, cancel: CancelCallback | None = None) -> WinRMTransport:
    """The WinRM transport to a Windows target.

    :raises InsecureTransport, AuthFailed: see ``WinRMTransport``.
    """
    if target.os_family is not OsFamily.WINDOWS:
        raise InsecureTransport(f"{target.label} is not a Windows target")
    return WinRMTransport(
        host=target.host,
        port=target.winrm_port,
        transport=target.transport,
        username=target.username,
        password=target.password or SecretStr(""),
        ca_path=str(target.ca_path) if target.ca_path else None,
        cancel=cancel,
    )
