"""The vocabulary of a plan and the checks on every value that goes into one.

Every value that ends up in a file path, a PowerShell literal or an Ansible variable is
checked here, once: names are restricted to a safe alphabet, free text may not contain
control characters, a hostname is an RFC 1123 label (15 characters at most on Windows).
Bad configuration is a fatal ``InvalidPlan`` with one line.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from provisioning.errors import InvalidPlan


class OsFamily(StrEnum):
    LINUX = "linux"
    WINDOWS = "windows"


class VpnKind(StrEnum):
    WIREGUARD = "wireguard"
    OPENVPN = "openvpn"
    IKEV2 = "ikev2"
    # A vendor client (e.g. a corporate SSL VPN): install its app, write its profile.
    VENDOR = "vendor"


class AppSource(StrEnum):
    """Where an app comes from. ``package``: the distribution's package manager on Linux
    (apt) or winget on Windows; ``msi`` (Windows) / ``deb`` (Linux): an installer file
    already on the laptop, at ``package`` (the client's store installers are copied there
    by the offline step, in the provisioning environment, not pushed through WinRM)."""

    PACKAGE = "package"
    MSI = "msi"
    DEB = "deb"


class Check(StrEnum):
    """The gate's checks, as named in a client's configuration."""

    IMAGE_HASH = "image_hash"
    HOSTNAME = "hostname"
    VPN_PROFILE = "vpn_profile"
    APPS = "apps"


ALL_CHECKS: tuple[Check, ...] = tuple(Check)

# Installers from the client's image store are copied here by the offline step (through
# the mounted installed system, ``imaging/installers.py``), then installed from the
# laptop's own disk.
WINDOWS_INSTALLER_DIR = "C:\\ProgramData\\Masterline\\Installers"
LINUX_INSTALLER_DIR = "/var/cache/masterline/installers"
_E = TypeVar("_E", bound=StrEnum)

# Names that become file names (VPN profile, app marker) or PowerShell literals.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
# RFC 1123 label; Windows adds the 15-character NetBIOS limit.
_HOSTNAME = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_WINDOWS_HOSTNAME_MAX = 15
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f]")
_MAX_TEXT = 64 * 1024


def valid_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise InvalidPlan(f"{what} {value!r} is not a valid name (letters, digits, _.+-)")
    return value


def single_line(value: object, what: str, *, max_len: int = 1024) -> str:
    """A single-line value (server, package id, path, setting)."""
    text = str(value)
    if len(text) > max_len or _CONTROL_OR_NEWLINE.search(text):
        raise InvalidPlan(f"{what} must be a single line of at most {max_len} characters")
    return text


def free_text(value: object, what: str) -> str:
    """A multi-line value (a PEM block, a profile body): newlines and tabs allowed."""
    text = str(value)
    if len(text) > _MAX_TEXT or _CONTROL.search(text):
        raise InvalidPlan(f"{what} must be text of at most {_MAX_TEXT} characters")
    return text


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "app"


def render_hostname(pattern: str, fields: Mapping[str, str]) -> str:
    """Render a client's hostname pattern such as ``ACME-{serial}``.

    Only ``{name}`` placeholders of known fields are allowed (no attribute access or
    format specs: the pattern comes from a client's DSI).

    :raises InvalidPlan: empty pattern, unknown or malformed placeholder.
    """
    if not pattern:
        raise InvalidPlan("the configuration has no hostname pattern")
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(pattern))
    except ValueError as e:
        raise InvalidPlan(f"hostname pattern {pattern!r} is malformed") from e
    for literal, name, spec, conversion in parsed:
        out.append(literal)
        if name is None:
            continue
        if spec or conversion or name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise InvalidPlan(f"hostname pattern field {{{name}}} is unknown (known: {known})")
        out.append(re.sub(r"[^A-Za-z0-9-]", "-", str(fields[name])))
    return "".join(out)


def validate_hostname(hostname: str, family: OsFamily) -> str:
    """:raises InvalidPlan: not an RFC 1123 label, or longer than 15 on Windows."""
    if not _HOSTNAME.match(hostname):
        raise InvalidPlan(f"hostname {hostname!r} is not a valid host name")
    if family is OsFamily.WINDOWS and len(hostname) > _WINDOWS_HOSTNAME_MAX:
        raise InvalidPlan(
            f"hostname {hostname!r} is longer than Windows' {_WINDOWS_HOSTNAME_MAX} characters"
        )
    return hostname


def parse_enum(kind: type[_E], value: object, what: str) -> _E:
    try:
        return kind(str(value).lower())
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise InvalidPlan(f"{what} {value!r} is not one of: {allowed}") from None


def as_list(value: object, what: str) -> Sequence[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise InvalidPlan(f"{what} must be a list")
    if len(value) > 64:
        raise InvalidPlan(f"{what} has more than 64 entries")
    return value


def as_mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidPlan(f"{what} must be a mapping")
    return value


def is_free_text(text: str) -> bool:
    """Whether ``text`` passes ``free_text`` (for values that must not be echoed)."""
    return len(text) <= _MAX_TEXT and not _CONTROL.search(text)
