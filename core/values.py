"""Values from the wire, checked the same way everywhere: 64-bit integers and names.

- **Integers.** Every integer the API accepts (ids, cursors, limits, sizes) is a signed
  64-bit one: that is what both databases store. Pydantic alone accepts any Python
  integer, and 2^63 used to reach SQLite as an ``OverflowError`` (a 500).
  ``api.deps.TransactionalRoute`` bounds the integer parameters of every route;
  schemas use ``Int64`` (a test walks the OpenAPI for any integer left unbounded).
- **Header integers** are ASCII digits only: ``str.isdigit()`` also accepts ``²`` and
  ``٣``, which ``int()`` then refuses (another 500).
- **Names** that people read and that join shared catalogues (vendor and model names)
  must have a visible character and no control, format (zero-width) or separator
  character: a vendor named U+200B would be a second, invisible "Dell".
"""

from __future__ import annotations

import re
import types
import unicodedata
from typing import Annotated, Any, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic import AfterValidator, Field

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Int64 = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
"""Any integer a database column can hold."""

_ASCII_DIGITS = re.compile(r"[0-9]{1,19}")


def ascii_int(text: str) -> int | None:
    """``text`` as a non-negative 64-bit integer, or None: ASCII digits only, no sign,
    no spaces, at most 2^63-1."""
    if not _ASCII_DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= INT64_MAX else None


# Cc control, Cf format (zero-width space, joiners, BOM, bidi marks), Cs surrogates,
# Co private use, Cn unassigned, Zl/Zp line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def check_name(value: str) -> str:
    """A display name: trimmed, with a visible character, without control, format or
    line-separator characters; inner spaces are kept (``Latitude 5440``).

    :raises ValueError: (pydantic turns it into a 422) with the reason.
    """
    value = unicodedata.normalize("NFC", value).strip()
    if not value:
        raise ValueError("must not be blank")
    for ch in value:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            raise ValueError(f"must not contain control or invisible characters (U+{ord(ch):04X})")
    if not any(not ch.isspace() for ch in value):
        raise ValueError("must not be blank")
    return value


VendorName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(check_name)]
ModelName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(check_name)]


_BOUNDS = (Ge(INT64_MIN), Le(INT64_MAX))


def bounded_ints(annotation: Any) -> Any:
    """``annotation`` with every bare ``int`` in it made an ``Int64`` (through
    ``Annotated``, ``Optional`` and unions; ``bool`` is left alone)."""
    if annotation is int:
        return Annotated[int, *_BOUNDS]
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *meta = get_args(annotation)
        bounded = bounded_ints(inner)
        return annotation if bounded is inner else Annotated[bounded, *meta]
    if origin in (Union, types.UnionType):
        args = get_args(annotation)
        new = tuple(bounded_ints(a) for a in args)
        return annotation if new == args else Union[new]  # noqa: UP007 - built from a tuple
    return annotation
