"""The ship-notice formats, apart from the API's schemas: ``masterline intake`` names
them on the command line, and importing ``inventory.schemas`` (pydantic models built at
import) cost the CLI a tenth of its 0.3 s start-up budget (docs/benchmarks.md, "CLI
start-up")."""

from __future__ import annotations

from enum import StrEnum


class IntakeFormat(StrEnum):
    GENERIC = "generic"
    """The documented generic ship-notice CSV (docs/intake.md)."""
    AUTOPILOT = "autopilot"
    """The Windows Autopilot hardware-hash CSV."""
