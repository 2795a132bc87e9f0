"""The PE built once per session (and cached across runs, see tests/support/pe.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.pe import cached_pe


@pytest.fixture(scope="session")
def pe_build() -> tuple[Path, dict[str, Any]]:
    return cached_pe()
