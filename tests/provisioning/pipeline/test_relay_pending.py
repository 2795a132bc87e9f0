"""What a relay wave's first laptop counts as still coming (``JobEngine._up_to_stream``'s
parts): queued runs not past the stream step, of the wave's image at the wave's site
only, read from the database; and this worker's live runs, per image and site."""

from __future__ import annotations

from core.db import Database
from inventory.models import Site
from provisioning.pipeline.execution import LiveRuns
from provisioning.pipeline.steps import STREAM_INDEX
from provisioning.runs import repository
from provisioning.runs.models import ProvisioningRun, RunStatus
from tests.support.factories import World, create_devices


def test_queued_runs_count_for_their_own_image_and_site_only(db: Database, world: World) -> None:
    site_id = world.bench.site_id
    with db.session() as s:
        other = Site(code="LYO", name="Lyon")
        s.add(other)
        s.flush()
        serials = [f"ACME01{i:02d}" for i in range(7)]
        devices = create_devices(s, delivery=world.acme_delivery, serials=serials)
        rows = [
            (site_id, 7, RunStatus.QUEUED, 0),
            (site_id, 7, RunStatus.QUEUED, STREAM_INDEX),  # retrying its stream: coming
            (site_id, 7, RunStatus.QUEUED, STREAM_INDEX + 1),  # past it: not coming
            (site_id, 7, RunStatus.RUNNING, 0),  # a worker's: counted by that worker
            (site_id, 8, RunStatus.QUEUED, 0),  # another image
            (other.id, 7, RunStatus.QUEUED, 0),  # another site
            (None, 7, RunStatus.QUEUED, 0),  # no site
        ]
        for device, (site, image, status, index) in zip(devices, rows, strict=True):
            assert device.id is not None
            s.add(
                ProvisioningRun(
                    device_id=device.id, client_id=world.acme.id, site_id=site,
                    image_id=image, status=status, step_index=index,
                )
            )  # fmt: skip
    with db.session(write=False) as s:

        def count(site: int | None, image: int) -> int:
            return repository.queued_up_to_step(
                s, step_index=STREAM_INDEX, site_id=site, image_id=image
            )

        assert count(site_id, 7) == 2
        assert count(site_id, 8) == 1
        assert count(other.id, 7) == 1
        assert count(None, 7) == 1
        assert count(site_id, 9) == 0


def test_live_runs_count_per_image_and_site() -> None:
    live = LiveRuns()
    live.add([1, 2, 3, 4])
    live.place(1, "linux", 0, (1, 7))
    live.place(2, "linux", STREAM_INDEX, (1, 7))
    live.place(3, "linux", STREAM_INDEX + 1, (1, 7))  # past the stream step
    live.place(4, "linux", 0, (1, 8))
    assert live.up_to(STREAM_INDEX, (1, 7)) == 2
    assert live.up_to(STREAM_INDEX, (1, 8)) == 1
    assert live.up_to(STREAM_INDEX, (2, 7)) == 0
    live.discard(2)
    assert live.up_to(STREAM_INDEX, (1, 7)) == 1
