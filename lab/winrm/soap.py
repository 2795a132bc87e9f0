"""WS-Management on the wire for the lab's WinRM endpoint: namespaces, actions, fault
codes, and the SOAP envelopes of answers and faults, as Windows writes them (what
pywinrm parses)."""

from __future__ import annotations

import contextlib
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

NS = {
    "s": "http://www.w3.org/2003/05/soap-envelope",
    "a": "http://schemas.xmlsoap.org/ws/2004/08/addressing",
    "w": "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd",
    "rsp": "http://schemas.microsoft.com/wbem/wsman/1/windows/shell",
    "x": "http://schemas.xmlsoap.org/ws/2004/09/transfer",
    "p": "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd",
}
SHELL_URI = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
A_CREATE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
A_DELETE = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
A_COMMAND = f"{SHELL_URI}/Command"
A_SEND = f"{SHELL_URI}/Send"
A_RECEIVE = f"{SHELL_URI}/Receive"
A_SIGNAL = f"{SHELL_URI}/Signal"
CODE_OPERATION_TIMEOUT = 2150858793
CODE_SHELL_NOT_FOUND = 2150858843
CODE_INTERNAL = 2147943418


class WsmanFault(Exception):
    def __init__(self, status: int, code: int, subcode: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.code = code
        self.subcode = subcode
        self.reason = reason


def element_text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def parse_timeout(text: str) -> float:
    # ISO 8601 "PT20S" or "PT20.000S", as pywinrm sends.
    if text.startswith("PT") and text.endswith("S"):
        with contextlib.suppress(ValueError):
            return float(text[2:-1])
    return 20.0


def envelope(action: str, relates_to: str, body: str) -> bytes:
    return (
        '<s:Envelope xml:lang="en-US" '
        f'xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" xmlns:x="{NS["x"]}" '
        f'xmlns:w="{NS["w"]}" xmlns:rsp="{NS["rsp"]}" xmlns:p="{NS["p"]}">'
        "<s:Header>"
        f"<a:Action>{escape(action)}Response</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID>"
        "<a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To>"
        f"<a:RelatesTo>{escape(relates_to)}</a:RelatesTo>"
        "</s:Header>"
        f"<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def fault_envelope(fault: WsmanFault, machine: str) -> bytes:
    return (
        f'<s:Envelope xml:lang="en-US" xmlns:s="{NS["s"]}" xmlns:a="{NS["a"]}" '
        f'xmlns:w="{NS["w"]}">'
        "<s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action>"
        f"<a:MessageID>uuid:{str(uuid.uuid4()).upper()}</a:MessageID></s:Header>"
        "<s:Body><s:Fault>"
        f"<s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>{fault.subcode}</s:Value>"
        "</s:Subcode></s:Code>"
        f'<s:Reason><s:Text xml:lang="en-US">{escape(fault.reason)}</s:Text></s:Reason>'
        "<s:Detail>"
        '<f:WSManFault xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault" '
        f'Code="{fault.code}" Machine="{escape(machine)}">'
        f"<f:Message>{escape(fault.reason)}</f:Message></f:WSManFault>"
        "</s:Detail></s:Fault></s:Body></s:Envelope>"
    ).encode()
