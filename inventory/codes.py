"""What a scannable code (serial number, asset tag) is: one rule for scan-in, the
ship-notice import and every look-up by code (docs/intake.md, "Scannable codes").

1. **Normalised**: Unicode NFKC (a scanner behind a full-width input method sends
   U+FF21 U+FF22 U+FF23 for ``ABC``); blanks and line ends around it removed (scanners
   end a scan with CR, LF or Tab); an AIM symbology identifier in front (``]C1`` for
   Code 128, ``]Q1`` for QR: a scanner set to send it) removed; upper-cased.
2. **Allowed characters**: ASCII letters and digits and ``. _ / -``, starting with a
   letter or a digit. Real serials have dashes and slashes (``00330-80000``,
   ``CN/0F12``); nothing real has a space, a control character, an invisible character
   (zero-width space, byte-order mark) or a letter that only looks Latin (Cyrillic
   U+0410 for ``A``), and each of those would make a second, unfindable record of a
   laptop.
3. **Length**: 2 to 64 characters after normalisation (the column holds 64).

Anything else is refused with one message that names the first offending character,
and nothing is written.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import InvalidInput

MIN_LENGTH = 2
MAX_LENGTH = 64
ALLOWED = "A-Z, 0-9 and . _ / -"
_AIM_PREFIX = re.compile(r"^\][A-Za-z][0-9A-Za-z]")
_VALID = re.compile(r"^[A-Z0-9][A-Z0-9._/-]*$")
_SHAPE = re.compile(r"[A-Za-z0-9._/-]")


class InvalidCode(InvalidInput):
    title = "Not a scannable code"


def normalize(raw: str) -> str:
    """The normalised form (step 1 above), without validation: for look-ups that simply
    find nothing when given garbage."""
    text = unicodedata.normalize("NFKC", raw).strip()
    text = _AIM_PREFIX.sub("", text, count=1).strip()
    return text.upper() if text.isascii() else text


def normalize_code(code: str) -> str:
    """The normal form serials and asset tags compare in (``normalize``)."""
    return normalize(code)


def problem(raw: str, *, label: str = "code") -> str | None:
    """Why ``raw`` is not a scannable code, or ``None`` when it is."""
    value = normalize(raw)
    if not value:
        return f"{label} is empty"
    shown = _show(value)
    rule = f"a {label} is {MIN_LENGTH} to {MAX_LENGTH} of {ALLOWED}, starting with A-Z or 0-9"
    bad = next((c for c in value if not _SHAPE.fullmatch(c)), None)
    if bad is not None:
        return f"{label} {shown} contains {_describe(bad)}: {rule}"
    if not (MIN_LENGTH <= len(value) <= MAX_LENGTH):
        return f"{label} {shown} has {len(value)} characters: {rule}"
    if not _VALID.match(value):
        return f"{label} {shown} starts with {value[0]!r}: {rule}"
    return None


def scannable(raw: str, *, label: str = "code") -> str:
    """The normalised code.

    :raises InvalidCode: not a scannable code (422, one line saying why).
    """
    why = problem(raw, label=label)
    if why is not None:
        raise InvalidCode(why)
    return normalize(raw)


def _show(value: str) -> str:
    """The value as a technician can read it: quoted, invisible characters spelt out
    (``\\u200b``), cut at 40 characters."""
    cut = value[:40] + ("…" if len(value) > 40 else "")
    return "'" + "".join(c if c.isprintable() and c.isascii() else _escape(c) for c in cut) + "'"


def _escape(c: str) -> str:
    return f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"


def _describe(c: str) -> str:
    if c == " ":
        return "a space"
    name = unicodedata.name(c, "")
    spelt = f"U+{ord(c):04X}" + (f" {name}" if name else "")
    if not c.isprintable() or unicodedata.category(c) in ("Cf", "Zs", "Zl", "Zp"):
        return f"an invisible or control character ({spelt})"
    if c.isalnum():
        return f"a letter or digit outside A-Z and 0-9 ({spelt})"
    return f"the character {c!r} ({spelt})"
