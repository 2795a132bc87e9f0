"""Windows lab laptops: unmodified pywinrm against the lab's WS-Management server."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import certifi
import pytest
import requests
import winrm
from winrm.exceptions import (
    InvalidCredentialsError,
    WinRMOperationTimeoutError,
    WinRMTransportError,
    WSManFaultError,
)

from lab.faults import Fault
from lab.lab import Lab, LabLaptop, LaptopSpec
from lab.winrm.state import WindowsState
from tests.support.lab import ssh_run

PS_STDIN = "powershell.exe -NoProfile -NonInteractive -Command -"
INSTALL = "winget install --id '{}' --silent --accept-package-agreements --accept-source-agreements"


@pytest.fixture
def windows(lab: Lab) -> Iterator[LabLaptop]:
    spec = LaptopSpec(
        serial="WIN0001", os_family="windows", disk_bytes=1024**2, winrm_password="Cl1ent-Adm!n"
    )
    (laptop,) = lab.up([spec])
    booted = lab.reboot_into_os(laptop.name)
    assert booted.winrm_password == "Cl1ent-Adm!n"
    yield booted


def _https(laptop: LabLaptop, transport: str = "ntlm", **kw: str) -> winrm.Session:
    assert laptop.winrm_endpoint and laptop.winrm_ca_path
    return winrm.Session(
        laptop.winrm_endpoint,
        auth=(laptop.winrm_username or "", laptop.winrm_password or ""),
        transport=transport,
        server_cert_validation="validate",
        ca_trust_path=str(laptop.winrm_ca_path),
        **kw,
    )


def _http_encrypted(laptop: LabLaptop) -> winrm.Session:
    assert laptop.winrm_http_endpoint
    return winrm.Session(
        laptop.winrm_http_endpoint,
        auth=(laptop.winrm_username or "", laptop.winrm_password or ""),
        transport="ntlm",
        message_encryption="always",
        ca_trust_path=str(laptop.winrm_ca_path),
    )


def _protocol(laptop: LabLaptop) -> winrm.Protocol:
    assert laptop.winrm_endpoint and laptop.winrm_ca_path
    return winrm.Protocol(
        laptop.winrm_endpoint,
        transport="ntlm",
        username=laptop.winrm_username,
        password=laptop.winrm_password,
        server_cert_validation="validate",
        ca_trust_path=str(laptop.winrm_ca_path),
        message_encryption="always",
    )


def test_configuration_over_https_ntlm_and_http_encrypted(lab: Lab, windows: LabLaptop) -> None:
    # PE sshd is gone once Windows runs; WinRM answers instead.
    assert lab.status()[0]["sshd_running"] is False
    session = _https(windows)
    r = session.run_ps(
        "$ErrorActionPreference = 'Stop'\n"
        "Rename-Computer -NewName 'ACME-LT-0042' -Force\n"
        "Add-VpnConnection -Name 'Acme VPN' -ServerAddress 'vpn.acme.example' "
        "-TunnelType 'Ikev2' -AuthenticationMethod 'Eap' -SplitTunneling -Force\n"
        "Set-Content -Path 'C:\\ProgramData\\Masterline\\done.txt' -Value 'it''s done'\n"
        "Set-Service -Name 'BITS' -StartupType 'Automatic'\n"
        "Start-Service -Name 'BITS'\n"
    )
    assert (r.status_code, r.std_err) == (0, b"")

    encrypted = _http_encrypted(windows)
    r = encrypted.run_ps(
        "$env:COMPUTERNAME\n"
        "Get-VpnConnection -Name 'Acme VPN' | ConvertTo-Json -Compress\n"
        "Test-Path -Path 'C:\\ProgramData\\Masterline\\done.txt'\n"
        "Test-Path -Path 'C:\\nope.txt'\n"
        "Get-Content -Path 'C:\\ProgramData\\Masterline\\done.txt' -Raw\n"
        "Get-FileHash -Path 'C:\\ProgramData\\Masterline\\done.txt' -Algorithm SHA256 "
        "| Select-Object -ExpandProperty Hash\n"
        "Get-Service -Name 'BITS' | Select-Object -ExpandProperty Status\n"
    )
    assert r.status_code == 0, r.std_err
    lines = r.std_out.decode().split("\r\n")
    assert lines[0] == "ACME-LT-0042"
    vpn = json.loads(lines[1])
    assert (vpn["Name"], vpn["ServerAddress"], vpn["TunnelType"]) == (
        "Acme VPN",
        "vpn.acme.example",
        "Ikev2",
    )
    assert vpn["SplitTunneling"] is True
    assert lines[2:5] == ["True", "False", "it's done"]
    assert lines[6] == hashlib.sha256(b"it's done\r\n").hexdigest().upper()
    assert lines[7] == "Running"
    state = WindowsState(windows.dir).read()
    assert state["computer_name"] == "ACME-LT-0042"

    # Back to the PE (to re-image): SSH answers again, WinRM is gone.
    pe = lab.boot_pe(windows.name)
    assert ssh_run(pe, "true")[0] == 0
    with pytest.raises(requests.exceptions.ConnectionError):
        _https(windows).run_ps("$env:COMPUTERNAME")


def test_plain_http_and_wrong_ca_and_wrong_password_are_refused(windows: LabLaptop) -> None:
    assert windows.winrm_http_endpoint and windows.winrm_endpoint
    # An unencrypted message over HTTP is refused even with valid NTLM.
    plain = winrm.Session(
        windows.winrm_http_endpoint,
        auth=(windows.winrm_username or "", windows.winrm_password or ""),
        transport="ntlm",
        message_encryption="never",
        ca_trust_path=str(windows.winrm_ca_path),
    )
    with pytest.raises(WinRMTransportError):
        plain.run_ps("$env:COMPUTERNAME")
    # Basic over HTTP is refused.
    basic_http = winrm.Session(
        windows.winrm_http_endpoint,
        auth=(windows.winrm_username or "", windows.winrm_password or ""),
        transport="basic",
        ca_trust_path=str(windows.winrm_ca_path),
    )
    with pytest.raises(InvalidCredentialsError):
        basic_http.run_ps("$env:COMPUTERNAME")
    # The certificate is validated: without the lab CA it is not trusted.
    untrusted = winrm.Session(
        windows.winrm_endpoint,
        auth=(windows.winrm_username or "", windows.winrm_password or ""),
        transport="basic",
        server_cert_validation="validate",
        ca_trust_path=certifi.where(),
    )
    with pytest.raises(requests.exceptions.SSLError):
        untrusted.run_ps("$env:COMPUTERNAME")
    for transport in ("basic", "ntlm"):
        wrong = winrm.Session(
            windows.winrm_endpoint,
            auth=(windows.winrm_username or "", "not-the-password"),
            transport=transport,
            server_cert_validation="validate",
            ca_trust_path=str(windows.winrm_ca_path),
        )
        with pytest.raises(InvalidCredentialsError):
            wrong.run_ps("$env:COMPUTERNAME")
    # Basic over HTTPS with the right password works.
    r = _https(windows, "basic").run_ps("$env:COMPUTERNAME")
    assert r.status_code == 0 and r.std_out.startswith(b"DESKTOP-")


def test_long_script_through_stdin(windows: LabLaptop) -> None:
    script = "".join(
        f"Set-Content -Path 'C:\\lab\\f{i}.txt' -Value '{'x' * 40}'\n" for i in range(300)
    )
    script += f"{INSTALL.format('Mozilla.Firefox')}\n"
    script += "winget list --id 'Mozilla.Firefox' --exact\n"
    assert len(script) > 20_000
    p = _protocol(windows)
    shell = p.open_shell()
    try:
        command = p.run_command(shell, PS_STDIN)
        p.send_command_input(shell, command, script[:10_000])
        p.send_command_input(shell, command, script[10_000:], end=True)
        out, err, rc = p.get_command_output(shell, command)
        p.cleanup_command(shell, command)
    finally:
        p.close_shell(shell)
    assert (rc, err) == (0, b"")
    assert b"Mozilla.Firefox" in out.splitlines()[-1]
    state = WindowsState(windows.dir).read()
    assert "Mozilla.Firefox" in state["apps"]
    assert "c:\\lab\\f299.txt" in state["files"]


def test_not_understood_is_an_error_not_a_success(lab: Lab, windows: LabLaptop) -> None:
    session = _https(windows)
    r = session.run_ps(
        "Rename-Computer -NewName 'GOOD-NAME' -Force\n"
        "Add-VpnConnection -Name 'V' -ServerAddress 's' -TunnelType 'L2tp' "
        "-L2tpPsk 'SuperSecretPsk' -Bogus -Force\n"
        "Rename-Computer -NewName 'NEVER' -Force\n"
    )
    assert r.status_code == 1
    assert r.std_err.startswith(b"lab: not understood: Add-VpnConnection")
    assert b"SuperSecretPsk" not in r.std_err
    assert session.run_ps("$env:COMPUTERNAME").std_out == b"GOOD-NAME\r\n"
    # Neither the PSK nor the password lands in any lab file but the two that must hold
    # the password (the lab's state and the NTLM acceptor's user file).
    for path in lab.root.rglob("*"):
        if path.is_file() and path.suffix not in (".img",):
            data = path.read_bytes()
            assert b"SuperSecretPsk" not in data, path
            if path.name not in ("lab.json", "ntlm_users"):
                assert (windows.winrm_password or "").encode() not in data, path
    r = session.run_ps('Write-Host "hello"')
    assert r.status_code == 1 and b"not understood" in r.std_err
    r = session.run_cmd("ipconfig", ["/all"])
    assert r.status_code == 1 and b"not understood" in r.std_err
    r = session.run_ps("Get-VpnConnection -Name 'Missing' | ConvertTo-Json -Compress")
    assert r.status_code == 1 and b"was not found" in r.std_err
    r = session.run_ps("winget list --id 'Not.Installed' --exact")
    assert r.status_code != 0


def test_winrm_faults(lab: Lab, windows: LabLaptop) -> None:
    session = _https(windows)
    lab.set_fault(windows.name, Fault.WINRM_500, count=1)
    with pytest.raises(WSManFaultError) as info:
        session.run_ps("$env:COMPUTERNAME")
    assert info.value.code == 500
    # Counted: the next request goes through.
    assert _https(windows).run_ps("$env:COMPUTERNAME").status_code == 0

    lab.set_fault(windows.name, Fault.WINRM_TIMEOUT, count=2)
    p = _protocol(windows)
    shell = p.open_shell()
    command = p.run_command(
        shell,
        "powershell -encodedcommand "
        + base64.b64encode("$env:COMPUTERNAME".encode("utf-16-le")).decode(),
    )
    for _ in range(2):
        with pytest.raises(WinRMOperationTimeoutError):
            p.get_command_output_raw(shell, command)
    out, _, rc = p.get_command_output(shell, command)
    assert rc == 0 and out.startswith(b"DESKTOP-")
    p.close_shell(shell)

    lab.set_fault(windows.name, Fault.WINRM_401)
    for make in (
        lambda: _https(windows),
        lambda: _https(windows, "basic"),
        lambda: _http_encrypted(windows),
    ):
        with pytest.raises(InvalidCredentialsError):
            make().run_ps("$env:COMPUTERNAME")
    lab.clear_faults(windows.name, Fault.WINRM_401)

    lab.set_fault(windows.name, Fault.APP_INSTALL_FAILS, app_id="Zoom.Zoom")
    r = session.run_ps(INSTALL.format("Zoom.Zoom"))
    assert r.status_code == 1603 and b"Installer failed with exit code: 1603" in r.std_out
    lab.windows_put_file(windows.name, "C:\\Temp\\Zoom.Zoom.msi", b"MSI")
    lab.windows_put_file(windows.name, "C:\\Temp\\Other.App.msi", b"MSI")
    msi = (
        "Start-Process -FilePath 'msiexec.exe' -ArgumentList '/i','C:\\Temp\\{}.msi','/qn' "
        "-Wait -PassThru | Select-Object -ExpandProperty ExitCode"
    )
    assert session.run_ps(msi.format("Zoom.Zoom")).std_out == b"1603\r\n"
    assert session.run_ps(msi.format("Other.App")).std_out == b"0\r\n"
    assert session.run_ps(msi.format("Missing")).std_out == b"1619\r\n"
    lab.clear_faults(windows.name)
    r = session.run_ps(INSTALL.format("Zoom.Zoom"))
    assert r.status_code == 0
    assert lab.windows_state(windows.name)["apps"] == ["Other.App", "Zoom.Zoom"]
