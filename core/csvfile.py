"""CSV in and out, one way for the whole product.

**Reading** (``read_records``): the files people send (ship notices, dispatch lists,
carrier reports) come from Excel and vendors' tools. Decoded as UTF-8 with or without a
byte-order mark, UTF-16 with one, else Windows-1252; the separator (``,``, ``;`` or a
tab) detected from the first line; records that are blank skipped; each record given
with the physical line it starts on (quoted fields may span lines). Bad content is
reported through a callback, never raised, so that a caller can list every error of a
file at once.

**Writing** (``write_csv``, ``escape_cell``): every CSV the product emits goes through
one writer that neutralises spreadsheet formulas (CSV injection, OWASP): a cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a ``'`` in
front, so Excel and LibreOffice show it as text instead of running it (``=cmd|' /C
calc'!A0``, ``=HYPERLINK(...)``). The cost: a value such as ``+33 6 12 34 56 78``
reads ``'+33 6 12 34 56 78`` in the file. Formats with rules of their own that forbid
the quote (the Windows Autopilot CSV) refuse such values instead (see
``logistics.autopilot``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
DELIMITERS = (",", ";", "\t")

ErrorSink = Callable[[int | None, str], None]
"""Called with (line, message) for content that cannot be read."""


def decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252.

    Windows-1252 is tried last because any byte string that is valid UTF-8 is what the
    sender meant; the reverse is not true.

    :raises UnicodeDecodeError: none of them fits (cp1252 leaves five bytes undefined).
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252")


def delimiter_of(first_line: str) -> str:
    """The separator a spreadsheet used: the most frequent of ``,`` ``;`` tab on the
    first line (``;`` is what a French or German Excel writes)."""
    counts = {d: first_line.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_records(data: bytes, error: ErrorSink) -> Iterator[tuple[int, list[str]]]:
    """``(line, cells)`` for each non-blank record of ``data``, in order.

    Reports through ``error`` (and then stops): text that is not UTF-8, UTF-16 or
    Windows-1252 (with the line of the first bad byte), an empty file, CSV the parser
    cannot resynchronise after (an unclosed quote at the end, say).
    """
    try:
        text = decode(data)
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        error(line, "not UTF-8 or Windows-1252 text (is this a spreadsheet?)")
        return
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if not first:
        error(1, "the file is empty")
        return
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter_of(first))
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            # The csv module cannot resynchronise after this; stop here.
            error(reader.line_num or start, f"unreadable CSV: {e}")
            return
        if any(c.strip() for c in cells):
            yield start, cells


def escape_cell(value: object) -> str:
    """The cell as text a spreadsheet will not run as a formula (``None`` is empty)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def write_csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """RFC 4180 text (CRLF line ends, quotes where needed), every cell escaped."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([escape_cell(h) for h in header])
    for row in rows:
        writer.writerow([escape_cell(v) for v in row])
    return buf.getvalue()
