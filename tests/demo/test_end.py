"""The last screen of ``make run`` at 80 and 200 columns: every failure's whole cause
(wrapped, not cut), the URL, the admin token and the next commands."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from demo.end import final_summary

TOKEN = "mlt_" + "A1b2C3d4E5" * 4 + "xyz"
CAUSE = (
    "verify: sha256 of the written disk is 3f5a…9c01, the image declared 77be…2d14 "
    "(read back 8388608 bytes from /dev/nvme0n1 on laptop LABCD0002; the disk returned "
    "a flipped byte at offset 4096)"
)
ROWS = [
    {"id": 1, "serial": "LABCD0001", "slot": 1, "status": "succeeded", "device_state": "ready"},
    {
        "id": 2,
        "serial": "LABCD0002",
        "slot": 2,
        "status": "failed",
        "device_state": "failed_imaging",
        "failed_step": "verify_image",
        "last_error": CAUSE,
    },
]


def _render(width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, legacy_windows=False)
    console.print(final_summary(ROWS, base="http://127.0.0.1:8000", token=TOKEN))
    return out.getvalue()


def _flat(screen: str) -> str:
    """The text without the panel's borders, lines joined by single spaces."""
    lines = [line.strip().strip("│╭╮╰╯─").strip() for line in screen.splitlines()]
    return re.sub(r"\s+", " ", " ".join(line for line in lines if line))


@pytest.mark.parametrize("width", [80, 200])
def test_final_screen_says_what_happened_and_what_next(width: int) -> None:
    screen = _render(width)
    assert max(len(line) for line in screen.splitlines()) <= width
    flat = _flat(screen)
    assert "1 of 2 laptops READY, 1 failed" in flat
    # The whole cause, wrapped at 80 columns but never cut.
    assert re.sub(r"\s+", " ", CAUSE) in flat
    assert "LABCD0002 (run 2, slot 2) failed at verify_image" in flat
    assert "http://127.0.0.1:8000" in flat and "http://127.0.0.1:8000/docs" in flat
    # The token is on one line (copyable), and so is the export command.
    assert any(TOKEN in line for line in screen.splitlines())
    assert any(f"export MASTERLINE_TOKEN={TOKEN}" in line for line in screen.splitlines())
    for command in ("masterline watch --all", "masterline runs show", "masterline runs retry"):
        assert command in flat
    assert "Ctrl-C" in flat


def test_nothing_failed_says_so() -> None:
    rows = [dict(ROWS[0])]
    flat = _flat(_render(80))
    assert "failed" in flat  # the two-row screen above
    only_ok = io.StringIO()
    Console(file=only_ok, width=80, color_system=None).print(
        final_summary(rows, base="http://x:1", token=TOKEN)
    )
    assert "1 of 1 laptops READY" in only_ok.getvalue()
    assert "failed at" not in only_ok.getvalue()
