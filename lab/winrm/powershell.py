"""The PowerShell the lab's Windows laptops understand, and nothing else.

Scripts reach a lab laptop over WinRM either as ``powershell -encodedcommand <base64
UTF-16LE>`` (pywinrm ``Session.run_ps``) or as the stdin of
``powershell.exe -NoProfile -NonInteractive -Command -`` (``Protocol.run_command`` then
``send_command_input(..., end=True)``; use this for long scripts, the command line of
Windows stops at 8191 characters). One statement per line; blank lines and ``#`` comments
are ignored; command and parameter names are case-insensitive; every value is a
single-quoted string (``''`` inside one is a quote). Double quotes, variables other than
``$env:COMPUTERNAME``, script blocks and anything else are not understood: the script
stops there with exit code 1 and ``lab: not understood: <line>`` on stderr (values of
parameters whose name mentions a key, password, secret or PSK are shown as ``'***'``).

VOCABULARY (what each form prints; ``<X>`` = a single-quoted value)::

    $ErrorActionPreference = 'Stop'          accepted (the lab always stops at an error)
    $env:COMPUTERNAME                        prints the computer name
    Rename-Computer -NewName <NAME> -Force   sets it (1-15 letters, digits, '-', not all
                                             digits; same name again = error, as Windows)
    Add-VpnConnection -Name <N> -ServerAddress <S> -TunnelType <Ikev2|L2tp|Sstp|Pptp|Automatic>
        [-AuthenticationMethod <Pap|Chap|MSChapv2|Eap|MachineCertificate>] [-L2tpPsk <K>]
        [-SplitTunneling] [-RememberCredential] -Force
                                             adds it (error if the name exists; the PSK is
                                             kept only as "psk_set")
    Get-VpnConnection -Name <N> | ConvertTo-Json -Compress
                                             {"Name":…,"ServerAddress":…,"TunnelType":"Ikev2",
                                             "AuthenticationMethod":[…],"SplitTunneling":…,
                                             "ConnectionStatus":"Disconnected"}; absent = error
    Set-Content -Path <P> -Value <V>[,<V2>…] writes each value + CRLF (UTF-8) to file P
    Test-Path -Path <P>                      True / False (a file, or a folder holding one)
    Get-Content -Path <P> -Raw               prints the file; absent = error
    Get-FileHash -Path <P> -Algorithm SHA256 | Select-Object -ExpandProperty Hash
                                             upper-case hex SHA-256 of the file's bytes
    winget install --id <ID> --silent --accept-package-agreements --accept-source-agreements
        [--exact] [--scope <machine|user>]   installs app ID; already installed: exit
                                             -1978335189 (0x8A15002B, "No available upgrade
                                             found"); fault app_install_fails: exit 1603
                                             (or the fault's exit_code), "Installer failed…"
    winget list --id <ID> --exact            exit 0 and a line with ID if installed, else
                                             exit -1978335212 (0x8A150014)
    Start-Process -FilePath 'msiexec.exe' -ArgumentList '/i',<PATH>,'/qn'[,'/norestart'|,'K=V'…]
        -Wait -PassThru | Select-Object -ExpandProperty ExitCode
                                             prints the installer's exit code: 0 (app whose
                                             ID is PATH's file stem is installed), 1619 (no
                                             such file), 1603 or the fault's exit_code
    Get-Service -Name <N> | Select-Object -ExpandProperty Status     Running / Stopped
    Start-Service -Name <N>                  starts it (Disabled = error)
    Set-Service -Name <N> -StartupType <Automatic|Manual|Disabled>

Any object can also be piped to ``ConvertTo-Json -Compress`` or
``Select-Object -ExpandProperty <Property>``. Output lines end with CRLF. An error ends
the script: its message (``<Cmdlet> : <what>``) goes to stderr and the exit code is 1,
or the native command's own exit code (winget). Earlier lines keep their effect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lab.winrm.pssyntax import NotUnderstood, PsError, Token
from lab.winrm.pssyntax import choice as _choice
from lab.winrm.pssyntax import need as _need
from lab.winrm.pssyntax import parse_args as _args
from lab.winrm.pssyntax import tokenize as _tokenize

WINGET_ALREADY_INSTALLED = -1978335189  # 0x8A15002B APPINSTALLER_CLI_ERROR_UPDATE_NOT_APPLICABLE
WINGET_NOT_FOUND = -1978335212  # 0x8A150014 APPINSTALLER_CLI_ERROR_NO_APPLICATIONS_FOUND
MSI_PACKAGE_OPEN_FAILED = 1619
TUNNEL_TYPES = ("Ikev2", "L2tp", "Sstp", "Pptp", "Automatic")
AUTH_METHODS = ("Pap", "Chap", "MSChapv2", "Eap", "MachineCertificate")
STARTUP_TYPES = ("Automatic", "Manual", "Disabled")
_SECRET_PARAM = re.compile(r"(?i)key|password|secret|psk")


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    lines: list[str] = field(default_factory=list)


class NativeExit(Exception):
    """A native command (winget) ended with a non-zero exit code after printing output."""

    def __init__(self, output: list[str], exit_code: int) -> None:
        super().__init__(exit_code)
        self.output = output
        self.exit_code = exit_code


InstallFailure = Callable[[str], int | None]


def decode_command_line(command: str, arguments: str = "") -> tuple[str, str | None]:
    """Classify a WinRS command line.

    Returns ("script", text) for ``powershell -encodedcommand``, ("stdin", None) for
    ``powershell … -Command -``, ("hostname", None) for ``hostname``; raises NotUnderstood.
    """
    line = f"{command} {arguments}".strip()
    words = line.split()
    if not words:
        raise NotUnderstood(line)
    exe = words[0].lower()
    if exe == "hostname" and len(words) == 1:
        return "hostname", None
    if exe not in ("powershell", "powershell.exe"):
        raise NotUnderstood(line)
    rest = words[1:]
    while rest and rest[0].lower() in ("-noprofile", "-noninteractive", "-nologo"):
        rest = rest[1:]
    if len(rest) >= 2 and rest[0].lower() in ("-executionpolicy", "-ep"):
        rest = rest[2:]
    if len(rest) == 2 and rest[0].lower() in ("-encodedcommand", "-enc", "-e", "-ec"):
        try:
            return "script", base64.b64decode(rest[1], validate=True).decode("utf-16-le")
        except (ValueError, UnicodeDecodeError):
            raise NotUnderstood(line) from None
    if len(rest) == 2 and rest[0].lower() in ("-command", "-c") and rest[1] == "-":
        return "stdin", None
    raise NotUnderstood(line)


def run_script(script: str, state: dict[str, Any], install_failure: InstallFailure) -> Result:
    """Run a script against a laptop's state (mutated in place). Never raises."""
    result = Result()
    out: list[str] = []
    for raw in script.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            for value in _statement(line, state, install_failure):
                out.append(value)
        except NativeExit as exc:
            out.extend(exc.output)
            result.exit_code = exc.exit_code
            break
        except PsError as exc:
            result.stderr = exc.message + "\r\n"
            result.exit_code = exc.exit_code
            break
        except NotUnderstood:
            result.stderr = f"lab: not understood: {_redact(line)}\r\n"
            result.exit_code = 1
            break
    result.stdout = "".join(f"{line}\r\n" for line in out)
    return result


def _redact(line: str) -> str:
    try:
        tokens = _tokenize(line)
    except NotUnderstood:
        return re.sub(r"'(?:[^']|'')*'", "'***'", line) if _SECRET_PARAM.search(line) else line
    parts: list[str] = []
    hide = False
    for kind, text in tokens:
        if kind == "str":
            parts.append("'***'" if hide else "'" + text.replace("'", "''") + "'")
        else:
            parts.append(text)
        hide = kind == "word" and text.startswith("-") and bool(_SECRET_PARAM.search(text))
    return " ".join(parts)


def _statement(line: str, state: dict[str, Any], install_failure: InstallFailure) -> list[str]:
    tokens = _tokenize(line)
    words = [t for k, t in tokens if k == "word"]
    if tokens == [("word", "$env:COMPUTERNAME")] or (
        len(tokens) == 1 and tokens[0][1].lower() == "$env:computername"
    ):
        return [state["computer_name"]]
    if (
        len(tokens) == 3
        and tokens[0][1].lower() == "$erroractionpreference"
        and tokens[1][0] == "eq"
        and tokens[2][0] == "str"
        and tokens[2][1].lower() in ("stop", "continue")
    ):
        return []
    if not words or tokens[0][0] != "word":
        raise NotUnderstood(line)
    stages: list[list[Token]] = [[]]
    for token in tokens:
        if token[0] == "pipe":
            stages.append([])
        else:
            stages[-1].append(token)
    if any(not stage for stage in stages):
        raise NotUnderstood(line)
    value = _command(stages[0], state, install_failure)
    for stage in stages[1:]:
        value = _pipe_stage(stage, value)
    return _format(value)


def _format(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, bool):
        return ["True" if value else "False"]
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, dict):
        width = max(len(k) for k in value)
        return [f"{k.ljust(width)} : {_scalar(v)}" for k, v in value.items()]
    return [str(value)]


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return "{" + ", ".join(str(v) for v in value) + "}"
    return str(value)


def _pipe_stage(stage: list[Token], value: Any) -> Any:
    name = stage[0][1].lower()
    if name == "convertto-json":
        args = _args(stage[1:], switches={"-compress"})
        if "-compress" not in args or not isinstance(value, dict | list | str | bool | int):
            raise NotUnderstood("ConvertTo-Json")
        return json.dumps(value, separators=(",", ":"))
    if name == "select-object":
        args = _args(stage[1:], values={"-expandproperty"}, bare_value=True)
        prop = args.get("-expandproperty")
        if not isinstance(prop, str) or not isinstance(value, dict):
            raise NotUnderstood("Select-Object")
        for key, item in value.items():
            if key.lower() == prop.lower():
                return item
        raise PsError(
            f'Select-Object : Property "{prop}" cannot be found.',
        )
    raise NotUnderstood(name)


def _command(tokens: list[Token], state: dict[str, Any], install_failure: InstallFailure) -> Any:
    name = tokens[0][1].lower()
    rest = tokens[1:]
    handler = _COMMANDS.get(name)
    if handler is None:
        raise NotUnderstood(name)
    return handler(rest, state, install_failure)


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


_COMMANDS: dict[str, Callable[[list[Token], dict[str, Any], InstallFailure], Any]] = {
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
