"""What a step is handed: its ``StepContext``, built from committed rows when the step
begins, with the callbacks through which a running step reports (progress, configure
events) and learns that its run was aborted or taken away.

The laptop's boot control (``bootcontrol/``) says where its PE answers; the plan builder
says where its installed OS answers and what to apply to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from core import metrics
from core.db import Database
from core.timeutil import utcnow
from images import repository as image_repo
from images import store
from images.models import Image
from inventory import repository as inventory_repo
from inventory.models import Device
from provisioning.bootcontrol import registry as boot_controls
from provisioning.bootcontrol.base import BootControl, PeAccess
from provisioning.configure.build import build_plan
from provisioning.configure.plan import ConfigPlan, OsFamily, OsTarget
from provisioning.errors import Aborted, CommandFailed
from provisioning.imaging.cache import ImageSource
from provisioning.pipeline.bandwidth import RELAY_KEY, SENDING_STEPS, SHARE_KEY, SiteShares
from provisioning.pipeline.config import EngineConfig
from provisioning.pipeline.steps import Step, StepContext
from provisioning.runs import lifecycle, repository
from provisioning.runs.models import ProvisioningRun, RunStatus

if TYPE_CHECKING:  # without importing ansible-runner here
    from provisioning.pipeline.relays import RelayWaves
    from provisioning.pipeline.waves import LinuxWaves

log = logging.getLogger("masterline.worker")


class StepLost(Exception):
    """The run is no longer ours (aborted, failed by a timeout, taken by another)."""


def owned_by(run: ProvisioningRun | None, worker_id: str) -> bool:
    return run is not None and run.status == RunStatus.RUNNING and run.worker_id == worker_id


def default_plan_builder(
    session: Session, device: Device, image: Image, boot: BootControl, pe: PeAccess
) -> tuple[OsTarget, ConfigPlan]:
    """The client's plan for ``device`` (``configure/build.py``), and where its
    installed OS answers after the reboot (its boot control's ``os_target``)."""
    plan = build_plan(session, device, image)
    return boot.os_target(session, device, pe, OsFamily(plan.os_family)), plan


def run_image(session: Session, image_id: int | None) -> Image:
    """The image a run was queued with (not whatever resolves now: a newer version
    published mid-run must not change what a resumed step writes or checks).

    :raises CommandFailed: it is gone from the catalogue.
    """
    image = image_repo.get_image(session, image_id) if image_id is not None else None
    if image is None:
        raise CommandFailed(f"image {image_id} of this run is no longer in the catalogue")
    return image


def image_source(image: Image) -> ImageSource:
    """Adapt the images domain's row to what imaging needs."""
    assert image.id is not None
    size = int(image.stored_size)
    return ImageSource(
        image_id=image.id,
        path=Path(store.path_of(image)),
        format=str(image.format),
        size=size,
        sha256=image.stored_sha256,
        raw_size=int(image.raw_size or size),
        raw_sha256=image.raw_sha256 or image.stored_sha256,
    )


class ContextBuilder:
    """Builds the context of each step a worker begins, inside its begin transaction."""

    def __init__(
        self,
        db: Database,
        config: EngineConfig,
        *,
        shares: SiteShares,
        waves: LinuxWaves | None,
        cancelled: Callable[[int], bool],
        relays: RelayWaves | None = None,
    ) -> None:
        self.db = db
        self.config = config
        self.me = config.worker_id
        self.shares = shares
        self.waves = waves
        self.relays = relays
        self._cancelled = cancelled

    def build(self, s: Session, run: ProvisioningRun, device: Device, step: Step) -> StepContext:
        """:raises ProvisioningError, MasterlineError: the step cannot even start (the
        laptop cannot be reached, its image is gone...)."""
        assert run.id is not None and device.id is not None
        boot = boot_controls.select(s, device)
        pe = boot.pe_access(s, device)
        bench = inventory_repo.get_bench(s, device.bench_id) if device.bench_id else None
        site = repository.get_site(s, bench.site_id if bench else None)
        site_code = site.code if site else "default"
        model = (
            inventory_repo.get_hardware_model_by_id(s, device.hardware_model_id)
            if device.hardware_model_id
            else None
        )
        source = image_source(run_image(s, run.image_id))
        bucket = None
        if step.name in SENDING_STEPS and site is not None and site.max_bytes_per_second:
            assert site.id is not None
            bucket = self.shares.register(run.id, site.id)
        run_id = run.id
        return StepContext(
            run_id=run_id,
            serial=device.serial,
            os_family=run.os_family,
            boot=boot,
            pe_access=pe,
            disk_rule=model.disk_rule if model else "largest",
            site_code=site_code,
            cache_dir=self.config.cache_dir / site_code,
            image=source,
            state=dict(run.context),
            timeout=self.config.step_timeouts.get(step.name, step.timeout),
            progress=self._progress_reporter(run_id),
            on_event=self._event_recorder(run_id, step.name),
            plan_loader=self._plan_loader(device.id, run.image_id, boot, pe),
            cancelled=lambda: self._cancelled(run_id),
            bucket=bucket,
            waves=self.waves if self.config.configure_wave_seconds > 0 else None,
            relays=self.relays,
            site_id=site.id or 0 if site is not None else 0,
            relay_mark=self._relay_marker(run_id),
            mark=self._context_marker(run_id),
        )

    def _context_marker(self, run_id: int) -> Callable[[dict[str, Any]], None]:
        def mark(values: dict[str, Any]) -> None:
            with self.db.session() as s:
                run = repository.get_run_for_update(s, run_id)
                if not owned_by(run, self.me):
                    # Not recorded, so not done: another worker (or a technician) has it.
                    raise Aborted("the run is no longer this worker's")
                assert run is not None
                run.context = {**run.context, **values}
                s.add(run)

        return mark

    def _relay_marker(self, run_id: int) -> Callable[[dict[str, Any] | None], None]:
        def mark(info: dict[str, Any] | None) -> None:
            with self.db.session() as s:
                run = repository.get_run_for_update(s, run_id)
                if not owned_by(run, self.me):
                    return
                assert run is not None
                context = {**run.context, RELAY_KEY: info}
                if info is not None and not info.get("carrier"):
                    context[SHARE_KEY] = 0  # relayed: the wave's carrier holds its share
                run.context = context
                s.add(run)
            self.shares.wake()

        return mark

    def _plan_loader(
        self, device_id: int, image_id: int | None, boot: BootControl, pe: PeAccess
    ) -> Callable[[], tuple[OsTarget, ConfigPlan]]:
        builder = self.config.plan_builder or default_plan_builder
        cache: dict[str, tuple[OsTarget, ConfigPlan]] = {}

        def load() -> tuple[OsTarget, ConfigPlan]:
            if "plan" not in cache:
                # A write session: the first plan of a WireGuard device stores its key.
                with self.db.session() as rs:
                    fresh = inventory_repo.get_device(rs, device_id)
                    assert fresh is not None
                    cache["plan"] = builder(rs, fresh, run_image(rs, image_id), boot, pe)
            return cache["plan"]

        return load

    def _progress_reporter(self, run_id: int) -> Callable[[int, int], None]:
        start = time.monotonic()
        state = {"last": 0.0, "rate": 0.0, "prev_bytes": 0.0, "prev_t": start}
        counted = [0]  # bytes already added to the streamed-bytes counter (a retry restarts)

        def report(sent: int, total: int) -> None:
            metrics.streamed(sent - counted[0] if sent >= counted[0] else sent)
            counted[0] = sent
            now = time.monotonic()
            if sent < total and now - state["last"] < 0.5 and sent != 0:
                return
            dt = now - state["prev_t"]
            if dt > 0 and sent > state["prev_bytes"]:
                inst = (sent - state["prev_bytes"]) / dt
                state["rate"] = inst if state["rate"] == 0 else 0.7 * state["rate"] + 0.3 * inst
            state["prev_bytes"], state["prev_t"], state["last"] = sent, now, now
            rate = state["rate"]
            with self.db.session() as s:
                run = repository.get_run_for_update(s, run_id)
                if not owned_by(run, self.me):
                    raise StepLost()
                assert run is not None
                run.progress_bytes, run.progress_total = sent, total
                run.rate_bps = float(rate)
                run.eta_seconds = (total - sent) / rate if rate > 0 else None
                run.updated_at = utcnow()
                s.add(run)
                if run.abort_requested:
                    raise Aborted("aborted by a technician")

        return report

    def _event_recorder(self, run_id: int, step: str) -> Callable[[dict[str, Any]], None]:
        def record(event: dict[str, Any]) -> None:
            kind = str(event.get("event") or event.get("kind") or "event")[:24]
            message = str(event.get("message") or event.get("task") or kind)[:1000]
            details = {k: v for k, v in event.items() if isinstance(v, str | int | float | bool)}
            # These come from threads beside the run's own (a relay wave, Ansible's
            # events), so two lines of one run may take the same number at once: on
            # PostgreSQL (READ COMMITTED) both read the same last number and one insert
            # fails on (run_id, seq). The run's row is locked first (the writers of its
            # log take turns), and a line that still collides (a writer that numbered
            # its line before it touched the run) is numbered again, a few times at most.
            for attempt in range(5):
                try:
                    with self.db.session() as s:
                        run = repository.get_run_for_update(s, run_id)
                        if run is None:
                            return
                        lifecycle.add_event(
                            s, run, step=step, kind=kind, message=message, details=details
                        )
                    return
                except IntegrityError:
                    if attempt == 4:
                        log.exception("could not number an event of run %s", run_id)
                except Exception:
                    log.exception("could not record an event of run %s", run_id)
                    return

        return record
