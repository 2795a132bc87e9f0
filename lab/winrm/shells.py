"""The WinRS side of a lab Windows laptop: its shells and commands, answering the six
WS-Management actions pywinrm sends (Create, Command, Send, Receive, Signal, Delete)
with the envelopes Windows returns. Commands run the lab PowerShell vocabulary
(``powershell.py``) against the laptop's state file; HTTP, TLS and NTLM are
``server.py``'s."""

from __future__ import annotations

import base64
import threading
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.faults import Fault, FaultFile
from lab.winrm import powershell
from lab.winrm.auth import Credentials
from lab.winrm.certs import certificate_hash, ensure_lab_ca
from lab.winrm.soap import (
    A_COMMAND,
    A_CREATE,
    A_DELETE,
    A_RECEIVE,
    A_SEND,
    A_SIGNAL,
    CODE_INTERNAL,
    CODE_OPERATION_TIMEOUT,
    CODE_SHELL_NOT_FOUND,
    NS,
    SHELL_URI,
    WsmanFault,
    element_text,
    envelope,
    parse_timeout,
)
from lab.winrm.state import WindowsState

MAX_BODY = 8 * 1024 * 1024


@dataclass
class _Command:
    kind: str
    result: powershell.Result | None = None
    stdin: bytearray = field(default_factory=bytearray)
    stdin_done: threading.Event = field(default_factory=threading.Event)
    delivered: bool = False


@dataclass
class _Shell:
    commands: dict[str, _Command] = field(default_factory=dict)


class WinrmLaptop:
    """The WinRM-facing side of one laptop: credentials, shells, state, faults."""

    def __init__(self, root: Path, laptop: dict[str, Any]) -> None:
        self.name: str = laptop["name"]
        self.dir = Path(laptop["dir"])
        self.username: str = laptop["winrm_username"]
        self.password: str = laptop["winrm_password"]
        self.faults = FaultFile(self.dir)
        self.state = WindowsState(self.dir)
        self.shells: dict[str, _Shell] = {}
        self.lock = threading.Lock()
        self.ca_pem, self.server_pem, self.server_key = ensure_lab_ca(root / "ca")
        self.auth = Credentials(
            self.dir, self.username, self.password, certificate_hash(self.server_pem)
        )

    # --- WS-Management ---------------------------------------------------------------

    def handle(self, body: bytes) -> bytes:
        """One SOAP request → one SOAP response. Raises WsmanFault."""
        if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
            # WS-Management never carries a DTD; refusing one rules out entity expansion.
            raise WsmanFault(500, CODE_INTERNAL, "w:InvalidMessage", "DTDs are not accepted.")
        try:
            root = ET.fromstring(body)  # noqa: S314 - no DTD (checked above)
        except ET.ParseError:
            raise WsmanFault(
                500, CODE_INTERNAL, "w:InvalidMessage", "The request is not XML."
            ) from None
        header = root.find("s:Header", NS)
        body_el = root.find("s:Body", NS)
        if header is None or body_el is None:
            raise WsmanFault(500, CODE_INTERNAL, "w:InvalidMessage", "No SOAP header or body.")
        action = element_text(header.find("a:Action", NS))
        message_id = element_text(header.find("a:MessageID", NS))
        selector = header.find("w:SelectorSet/w:Selector[@Name='ShellId']", NS)
        shell_id = element_text(selector)
        timeout_s = parse_timeout(element_text(header.find("w:OperationTimeout", NS)))
        fault500 = self.faults.consume(Fault.WINRM_500)
        if fault500 is not None:
            raise WsmanFault(
                500,
                CODE_INTERNAL,
                "w:InternalError",
                "The WS-Management service cannot process the request because of an internal "
                "error.",
            )
        if action == A_CREATE:
            new_id = str(uuid.uuid4()).upper()
            with self.lock:
                self.shells[new_id] = _Shell()
            return envelope(
                action,
                message_id,
                "<x:ResourceCreated><a:Address>http://127.0.0.1/wsman</a:Address>"
                "<a:ReferenceParameters>"
                f"<w:ResourceURI>{SHELL_URI}/cmd</w:ResourceURI>"
                f'<w:SelectorSet><w:Selector Name="ShellId">{new_id}</w:Selector></w:SelectorSet>'
                "</a:ReferenceParameters></x:ResourceCreated>"
                f"<rsp:Shell><rsp:ShellId>{new_id}</rsp:ShellId>"
                f"<rsp:ResourceUri>{SHELL_URI}/cmd</rsp:ResourceUri>"
                "<rsp:InputStreams>stdin</rsp:InputStreams>"
                "<rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>",
            )
        shell = self._shell(shell_id)
        if action == A_DELETE:
            with self.lock:
                self.shells.pop(shell_id, None)
            return envelope(action, message_id, "")
        if action == A_COMMAND:
            return self._command(action, message_id, shell, body_el)
        if action == A_SEND:
            stream = body_el.find("rsp:Send/rsp:Stream", NS)
            if stream is None:
                raise WsmanFault(500, CODE_INTERNAL, "w:InvalidMessage", "Send without a stream.")
            command = self._find_command(shell, stream.get("CommandId", ""))
            command.stdin += base64.b64decode(stream.text or "")
            if len(command.stdin) > MAX_BODY:
                raise WsmanFault(500, CODE_INTERNAL, "w:QuotaLimit", "stdin too large")
            if stream.get("End", "false").lower() == "true":
                self._run_stdin(command)
            return envelope(action, message_id, "<rsp:SendResponse/>")
        if action == A_RECEIVE:
            desired = body_el.find("rsp:Receive/rsp:DesiredStream", NS)
            command_id = desired.get("CommandId", "") if desired is not None else ""
            command = self._find_command(shell, command_id)
            return envelope(action, message_id, self._receive(command, command_id, timeout_s))
        if action == A_SIGNAL:
            signal_el = body_el.find("rsp:Signal", NS)
            command_id = signal_el.get("CommandId", "") if signal_el is not None else ""
            with self.lock:
                shell.commands.pop(command_id, None)
            return envelope(action, message_id, "<rsp:SignalResponse/>")
        raise WsmanFault(
            500,
            2150858771,
            "a:ActionNotSupported",
            f"The action {action} is not supported by the service.",
        )

    def _shell(self, shell_id: str) -> _Shell:
        with self.lock:
            shell = self.shells.get(shell_id)
        if shell is None:
            raise WsmanFault(
                500,
                CODE_SHELL_NOT_FOUND,
                "w:InvalidSelectors",
                f"The request for the Windows Remote Shell with ShellId {shell_id} failed "
                "because the shell was not found on the server.",
            )
        return shell

    def _find_command(self, shell: _Shell, command_id: str) -> _Command:
        with self.lock:
            command = shell.commands.get(command_id)
        if command is None:
            raise WsmanFault(
                500, 2150858843, "w:InvalidSelectors", f"Command {command_id} not found."
            )
        return command

    def _command(self, action: str, message_id: str, shell: _Shell, body: ET.Element) -> bytes:
        line = body.find("rsp:CommandLine", NS)
        text = element_text(line.find("rsp:Command", NS)) if line is not None else ""
        arguments = element_text(line.find("rsp:Arguments", NS)) if line is not None else ""
        command_id = str(uuid.uuid4()).upper()
        try:
            kind, script = powershell.decode_command_line(text, arguments)
        except powershell.NotUnderstood:
            command = _Command(
                "done",
                powershell.Result(stderr=f"lab: not understood: {text[:200]}\r\n", exit_code=1),
            )
        else:
            command = _Command(kind)
            if kind == "script":
                command.result = self._run(script or "")
            elif kind == "hostname":
                command.result = powershell.Result(
                    stdout=self.state.read().get("computer_name", "") + "\r\n"
                )
        with self.lock:
            shell.commands[command_id] = command
        return envelope(
            action,
            message_id,
            f"<rsp:CommandResponse><rsp:CommandId>{command_id}</rsp:CommandId>"
            "</rsp:CommandResponse>",
        )

    def _run_stdin(self, command: _Command) -> None:
        raw = bytes(command.stdin)
        try:
            script = raw.decode("utf-8")
        except UnicodeDecodeError:
            # pywinrm encodes str input with the OEM code page.
            script = raw.decode("cp437")
        command.result = self._run(script)
        command.stdin_done.set()

    def _run(self, script: str) -> powershell.Result:
        def install_failure(app_id: str) -> int | None:
            params = self.faults.read().get(Fault.APP_INSTALL_FAILS)
            if params is None:
                return None
            wanted = str(params.get("app_id") or "")
            if wanted and wanted.lower() != app_id.lower():
                return None
            return int(params.get("exit_code", 1603))

        with self.state.locked() as state:
            return powershell.run_script(script, state, install_failure)

    def _receive(self, command: _Command, command_id: str, timeout_s: float) -> str:
        if command.result is None and command.kind == "stdin":
            # Like Windows: wait for the script's stdin until the operation timeout.
            command.stdin_done.wait(timeout=min(timeout_s, 20.0))
        if self.faults.consume(Fault.WINRM_TIMEOUT) is not None or command.result is None:
            raise WsmanFault(
                500,
                CODE_OPERATION_TIMEOUT,
                "w:TimedOut",
                "The WS-Management service cannot complete the operation within the time "
                "specified in OperationTimeout.",
            )
        result = command.result
        parts = []
        if not command.delivered:
            for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
                if text:
                    data = base64.b64encode(text.encode("utf-8")).decode()
                    parts.append(
                        f'<rsp:Stream Name="{name}" CommandId="{command_id}">{data}</rsp:Stream>'
                    )
            command.delivered = True
        parts.append(f'<rsp:Stream Name="stdout" CommandId="{command_id}" End="true"/>')
        parts.append(f'<rsp:Stream Name="stderr" CommandId="{command_id}" End="true"/>')
        parts.append(
            f'<rsp:CommandState CommandId="{command_id}" '
            f'State="{SHELL_URI}/CommandState/Done">'
            f"<rsp:ExitCode>{result.exit_code}</rsp:ExitCode></rsp:CommandState>"
        )
        return "<rsp:ReceiveResponse>" + "".join(parts) + "</rsp:ReceiveResponse>"
