"""The cmdlets of the lab's PowerShell (the vocabulary in ``powershell.py``), each acting on
the laptop's Windows state: computer name, VPN connections, files, winget and MSI
installs, services."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable
from typing import Any

from lab.winrm.pssyntax import NotUnderstood, PsError, Token
from lab.winrm.pssyntax import choice as _choice
from lab.winrm.pssyntax import need as _need
from lab.winrm.pssyntax import parse_args as _args

WINGET_ALREADY_INSTALLED = -1978335189  # 0x8A15002B APPINSTALLER_CLI_ERROR_UPDATE_NOT_APPLICABLE
WINGET_NOT_FOUND = -1978335212  # 0x8A150014 APPINSTALLER_CLI_ERROR_NO_APPLICATIONS_FOUND
MSI_PACKAGE_OPEN_FAILED = 1619
TUNNEL_TYPES = ("Ikev2", "L2tp", "Sstp", "Pptp", "Automatic")
AUTH_METHODS = ("Pap", "Chap", "MSChapv2", "Eap", "MachineCertificate")
STARTUP_TYPES = ("Automatic", "Manual", "Disabled")


class NativeExit(Exception):
    """A native command (winget) ended with a non-zero exit code after printing output."""

    def __init__(self, output: list[str], exit_code: int) -> None:
        super().__init__(exit_code)
        self.output = output
        self.exit_code = exit_code


InstallFailure = Callable[[str], int | None]


def _rename_computer(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-newname"}, switches={"-force"})
    _need(args, "-newname")
    new = args["-newname"]
    if not re.fullmatch(r"[A-Za-z0-9-]{1,15}", new) or new.isdigit():
        raise PsError(
            f"Rename-Computer : Skip computer '{state['computer_name']}' with new name "
            f"'{new}' because the new name is not valid."
        )
    if new.lower() == state["computer_name"].lower():
        raise PsError(
            f"Rename-Computer : Skip computer '{new}' with new name '{new}' because the new "
            "name is the same as the current name."
        )
    state["computer_name"] = new
    return None


def _add_vpn(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(
        rest,
        values={"-name", "-serveraddress", "-tunneltype", "-authenticationmethod", "-l2tppsk"},
        switches={"-splittunneling", "-force", "-remembercredential"},
    )
    _need(args, "-name", "-serveraddress", "-tunneltype")
    name = args["-name"]
    vpns: dict[str, Any] = state.setdefault("vpn", {})
    if any(existing.lower() == name.lower() for existing in vpns):
        raise PsError(f"Add-VpnConnection : A VPN connection with the name {name} already exists.")
    tunnel = _choice(args["-tunneltype"], TUNNEL_TYPES, "Add-VpnConnection", "TunnelType")
    auth = (
        [_choice(args["-authenticationmethod"], AUTH_METHODS, "Add-VpnConnection", "Auth")]
        if "-authenticationmethod" in args
        else ["MSChapv2"]
    )
    vpns[name] = {
        "Name": name,
        "ServerAddress": args["-serveraddress"],
        "TunnelType": tunnel,
        "AuthenticationMethod": auth,
        "SplitTunneling": bool(args.get("-splittunneling")),
        "RememberCredential": bool(args.get("-remembercredential")),
        # The key itself never lands in the lab's state (nor would Windows show it).
        "psk_set": "-l2tppsk" in args,
    }
    return None


def _get_vpn(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-name"})
    _need(args, "-name")
    for name, vpn in state.get("vpn", {}).items():
        if name.lower() == args["-name"].lower():
            return {
                "Name": vpn["Name"],
                "ServerAddress": vpn["ServerAddress"],
                "TunnelType": vpn["TunnelType"],
                "AuthenticationMethod": vpn["AuthenticationMethod"],
                "SplitTunneling": vpn["SplitTunneling"],
                "RememberCredential": vpn["RememberCredential"],
                "ConnectionStatus": "Disconnected",
            }
    raise PsError(
        f"Get-VpnConnection : VPN connection {args['-name']} was not found in the phone book."
    )


def _check_path(path: str, cmdlet: str) -> str:
    if not re.fullmatch(r"[A-Za-z]:\\[^<>\"|?*]*", path):
        raise PsError(f"{cmdlet} : The given path's format is not supported: '{path}'.")
    return path


def _set_content(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    # -Value takes one string or a string array ('l1','l2'): PowerShell writes each
    # element as a line, which is how multi-line VPN profiles are sent.
    args = _args(rest, values={"-path"}, lists={"-value"})
    _need(args, "-path", "-value")
    path = _check_path(args["-path"], "Set-Content")
    data = "".join(line + "\r\n" for line in args["-value"]).encode()
    state.setdefault("files", {})[path.lower()] = {
        "path": path,
        "b64": base64.b64encode(data).decode(),
    }
    return None


def _file(state: dict[str, Any], path: str, cmdlet: str) -> bytes:
    entry = state.get("files", {}).get(path.lower())
    if entry is None:
        raise PsError(f"{cmdlet} : Cannot find path '{path}' because it does not exist.")
    return base64.b64decode(entry["b64"])


def _test_path(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-path"})
    _need(args, "-path")
    path = args["-path"].rstrip("\\").lower()
    files = state.get("files", {})
    return path in files or any(p.startswith(path + "\\") for p in files)


def _get_content(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-path"}, switches={"-raw"})
    _need(args, "-path", "-raw")
    return _file(state, args["-path"], "Get-Content").decode("utf-8", errors="replace")


def _get_file_hash(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-path", "-algorithm"}, bare_value=True)
    _need(args, "-path", "-algorithm")
    if args["-algorithm"].upper() != "SHA256":
        raise NotUnderstood("-Algorithm")
    data = _file(state, args["-path"], "Get-FileHash")
    return {
        "Algorithm": "SHA256",
        "Hash": hashlib.sha256(data).hexdigest().upper(),
        "Path": args["-path"],
    }


def _winget(rest: list[Token], state: dict[str, Any], install_failure: InstallFailure) -> Any:
    args = _args(
        rest,
        values={"--id", "--scope"},
        switches={
            "--silent",
            "--accept-package-agreements",
            "--accept-source-agreements",
            "--exact",
            "-e",
        },
        positionals=1,
    )
    verb = args["_"][0] if args["_"] else ""
    _need(args, "--id")
    app = args["--id"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.+_-]*", app):
        raise NotUnderstood(app)
    apps: list[str] = state.setdefault("apps", [])
    installed = any(a.lower() == app.lower() for a in apps)
    if verb == "list":
        if not (args.get("--exact") or args.get("-e")):
            raise NotUnderstood("winget list without --exact")
        if not installed:
            raise NativeExit(
                ["No installed package found matching input criteria."], WINGET_NOT_FOUND
            )
        return [
            "Name" + " " * 20 + "Id" + " " * 30 + "Version",
            "-" * 64,
            f"{app.split('.')[-1]:<24}{app:<32}1.0.0",
        ]
    if verb != "install":
        raise NotUnderstood(f"winget {verb}")
    _need(args, "--silent", "--accept-package-agreements", "--accept-source-agreements")
    found = [f"Found {app.split('.')[-1]} [{app}] Version 1.0.0"]
    if installed:
        raise NativeExit(
            [
                "Found an existing package already installed. Trying to upgrade the installed "
                "package...",
                "No available upgrade found.",
                "No newer package versions are available from the configured sources.",
            ],
            WINGET_ALREADY_INSTALLED,
        )
    failure = install_failure(app)
    if failure is not None:
        raise NativeExit(
            [*found, "Starting package install...", f"Installer failed with exit code: {failure}"],
            failure,
        )
    apps.append(app)
    return [*found, "Starting package install...", "Successfully installed"]


def _start_process(
    rest: list[Token], state: dict[str, Any], install_failure: InstallFailure
) -> Any:
    args = _args(
        rest,
        values={"-filepath"},
        lists={"-argumentlist"},
        switches={"-wait", "-passthru", "-nonewwindow"},
    )
    _need(args, "-filepath", "-argumentlist", "-wait", "-passthru")
    if args["-filepath"].lower() not in ("msiexec.exe", "msiexec"):
        raise NotUnderstood(args["-filepath"])
    argv: list[str] = args["-argumentlist"]
    if len(argv) < 3 or argv[0].lower() != "/i" or argv[2].lower() not in ("/qn", "/quiet"):
        raise NotUnderstood("msiexec arguments")
    for extra in argv[3:]:
        if extra.lower() != "/norestart" and not re.fullmatch(r"[A-Z][A-Z0-9_]*=.*", extra):
            raise NotUnderstood(extra)
    path = argv[1]
    if path.lower() not in state.get("files", {}):
        return {"ExitCode": MSI_PACKAGE_OPEN_FAILED}
    stem = re.split(r"[\\/]", path)[-1]
    app = stem[: -len(".msi")] if stem.lower().endswith(".msi") else stem.rsplit(".", 1)[0]
    failure = install_failure(app)
    if failure is not None:
        return {"ExitCode": failure}
    apps: list[str] = state.setdefault("apps", [])
    if not any(a.lower() == app.lower() for a in apps):
        apps.append(app)
    return {"ExitCode": 0}


def _service(state: dict[str, Any], name: str, cmdlet: str) -> tuple[str, dict[str, str]]:
    for key, svc in state.get("services", {}).items():
        if key.lower() == name.lower():
            return key, svc
    raise PsError(f"{cmdlet} : Cannot find any service with service name '{name}'.")


def _get_service(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-name"})
    _need(args, "-name")
    key, svc = _service(state, args["-name"], "Get-Service")
    return {"Status": svc["status"], "Name": key, "StartType": svc["start_type"]}


def _start_service(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-name"})
    _need(args, "-name")
    key, svc = _service(state, args["-name"], "Start-Service")
    if svc["start_type"] == "Disabled":
        raise PsError(
            f"Start-Service : Service '{key} ({key})' cannot be started due to the following "
            f"error: Cannot start service {key} on computer '.'."
        )
    svc["status"] = "Running"
    return None


def _set_service(rest: list[Token], state: dict[str, Any], _: InstallFailure) -> Any:
    args = _args(rest, values={"-name", "-startuptype"})
    _need(args, "-name", "-startuptype")
    _key, svc = _service(state, args["-name"], "Set-Service")
    svc["start_type"] = _choice(args["-startuptype"], STARTUP_TYPES, "Set-Service", "StartupType")
    return None


COMMANDS: dict[str, Callable[[list[Token], dict[str, Any], InstallFailure], Any]] = {
    "rename-computer": _rename_computer,
    "add-vpnconnection": _add_vpn,
    "get-vpnconnection": _get_vpn,
    "set-content": _set_content,
    "test-path": _test_path,
    "get-content": _get_content,
    "get-filehash": _get_file_hash,
    "winget": _winget,
    "winget.exe": _winget,
    "start-process": _start_process,
    "get-service": _get_service,
    "start-service": _start_service,
    "set-service": _set_service,
}
