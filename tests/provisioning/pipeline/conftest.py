"""The ``bench`` of the pipeline tests: lab laptops plugged into the world's bench, the
client's Linux image published and its configuration active."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db import Database
from lab.lab import Lab
from tests.support.factories import World
from tests.support.harness import LINUX_CONFIG, Bench, activate_config, local_store, publish_image
from tests.support.images import make_image


@pytest.fixture
def bench(
    db: Database, world: World, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Bench]:
    with local_store(tmp_path, monkeypatch):
        image = make_image(tmp_path / "img", mib=4)
        assert world.acme.id is not None
        publish_image(db, client_id=world.acme.id, image=image, os_family="linux")
        activate_config(db, client_id=world.acme.id, body=LINUX_CONFIG)
        yield Bench(db=db, world=world, lab=lab, tmp=tmp_path)
