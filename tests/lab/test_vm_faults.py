"""VM laptops that go wrong, on the same bench as ``test_vm_e2e.py`` (``tests.support.
vm_laptops``: QEMU under TCG on a bench network in a namespace, the API and a real
``masterline worker`` inside it):

* a laptop whose power is cut while its image streams (its QEMU killed: a real power
  cut, nothing in the guest is told): the stream step fails with a plain reason, the run
  waits for the PE, which has gone silent past the site's limit; powered on again
  (network boot, as a technician picks it: the disk is half-written), its PE registers
  again and the run resumes where it stopped, to READY;
* a laptop that fails the site's health policy (TPM 2.0 required, the VM has none): it
  is quarantined with the reason when its PE registers, before any byte is written (its
  disk is still all zeros), and it is on the delivery's dead-on-arrival CSV.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlmodel import col, select

from api.app import create_app
from boot.hardware import service as hardware
from boot.hardware.models import TpmRequirement
from boot.hardware.schemas import PolicyFields
from boot.registration.models import BootStatus, PeBoot
from core.principal import SYSTEM
from inventory import repository as inventory_repo
from inventory.states import DeviceState
from provisioning.runs.models import RunStatus, RunStepEvent
from provisioning.runs.states import STEP_NAMES
from tests.boot.conftest import Boot, boot, boot_settings
from tests.support.harness import local_store
from tests.support.netns import vm_skip
from tests.support.vm_laptops import DISK_BYTES, prepare_site, scan, vm_bench
from tests.support.waiting import eventually

__all__ = ["boot", "boot_settings"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.lab,
    pytest.mark.xdist_group("vm"),  # one VM test at a time on a 2-core machine
    vm_skip(),
]

DEADLINE = 1200.0  # bounds a hang only (a TCG guest on a loaded 2-core machine)
SERIAL = "ACME0001"
CAP_BYTES_PER_SECOND = 1024 * 1024
"""PAR's imaging bandwidth in the power-cut test: the demo OS's 22 MiB then stream for
about 20 s, long enough for the test to see the stream going before it cuts the power."""


def _events(boot: Boot, run_id: int | None) -> list[RunStepEvent]:
    with boot.db.session(write=False) as s:
        return list(
            s.exec(
                select(RunStepEvent)
                .where(RunStepEvent.run_id == run_id)
                .order_by(col(RunStepEvent.seq))
            ).all()
        )


def _all_zero(path: Path) -> bool:
    with path.open("rb") as f:
        while chunk := f.read(8 * 1024 * 1024):
            if chunk.count(0) != len(chunk):
                return False
    return True


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_a_vm_whose_power_is_cut_mid_stream_fails_the_step_and_resumes_when_it_boots_again(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    with local_store(tmp_path, monkeypatch):
        # A PE that misses its heartbeats for 10 s is silent (the default is minutes).
        image = prepare_site(boot, tmp_path, heartbeat_seconds=2, silence_seconds=10)
        with boot.db.session() as s:
            site = inventory_repo.get_site_by_code(s, "PAR")
            assert site is not None
            site.max_bytes_per_second = CAP_BYTES_PER_SECOND
            s.add(site)
        scan(boot, SERIAL)
        with vm_bench(boot, tmp_path, subnet="10.81.0") as bench:
            bench.power_on(1, SERIAL)

            def streaming() -> bool:
                bench.alive()
                run = bench.run_of(SERIAL)
                if run is not None and run.status == RunStatus.FAILED:
                    raise AssertionError(f"failed before the stream\n{bench.what_happened()}")
                if run is not None and STEP_NAMES.index(run.step_name or "identify") > 2:
                    raise AssertionError(f"the stream ended unseen\n{bench.what_happened()}")
                return run is not None and run.step_name == "stream" and run.progress_bytes > 0

            eventually(streaming, timeout=DEADLINE, every=0.2, message=bench.what_happened)
            bench.power_cut(SERIAL)

            # The stream's attempt fails with a plain reason; the next finds the PE silent
            # past the site's limit and the run waits for it, queued, saying why.
            def waiting_for_its_pe() -> bool:
                run = bench.run_of(SERIAL)
                assert run is not None
                if run.status == RunStatus.FAILED:
                    raise AssertionError(f"the run failed\n{bench.what_happened()}")
                return run.status == RunStatus.QUEUED and "silent for" in (run.last_error or "")

            eventually(waiting_for_its_pe, timeout=DEADLINE, every=1.0, message=bench.what_happened)
            run = bench.run_of(SERIAL)
            assert run is not None and run.step_name == "stream"
            waiting = "stream: waiting: the provisioning environment of ACME0001"
            assert (run.last_error or "").startswith(waiting), run.last_error
            failed = [e for e in _events(boot, run.id) if e.kind == "retry"]
            assert failed and all(e.step == "stream" for e in failed)
            assert all("Traceback" not in e.message for e in failed)
            assert bench.device(SERIAL).state == DeviceState.IMAGING

            # Powered on again, from the network (its disk is half-written).
            bench.power_on(1, SERIAL, network_boot_once=True)

            def ready() -> bool:
                bench.alive()
                run = bench.run_of(SERIAL)
                if run is not None and run.status == RunStatus.FAILED:
                    raise AssertionError(f"the run failed\n{bench.what_happened()}")
                return bench.device(SERIAL).state == DeviceState.READY

            eventually(ready, timeout=DEADLINE, every=1.0, message=bench.what_happened)
            done = bench.run_of(SERIAL)
            assert done is not None and done.status == RunStatus.SUCCEEDED
            assert done.context["readback_sha256"] == image.raw_sha256
            events = _events(boot, done.id)
            steps_done = [e.step for e in events if e.kind == "step_done"]
            assert steps_done == list(STEP_NAMES)  # each step done once: resumed, not restarted
            kinds = [e.kind for e in events]
            assert kinds.index("waiting") < kinds.index("pe_registered", kinds.index("waiting"))
            with boot.db.session(write=False) as s:
                first, second = s.exec(select(PeBoot).order_by(col(PeBoot.id))).all()
            assert first.status == BootStatus.ENDED and second.status == BootStatus.ENDED
            assert first.ended_reason == "superseded by a new boot of the same laptop"
            assert second.ended_reason == "rebooted into its installed OS"
            assert boot.credential not in bench.console(SERIAL)


@pytest.mark.parametrize("backend", ["sqlite"])  # the API runs in the namespace: a file DB
def test_a_vm_failing_the_health_policy_is_quarantined_before_any_byte_is_written(
    boot: Boot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASTERLINE_BOOT_RATE_PER_ADDRESS", "1000/minute")
    with local_store(tmp_path, monkeypatch):
        prepare_site(boot, tmp_path)
        # PAR requires TPM 2.0 whatever the image; this VM has no TPM (no swtpm).
        with boot.db.session() as s:
            hardware.set_policy(s, "PAR", PolicyFields(require_tpm2=TpmRequirement.ALWAYS), SYSTEM)
        scan(boot, SERIAL)
        with vm_bench(boot, tmp_path, subnet="10.82.0") as bench:
            bench.power_on(1, SERIAL)

            def refused() -> bool:
                bench.alive()
                return "MASTERLINE-AGENT refused reason=health_policy" in bench.console(SERIAL)

            eventually(refused, timeout=DEADLINE, every=1.0, message=bench.what_happened)
            device = bench.device(SERIAL)
            assert device.state == DeviceState.QUARANTINED
            assert device.quarantine_reason == ("health policy: no TPM; the image needs TPM 2.0"), (
                device.quarantine_reason
            )
            bench.power_cut(SERIAL)
        # Nothing was ever written to the laptop: its disk is as blank as it came.
        disk = tmp_path / "vm1.raw"
        assert disk.stat().st_size == DISK_BYTES and _all_zero(disk)
        run = bench.run_of(SERIAL)
        assert run is None or run.status != RunStatus.SUCCEEDED
        assert run is None or not run.context.get("written")
        with TestClient(create_app(boot.db)) as api:
            r = api.get(
                f"/deliveries/{boot.world.acme_delivery.id}/dead-on-arrival",
                params={"format": "csv"},
                headers=boot.technician,
            )
        assert r.status_code == 200, r.text
        rows = list(csv.DictReader(io.StringIO(r.text)))
        assert [(x["serial"], x["state"]) for x in rows] == [(SERIAL, "quarantined")]
        assert "no TPM" in rows[0]["reasons"]
