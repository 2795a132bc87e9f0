"""What other domains do when logistics purges personal data, registered at start.

Logistics sits below the help desk, so it never imports it: the help desk appends its
purge step here when the process starts (``wiring.wire``). A step runs inside the
purge's transaction, must not commit, and returns counts for the command's report.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlmodel import Session

PurgeStep = Callable[[Session, datetime, datetime], dict[str, int]]
"""``(session, before, now)``: anonymise what is older than ``before``, and what belongs
to people erased by now; returns how many rows of each kind changed."""

ON_PURGE: list[PurgeStep] = []


def register_purge(step: PurgeStep) -> None:
    """Add ``step`` once (``wire()`` is idempotent)."""
    if step not in ON_PURGE:
        ON_PURGE.append(step)
