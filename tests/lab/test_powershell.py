"""The lab's PowerShell vocabulary, interpreted directly (no network)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from lab.winrm import cmdlets, powershell
from lab.winrm.state import DEFAULT_SERVICES


def _state() -> dict[str, Any]:
    return {
        "computer_name": "DESKTOP-ABC1234",
        "vpn": {},
        "files": {},
        "apps": [],
        "services": {k: dict(v) for k, v in DEFAULT_SERVICES.items()},
    }


def _run(script: str, state: dict[str, Any], fail: int | None = None) -> powershell.Result:
    return powershell.run_script(script, state, lambda _app: fail)


def test_command_lines() -> None:
    enc = base64.b64encode("$env:COMPUTERNAME".encode("utf-16-le")).decode()
    assert powershell.decode_command_line(f"powershell -encodedcommand {enc}") == (
        "script",
        "$env:COMPUTERNAME",
    )
    assert powershell.decode_command_line(
        "powershell.exe -NoProfile -NonInteractive -Command -"
    ) == ("stdin", None)
    for bad in ("cmd /c dir", "powershell -Command Get-Date", "powershell -enc !!!"):
        with pytest.raises(powershell.NotUnderstood):
            powershell.decode_command_line(bad)


def test_rename_rules() -> None:
    state = _state()
    r = _run("Rename-Computer -NewName 'THIS-NAME-IS-TOO-LONG' -Force", state)
    assert r.exit_code == 1 and "not valid" in r.stderr
    r = _run("rename-computer -newname 'LT-1' -force\n$env:computername", state)
    assert (r.exit_code, r.stdout) == (0, "LT-1\r\n")
    r = _run("Rename-Computer -NewName 'LT-1' -Force", state)
    assert r.exit_code == 1 and "same as the current name" in r.stderr


def test_vpn_duplicate_and_bad_enum_and_psk_kept_out() -> None:
    state = _state()
    line = (
        "Add-VpnConnection -Name 'Corp' -ServerAddress 'vpn.corp' -TunnelType 'L2tp' "
        "-L2tpPsk 'p''sk' -Force"
    )
    assert _run(line, state).exit_code == 0
    assert "p'sk" not in repr(state)
    assert state["vpn"]["Corp"]["psk_set"] is True
    assert "already exists" in _run(line, state).stderr
    r = _run("Add-VpnConnection -Name 'X' -ServerAddress 's' -TunnelType 'WireGuard' -Force", state)
    assert r.exit_code == 1 and "WireGuard" in r.stderr


def test_errors_stop_the_script_and_keep_earlier_effects() -> None:
    state = _state()
    r = _run(
        "Set-Content -Path 'C:\\a.txt' -Value 'one'\n"
        "Get-Content -Path 'C:\\missing.txt' -Raw\n"
        "Set-Content -Path 'C:\\b.txt' -Value 'two'\n",
        state,
    )
    assert r.exit_code == 1 and "Cannot find path 'C:\\missing.txt'" in r.stderr
    assert set(state["files"]) == {"c:\\a.txt"}
    r = _run("Set-Service -Name 'BITS' -StartupType 'Disabled'\nStart-Service -Name 'BITS'", state)
    assert r.exit_code == 1 and "cannot be started" in r.stderr
    r = _run("Get-Service -Name 'Nope' | Select-Object -ExpandProperty Status", state)
    assert r.exit_code == 1 and "Cannot find any service" in r.stderr


@pytest.mark.parametrize(
    "line",
    [
        'Set-Content -Path "C:\\a.txt" -Value "x"',
        "$x = 'y'",
        "Invoke-Expression 'calc'",
        "Get-Service -Name 'BITS' | Stop-Service",
        "winget upgrade --all",
        "Set-Content -Path 'relative.txt' -Value 'x'",
        "Remove-Item -Path 'C:\\Windows' -Recurse",
    ],
)
def test_outside_the_vocabulary(line: str) -> None:
    r = _run(line, _state())
    assert r.exit_code == 1
    assert r.stderr.startswith("lab: not understood:") or ": The given path" in r.stderr


def test_winget_exit_codes() -> None:
    state = _state()
    install = (
        "winget install --id 'Slack.Slack' --silent --accept-package-agreements "
        "--accept-source-agreements"
    )
    assert _run(install, state, fail=1603).exit_code == 1603
    assert state["apps"] == []
    assert _run(install, state).exit_code == 0
    assert _run(install, state).exit_code == cmdlets.WINGET_ALREADY_INSTALLED
    assert _run("winget list --id 'Slack.Slack' --exact", state).exit_code == 0
    assert _run("winget list --id 'Other' --exact", state).exit_code == cmdlets.WINGET_NOT_FOUND
