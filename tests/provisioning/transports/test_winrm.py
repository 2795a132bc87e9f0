"""WinRMTransport against the lab's WinRM endpoint (unmodified pywinrm as the client):
HTTPS with certificate validation, NTLM with message encryption, and every fault the
lab injects translated into a typed, password-free error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from lab.faults import Fault
from lab.lab import Lab, LabLaptop, LaptopSpec
from lab.winrm.certs import ensure_lab_ca
from provisioning.configure.plan import OsTarget
from provisioning.configure.windows import script, winrm_transport
from provisioning.errors import AuthFailed, CommandTimedOut, ConnectFailed, HostKeyMismatch
from provisioning.transports.base import Transport
from provisioning.transports.winrm import (
    POWERSHELL_STDIN,
    InsecureTransport,
    ServerCertificateRejected,
    WinRMServerError,
    WinRMTransport,
)


@pytest.fixture
def windows(lab: Lab) -> LabLaptop:
    (laptop,) = lab.up([LaptopSpec(serial="WIN1001", os_family="windows", disk_bytes=1 << 20)])
    return lab.reboot_into_os(laptop.name)


def https(laptop: LabLaptop, **overrides: object) -> WinRMTransport:
    kwargs: dict[str, object] = {
        "host": laptop.host,
        "port": laptop.winrm_port,
        "transport": "ssl",
        "username": laptop.winrm_username,
        "password": SecretStr(laptop.winrm_password or ""),
        "ca_path": str(laptop.winrm_ca_path),
    }
    kwargs.update(overrides)
    return WinRMTransport(**kwargs)  # type: ignore[arg-type]


def ntlm_http(laptop: LabLaptop) -> WinRMTransport:
    return WinRMTransport(
        host=laptop.host,
        port=laptop.winrm_http_port or 0,
        transport="ntlm",
        username=laptop.winrm_username or "",
        password=SecretStr(laptop.winrm_password or ""),
    )


def test_https_with_validation_runs_powershell(windows: LabLaptop) -> None:
    with https(windows) as t:
        assert isinstance(t, Transport)
        assert t.endpoint.startswith("https://")
        result = t.run_ps(script("$env:COMPUTERNAME"), timeout=30)
        assert result.ok and result.stdout.strip().startswith("DESKTOP-")
        # The same shell serves the next command.
        again = t.run_ps(script("Test-Path -Path 'C:\\nothing-here'"), timeout=30)
        assert again.stdout.strip() == "False"


def test_ntlm_over_http_encrypts_every_message(windows: LabLaptop) -> None:
    with ntlm_http(windows) as t:
        assert t.endpoint.startswith("http://")
        result = t.run_ps(script("$env:COMPUTERNAME"), timeout=30)
        assert result.ok and result.stdout.strip().startswith("DESKTOP-")


def test_ntlm_over_https_from_a_target(windows: LabLaptop) -> None:
    assert windows.winrm_password is not None
    target = OsTarget.windows(
        host=windows.host,
        winrm_port=windows.winrm_port or 0,
        transport="ntlm",
        username=windows.winrm_username or "",
        password=windows.winrm_password or "",
        ca_path=windows.winrm_ca_path,
    )
    assert "password" not in repr(target) or windows.winrm_password not in repr(target)
    assert str(windows.winrm_password) not in repr(target)
    with winrm_transport(target) as t:
        assert t.endpoint.startswith("https://")
        assert t.run_ps(script("$env:COMPUTERNAME"), timeout=30).ok


def test_long_script_goes_through_stdin(windows: LabLaptop) -> None:
    """Far beyond the 8191-character command line: sent as stdin in several envelopes."""
    lines = [f"Test-Path -Path 'C:\\Masterline\\padding\\file-{i:05d}.txt'" for i in range(2500)]
    body = script(*lines)
    assert len(body) > 100_000
    with https(windows) as t:
        result = t.run_ps(body, timeout=120)
    assert result.ok, result.stderr
    assert result.stdout.split() == ["False"] * 2500


def test_stdin_command_line_is_the_powershell_reader() -> None:
    assert POWERSHELL_STDIN == "powershell.exe -NoProfile -NonInteractive -Command -"


def test_wrong_ca_is_fatal(windows: LabLaptop, tmp_path: Path) -> None:
    other_ca, _, _ = ensure_lab_ca(tmp_path / "other-ca")
    with https(windows, ca_path=str(other_ca)) as t, pytest.raises(ServerCertificateRejected) as e:
        t.run_ps(script("$env:COMPUTERNAME"), timeout=30)
    assert isinstance(e.value, HostKeyMismatch) and not e.value.retryable
    assert "not trusted" in str(e.value)


@pytest.mark.parametrize("kind", ["plaintext", "basic", "kerberos", "ignore"])
def test_insecure_transports_are_refused_before_connecting(kind: str) -> None:
    with pytest.raises(InsecureTransport) as e:
        WinRMTransport(
            host="127.0.0.1", port=1, transport=kind, username="u", password=SecretStr("p4ss")
        )
    assert "p4ss" not in str(e.value)
    assert not e.value.retryable


def test_401_fault_and_wrong_password_are_auth_failures(lab: Lab, windows: LabLaptop) -> None:
    password = windows.winrm_password or ""
    wrong = https(windows, password=SecretStr("wrong-Password-123"))
    with wrong as t, pytest.raises(AuthFailed) as e:
        t.run_ps(script("$env:COMPUTERNAME"), timeout=30)
    assert "wrong-Password-123" not in str(e.value) and not e.value.retryable
    lab.set_fault(windows.name, Fault.WINRM_401)
    for transport in (https(windows), ntlm_http(windows)):
        with transport as t, pytest.raises(AuthFailed) as e:
            t.run_ps(script("$env:COMPUTERNAME"), timeout=30)
        assert password not in str(e.value)
        assert e.value.__cause__ is not None  # translated at the edge, from the library's


def test_operation_timeout_is_retryable(lab: Lab, windows: LabLaptop) -> None:
    lab.set_fault(windows.name, Fault.WINRM_TIMEOUT)
    with https(windows) as t, pytest.raises(CommandTimedOut) as e:
        t.run_ps(script("$env:COMPUTERNAME"), timeout=3)
    assert e.value.retryable
    lab.clear_faults(windows.name)
    with https(windows) as t:
        assert t.run_ps(script("$env:COMPUTERNAME"), timeout=30).ok


def test_a_few_operation_timeouts_are_waited_through(lab: Lab, windows: LabLaptop) -> None:
    """Windows answers "still running" (2150858793) to Receive: keep receiving."""
    lab.set_fault(windows.name, Fault.WINRM_TIMEOUT, count=3)
    with https(windows) as t:
        assert t.run_ps(script("$env:COMPUTERNAME"), timeout=60).ok


def test_server_error_500_is_retryable(lab: Lab, windows: LabLaptop) -> None:
    lab.set_fault(windows.name, Fault.WINRM_500, count=1)
    with https(windows) as t:
        with pytest.raises(WinRMServerError) as e:
            t.run_ps(script("$env:COMPUTERNAME"), timeout=30)
        assert e.value.retryable and "500" in str(e.value)
        # The fault is spent: the same transport recovers with a fresh shell.
        assert t.run_ps(script("$env:COMPUTERNAME"), timeout=30).ok


def test_refused_connection_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = WinRMTransport(
        host="127.0.0.1",
        port=port,
        transport="ntlm",
        username="Administrator",
        password=SecretStr("Secret-Passw0rd"),
    )
    with t, pytest.raises(ConnectFailed) as e:
        t.run_ps(script("$env:COMPUTERNAME"), timeout=10)
    assert e.value.retryable and "Secret-Passw0rd" not in str(e.value)


def test_put_stream_feeds_stdin_and_hashes(windows: LabLaptop) -> None:
    import hashlib

    body = script("Test-Path -Path 'C:\\x'").encode()
    chunks = [body[:10], body[10:]]
    seen: list[int] = []
    with https(windows) as t:
        result = t.put_stream(POWERSHELL_STDIN, chunks, timeout=30, progress=seen.append)
    assert result.bytes_sent == len(body) and seen[-1] == len(body)
    assert result.sha256 == hashlib.sha256(body).hexdigest()
    assert result.result.ok and result.result.stdout.strip() == "False"
