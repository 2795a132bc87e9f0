"""The boot domain's fixtures (two sites, bench credentials, PAR with a worker key, a
data directory of the test's own), for the boot controls that read registrations, and
``lab`` in the installation's place (``<data dir>/lab``): where the ``registered``
control's lab option provider looks for the laptops that registered."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.lab import Lab
from tests.boot.conftest import boot, boot_settings

__all__ = ["boot", "boot_settings", "lab"]


@pytest.fixture
def lab(tmp_path: Path, boot_settings: None) -> Iterator[Lab]:
    the_lab = Lab(root=tmp_path / "data" / "lab")
    try:
        yield the_lab
    finally:
        the_lab.down()
