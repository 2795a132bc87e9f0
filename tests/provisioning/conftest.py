from collections.abc import Iterator

import pytest

from provisioning.bootcontrol import registry
from tests.support.lab import lab

__all__ = ["lab", "static_default"]


@pytest.fixture
def static_default() -> Iterator[None]:
    """An unwired slot under the ``static`` control, as when
    ``MASTERLINE_BOOT_DEFAULT_CONTROL=static`` (``wiring.wire`` makes ``registered`` the
    default): for tests of what an unwired slot does under static wiring."""
    before = registry.default_name()
    registry.set_default("static")
    try:
        yield
    finally:
        registry.set_default(before)
