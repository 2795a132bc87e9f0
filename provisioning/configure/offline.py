"""The offline settings: files written into the installed system's disk from the PE,
before its first boot, per OS family (one table, ``OFFLINE_FILES``).

Linux: its hostname. Windows: the answer file naming the computer in Windows Setup's
specialize pass, and a ``SetupComplete.cmd`` that Setup runs as SYSTEM once it is done,
enabling WinRM over HTTPS before anyone logs on, so configure can reach it at the first
boot.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from xml.sax.saxutils import escape

from provisioning.configure.plan import OsFamily

SETUP_COMPLETE = (
    "@echo off\r\n"
    "rem Written by Masterline: enable WinRM over HTTPS once Windows Setup is done.\r\n"
    "powershell.exe -NoProfile -ExecutionPolicy Bypass "
    "-File C:\\masterline\\firstboot-winrm-https.ps1\r\n"
)

FIRSTBOOT_WINRM = r"""# Written by Masterline before the first boot: enable WinRM over HTTPS.
$cert = New-SelfSignedCertificate -DnsName $env:COMPUTERNAME `
    -CertStoreLocation Cert:\LocalMachine\My
New-Item -Path WSMan:\LocalHost\Listener -Transport HTTPS -Address * `
    -CertificateThumbPrint $cert.Thumbprint -Force
New-NetFirewallRule -DisplayName "WinRM HTTPS" -Direction Inbound -LocalPort 5986 `
    -Protocol TCP -Action Allow
"""


def unattend_xml(hostname: str) -> str:
    """The answer file's specialize pass naming the computer."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<unattend xmlns="urn:schemas-microsoft-com:unattend">\n'
        '  <settings pass="specialize">\n'
        '    <component name="Microsoft-Windows-Shell-Setup" processorArchitecture="amd64" '
        'publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS">\n'
        f"      <ComputerName>{escape(hostname)}</ComputerName>\n"
        "    </component>\n"
        "  </settings>\n"
        "</unattend>\n"
    )


def _linux_files(hostname: str) -> dict[str, str]:
    return {"etc/hostname": hostname + "\n"}


def _windows_files(hostname: str) -> dict[str, str]:
    return {
        "Windows/Panther/unattend.xml": unattend_xml(hostname),
        "Windows/Setup/Scripts/SetupComplete.cmd": SETUP_COMPLETE,
        "masterline/firstboot-winrm-https.ps1": FIRSTBOOT_WINRM,
    }


OFFLINE_FILES: dict[OsFamily, Callable[[str], dict[str, str]]] = {
    OsFamily.LINUX: _linux_files,
    OsFamily.WINDOWS: _windows_files,
}


def offline_files(family: OsFamily, hostname: str) -> dict[str, str]:
    """Relative path under the installed system's root -> content."""
    return OFFLINE_FILES[family](hostname)


def write_files_script(root: str, files: dict[str, str]) -> bytes:
    """A ``sh -s`` script writing each file under ``root`` (a shell expression) in one
    round trip; the contents travel in quoted here-documents, never on a command line."""
    lines = ["set -e"]
    for i, (relative, text) in enumerate(files.items()):
        path = f"{root}/{shlex.quote(relative)}"
        folder = f"{root}/{shlex.quote(os.path.dirname(relative))}"
        marker = f"MASTERLINE_FILE_{i}_END"
        assert marker not in text
        lines += [f"mkdir -p {folder}", f"cat > {path} <<'{marker}'", text.rstrip("\n"), marker]
    return ("\n".join(lines) + "\n").encode()
