"""The tus 1.0.0 headers, parsed strictly: the protocol version, ``Upload-Metadata`` and the
integer headers, with the errors the protocol asks for (412 for a version we do not
speak, 400 for a header that does not parse). Nothing here knows the web framework."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from core.errors import MasterlineError
from core.values import ascii_int

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination"


Headers = Mapping[str, str]
"""Request headers, looked up by lower-case name (Starlette's ``Headers`` is one)."""


MAX_METADATA = 4096
"""Longest ``Upload-Metadata`` header accepted (ours carries one small integer)."""


class TusVersionUnsupported(MasterlineError):
    status_code = 412
    exit_code = 2
    title = "Precondition failed"


class TusHeaderInvalid(MasterlineError):
    """A tus header that does not parse: 400, as the protocol asks."""

    status_code = 400
    exit_code = 2
    title = "Bad request"


_METADATA_KEY = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


def parse_metadata(header: str) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64value`` pairs (tus 1.0.0): keys
    ASCII without spaces or commas and each given once, values strict base64 of UTF-8.

    :raises TusHeaderInvalid: malformed.
    """
    if len(header) > MAX_METADATA:
        raise TusHeaderInvalid(f"Upload-Metadata is longer than {MAX_METADATA} characters")
    out: dict[str, str] = {}
    for item in header.split(","):
        item = item.strip()
        if not item:
            continue
        key, _, value = item.partition(" ")
        if not set(key) <= _METADATA_KEY or " " in value.strip():
            raise TusHeaderInvalid("Upload-Metadata: keys are ASCII words, values base64")
        if key in out:
            raise TusHeaderInvalid(f"Upload-Metadata: key '{key}' given twice")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode() if value else ""
        except (ValueError, UnicodeDecodeError) as e:  # binascii.Error is a ValueError
            raise TusHeaderInvalid(f"Upload-Metadata: value of '{key}' is not base64") from e
    return out


def check_tus_version(headers: Headers) -> None:
    if headers.get("tus-resumable") != TUS_VERSION:
        raise TusVersionUnsupported(f"send Tus-Resumable: {TUS_VERSION}")


def int_header(headers: Headers, name: str) -> int:
    """:raises TusHeaderInvalid: missing, or not ASCII digits below 2^63."""
    value = ascii_int(headers.get(name.lower(), "").strip())
    if value is None:
        raise TusHeaderInvalid(f"{name} header missing or not a non-negative integer below 2^63")
    return value
