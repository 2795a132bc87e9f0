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
import json
import re
from dataclasses import dataclass, field
from typing import Any

from lab.winrm.cmdlets import COMMANDS, InstallFailure, NativeExit
from lab.winrm.pssyntax import NotUnderstood, PsError, Token
from lab.winrm.pssyntax import parse_args as _args
from lab.winrm.pssyntax import tokenize as _tokenize

_SECRET_PARAM = re.compile(r"(?i)key|password|secret|psk")


@dataclass
class Result:
    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    lines: list[str] = field(default_factory=list)


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
    handler = COMMANDS.get(name)
    if handler is None:
        raise NotUnderstood(name)
    return handler(rest, state, install_failure)
