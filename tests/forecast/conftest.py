from collections.abc import Iterator

import pytest

from core.settings import get_settings
from tests.provisioning.pipeline.conftest import bench
from tests.support.lab import lab

__all__ = ["bench", "lab"]


@pytest.fixture(autouse=True)
def webhook_receivers_here(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The alert tests subscribe 127.0.0.1, which webhooks refuse by default (SSRF): it
    goes through the allow-list, as an on-premise receiver would; a fixed secret key so
    that no key file is written in the repository."""
    monkeypatch.setenv("MASTERLINE_SECRET_KEY", "forecast-test-key")
    monkeypatch.setenv("MASTERLINE_WEBHOOK_ALLOW_NETWORKS", "127.0.0.1/32")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
