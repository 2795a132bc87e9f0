"""Windows configuration over WinRM against lab Windows laptops: the lab keeps each
laptop's Windows state and answers the PowerShell Masterline sends."""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest

from lab.faults import Fault
from lab.lab import Lab, LabLaptop, LaptopSpec
from lab.winrm.state import WindowsState
from provisioning.configure.apply import configure_os
from provisioning.configure.plan import ConfigPlan, OsTarget
from provisioning.configure.windows import ps_quote
from provisioning.errors import AuthFailed, CommandFailed, CommandTimedOut, InvalidPlan

PROFILE_TOKEN = "vendor-Token-0f9e8d7c6b5a4"
WG_KEY = "wgWINDOWSprivate-0123456789abcdefghijklmn="


def boot_windows(lab: Lab, serial: str) -> LabLaptop:
    (laptop,) = lab.up([LaptopSpec(serial=serial, os_family="windows", disk_bytes=1 << 20)])
    return lab.reboot_into_os(laptop.name)


def target(laptop: LabLaptop, transport: str = "ssl") -> OsTarget:
    # NTLM goes to the plain-HTTP listener (message encryption); ssl to HTTPS + lab CA.
    ntlm = transport == "ntlm"
    return OsTarget.windows(
        host=laptop.host,
        winrm_port=(laptop.winrm_http_port if ntlm else laptop.winrm_port) or 0,
        transport=transport,
        username=laptop.winrm_username or "",
        password=laptop.winrm_password or "",
        ca_path=None if ntlm else laptop.winrm_ca_path,
    )


def state(laptop: LabLaptop) -> dict[str, Any]:
    return WindowsState(laptop.dir).read()


def ikev2_plan(serial: str, *apps: dict[str, Any]) -> ConfigPlan:
    return ConfigPlan.from_dict(
        {
            "hostname_pattern": "AC-{serial}",
            "vpn": {
                "kind": "ikev2",
                "name": "ACME-VPN",
                "server": "vpn.acme.example",
                "settings": {"auth_method": "Eap", "split_tunneling": "true"},
            },
            "apps": list(apps)
            or [
                {"name": "Microsoft Teams", "package": "Microsoft.Teams"},
                {"name": "Zoom", "package": "Zoom.Zoom"},
            ],
        },
        os_family="windows",
        fields={"serial": serial},
    )


def vendor_plan(serial: str) -> ConfigPlan:
    profile = json.dumps({"gateway": "sslvpn.acme.example", "token": PROFILE_TOKEN})
    return ConfigPlan.from_dict(
        {
            "hostname_pattern": "AC-{serial}",
            "vpn": {
                "kind": "vendor",
                "name": "acme",
                "server": "sslvpn.acme.example",
                "settings": {"profile_path": "C:\\ProgramData\\Contoso\\VPN\\acme.json"},
                "client_app": {"name": "Contoso VPN", "package": "Contoso.VPNClient"},
            },
            "apps": [
                {"name": "Slack", "package": "SlackTechnologies.Slack"},
                # Makes sure the time service runs at boot (Set-Service, Start-Service).
                {"name": "Time sync", "package": "Microsoft.W32Time", "verify": "service:W32Time"},
            ],
        },
        os_family="windows",
        secrets={"profile": profile},
        fields={"serial": serial},
    )


def test_configure_over_https_applies_and_is_idempotent(lab: Lab) -> None:
    laptop = boot_windows(lab, "WIN2001")
    WindowsState(laptop.dir).put_file("C:\\Installers\\ContosoAgent.msi", b"MSI bytes")
    plan = ikev2_plan(
        laptop.serial,
        {"name": "Microsoft Teams", "package": "Microsoft.Teams"},
        {
            "name": "Contoso Agent",
            "source": "msi",
            "package": "C:\\Installers\\ContosoAgent.msi",
            "silent_args": ["/quiet", "/norestart"],
        },
    )
    first: list[dict[str, Any]] = []
    configure_os(target(laptop), plan, on_event=first.append, timeout=120)
    s = state(laptop)
    assert s["computer_name"] == "AC-WIN2001"
    assert s["vpn"]["ACME-VPN"]["ServerAddress"] == "vpn.acme.example"
    assert s["vpn"]["ACME-VPN"]["TunnelType"] == "Ikev2"
    assert s["vpn"]["ACME-VPN"]["AuthenticationMethod"] == ["Eap"]
    assert s["vpn"]["ACME-VPN"]["SplitTunneling"] is True
    assert {"Microsoft.Teams", "ContosoAgent"} <= set(s["apps"])
    assert [(e["task"], e.get("item"), e["status"]) for e in first] == [
        ("Set computer name", None, "changed"),
        ("Install app", "Microsoft Teams", "changed"),
        ("Install app", "Contoso Agent", "changed"),
        ("Configure VPN", "ACME-VPN", "changed"),
    ]
    second: list[dict[str, Any]] = []
    configure_os(target(laptop), plan, on_event=second.append, timeout=120)
    assert [e["status"] for e in second] == ["ok"] * 4
    assert state(laptop) == s


def test_configure_over_ntlm_writes_secret_profile_without_leaking_it(
    lab: Lab, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.DEBUG)
    laptop = boot_windows(lab, "WIN2002")
    plan = vendor_plan(laptop.serial)
    events: list[dict[str, Any]] = []
    configure_os(target(laptop, "ntlm"), plan, on_event=events.append, timeout=120)
    s = state(laptop)
    assert s["computer_name"] == "AC-WIN2002"
    assert {"Contoso.VPNClient", "SlackTechnologies.Slack"} <= set(s["apps"])
    assert s["services"]["W32Time"] == {"status": "Running", "start_type": "Automatic"}
    profile = WindowsState(laptop.dir).read()["files"]["c:\\programdata\\contoso\\vpn\\acme.json"]
    import base64

    assert PROFILE_TOKEN in base64.b64decode(profile["b64"]).decode()
    assert ("Configure VPN", "acme", "changed") in [
        (e["task"], e.get("item"), e["status"]) for e in events
    ]
    again: list[dict[str, Any]] = []
    configure_os(target(laptop, "ntlm"), plan, on_event=again.append, timeout=120)
    assert not [e for e in again if e["changed"]]
    out, err = capfd.readouterr()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for text in (json.dumps(events + again), out, err, logged):
        assert PROFILE_TOKEN not in text
        assert (laptop.winrm_password or "-") not in text


def test_app_install_failure_names_the_app(lab: Lab) -> None:
    laptop = boot_windows(lab, "WIN2003")
    lab.set_fault(laptop.name, Fault.APP_INSTALL_FAILS, app_id="Zoom.Zoom")
    events: list[dict[str, Any]] = []
    with pytest.raises(CommandFailed) as info:
        configure_os(target(laptop), ikev2_plan(laptop.serial), on_event=events.append, timeout=120)
    message = str(info.value)
    assert "app 'Zoom' install failed" in message and "1603" in message
    assert not info.value.retryable and "\n" not in message
    assert events[-1]["status"] == "failed" and events[-1]["item"] == "Zoom"
    # What came before the failure stays applied; Teams was installed first.
    assert "Microsoft.Teams" in state(laptop)["apps"]


def test_unanswered_commands_time_out_retryably(lab: Lab) -> None:
    laptop = boot_windows(lab, "WIN2004")
    lab.set_fault(laptop.name, Fault.WINRM_TIMEOUT)
    with pytest.raises(CommandTimedOut) as info:
        configure_os(target(laptop), ikev2_plan(laptop.serial), on_event=lambda e: None, timeout=3)
    assert info.value.retryable


def test_abort_interrupts_a_command_in_flight(lab: Lab) -> None:
    """The laptop never finishes the first script; an abort requested while it runs
    stops the call (long before the step's deadline) and closes the shell."""
    from provisioning.errors import ConfigureCancelled

    laptop = boot_windows(lab, "WIN2006")
    lab.set_fault(laptop.name, Fault.WINRM_TIMEOUT)
    polls: list[int] = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) > 2  # the configurator's own check, one poll mid-call, then stop

    with pytest.raises(ConfigureCancelled):
        configure_os(
            target(laptop),
            ikev2_plan(laptop.serial),
            on_event=lambda e: None,
            timeout=600,
            cancel=cancel,
        )
    assert len(polls) == 3


def test_rejected_credentials_are_fatal(lab: Lab) -> None:
    laptop = boot_windows(lab, "WIN2005")
    lab.set_fault(laptop.name, Fault.WINRM_401)
    with pytest.raises(AuthFailed) as info:
        configure_os(target(laptop), ikev2_plan(laptop.serial), on_event=lambda e: None, timeout=30)
    assert not info.value.retryable
    assert (laptop.winrm_password or "-") not in str(info.value)


def test_multiline_wireguard_profile_is_written_and_never_logged(lab: Lab) -> None:
    """A WireGuard profile is several lines: it is written as a PowerShell string array
    (one element per line). The private key reaches the laptop's file, never an event."""
    laptop = boot_windows(lab, "WIN2006")
    plan = ConfigPlan.from_dict(
        {
            "hostname": "AC-WIN2006",
            "vpn": {
                "kind": "wireguard",
                "server": "wg.acme.example",
                "settings": {"address": "10.9.0.2/32", "peer_public_key": "PEERpub="},
                "client_app": {"name": "WireGuard", "package": "WireGuard.WireGuard"},
            },
        },
        os_family="windows",
        secrets={"private_key": WG_KEY},
    )
    events: list[dict[str, Any]] = []
    configure_os(target(laptop), plan, on_event=events.append, timeout=120)
    files = state(laptop)["files"]
    (entry,) = [f for f in files.values() if f["path"].endswith("wg0.conf")]
    profile = base64.b64decode(entry["b64"]).decode()
    assert f"PrivateKey = {WG_KEY}" in profile
    assert profile.count("\r\n") >= 3, "one line per array element"
    assert WG_KEY not in json.dumps(events)
    assert "WireGuard.WireGuard" in state(laptop)["apps"]


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("plain", "'plain'"), ("O'Brien", "'O''Brien'"), ("C:\\x y", "'C:\\x y'")],
)
def test_ps_quote(value: str, quoted: str) -> None:
    assert ps_quote(value) == quoted


@pytest.mark.parametrize("value", ["two\nlines", "cr\r", "nul\x00", "smart\u2019quote"])
def test_ps_quote_refuses_what_could_break_out(value: str) -> None:
    with pytest.raises(InvalidPlan):
        ps_quote(value)
